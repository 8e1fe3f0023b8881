"""Process bookkeeping of the stack on real processes: sessions, stale pid files, stop escalation."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from raytrader.stack import Stack, StackConfig
from raytrader.stack.process import (
    is_running,
    log_excerpt,
    port_in_use,
    session_members,
    start_ticks,
    stop_session,
    tail,
)


def _detached(*cmd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(cmd), start_new_session=True)


def test_stop_session_escalates_to_sigkill_and_catches_children() -> None:
    # a leader that ignores SIGTERM, with a child in the same session
    proc = _detached("bash", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait")
    time.sleep(0.3)
    members = session_members(proc.pid)
    assert proc.pid in members
    assert len(members) == 3
    t0 = time.monotonic()
    killed = stop_session(proc.pid, grace_s=0.5)
    assert time.monotonic() - t0 < 5
    proc.wait(5)
    assert session_members(proc.pid) == []
    assert proc.pid in killed


def test_a_stale_pid_file_never_kills_an_unrelated_process(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path)
    svc = Stack(cfg).service("redis")
    other = _detached("sleep", "60")
    try:
        cfg.run_dir.mkdir(parents=True)
        svc.pid_file.write_text(f"{other.pid}\n")
        ticks = start_ticks(other.pid)
        assert ticks is not None
        svc.meta_file.write_text(json.dumps({"pid": other.pid, "start_ticks": ticks + 1}))
        assert svc.session_id() is None  # recycled pid: not ours
        assert svc.main_pid() is None
        assert svc.down().state == "stopped"
        assert is_running(other.pid)
        assert not svc.pid_file.exists()
        # the same process recorded correctly is ours, but its command is not redis-server
        svc.pid_file.write_text(f"{other.pid}\n")
        svc.meta_file.write_text(json.dumps({"pid": other.pid, "start_ticks": ticks}))
        assert svc.session_id() == other.pid
        assert svc.main_pid() is None
        st = svc.down()  # stops what is left of "our" session
        assert st.changed
        other.wait(5)
        assert not is_running(other.pid)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_port_in_use_and_log_helpers(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert tail(log, 3) == ["line 4997", "line 4998", "line 4999"]
    assert log_excerpt(log, 2) == f"; last lines of {log}: line 4998 | line 4999"
    assert tail(tmp_path / "missing.log", 3) == []
    assert log_excerpt(tmp_path / "missing.log") == f"; see {tmp_path / 'missing.log'}"
