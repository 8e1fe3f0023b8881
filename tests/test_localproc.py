"""raytrader.localproc: a real detached server (``python -m http.server`` with a child of its
own) started, health-polled, refused a second start, stopped with its whole process group;
a command that exits at once fails with its log's tail; a stale pid file is not running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raytrader.errors import RaytraderError
from raytrader.localproc import LocalServer, alive, answers, status_line

# serves its cwd over http after starting a child (in its own process group) that just sleeps
SERVER = """
import http.server, pathlib, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path(sys.argv[2]).write_text(str(child.pid))
print("serving with child", child.pid, flush=True)
http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]),
                 bind="127.0.0.1")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    srv = LocalServer(tmp_path / "state", "demo", label="the demo", stop_grace_s=5)
    try:
        yield srv
    finally:
        srv.stop()


def test_start_status_refuse_and_stop_the_process_group(
    server: LocalServer, tmp_path: Path
) -> None:
    assert server.pid() is None
    assert server.info() == {}
    assert server.log_tail() == "(no log)"
    assert not server.stop()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    child_file = tmp_path / "child.pid"
    cmd = [sys.executable, "-c", SERVER, str(port), str(child_file)]
    info = server.start(cmd, dict(os.environ), f"{url}/", 30, info={"url": url})

    pid = info["pid"]
    assert info == {"url": url, "pid": pid}
    assert server.pid() == pid
    assert server.info() == info
    assert json.loads((tmp_path / "state" / "demo.json").read_text()) == info
    assert (tmp_path / "state" / "demo.pid").read_text() == f"{pid}\n"
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert answers(f"{url}/")
    assert not answers(f"{url}/", b"nope")
    assert os.getpgid(pid) == pid  # a session (and process group) of its own
    child = int(child_file.read_text())
    assert alive(child)
    assert os.getpgid(child) == pid
    assert "serving with child" in server.log_tail()
    status = server.status(lambda base: answers(f"{base}/"), ("url", "missing"))
    assert status == {
        "running": True, "pid": pid, "url": url, "missing": None, "healthy": True,
        "state_dir": str(server.state_dir),
    }  # fmt: skip
    assert status_line(status, "demo", "/", "detail") == (
        f"demo running at {url} (pid {pid}, healthy); detail"
    )
    sick = server.status(lambda base: False)
    assert list(sick) == ["running", "pid", "url", "healthy", "state_dir"]
    assert f"(pid {pid}, NOT answering /x); d" in status_line(sick, "demo", "/x", "d")

    with pytest.raises(RaytraderError, match=r"the demo is already running \(pid \d+\)"):
        server.start(cmd, None, f"{url}/", 30)
    assert server.pid() == pid  # the refusal left the first one alone

    assert server.stop()
    assert _gone(pid)
    assert _gone(child)  # the whole group went, not only its leader
    assert server.pid() is None
    assert not (tmp_path / "state" / "demo.pid").exists()
    assert not answers(f"{url}/", timeout=0.5)
    assert not server.stop()
    stopped = server.status(lambda base: True)
    assert not stopped["running"]
    assert not stopped["healthy"]
    assert stopped["url"] == url  # the info stays for the next `status`
    assert status_line(stopped, "demo", "/", "d") == (
        f"demo is not running (state in {server.state_dir})"
    )


def test_a_command_that_exits_at_once_fails_with_its_log_tail(server: LocalServer) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-c", "import sys; print('line one'); sys.exit('it broke: bad flag')"]
    started = time.monotonic()
    with pytest.raises(RaytraderError) as caught:
        server.start(cmd, None, f"{url}/healthz", 30)
    assert time.monotonic() - started < 15  # the exit ended the wait, not the timeout
    message = str(caught.value)
    assert message.startswith(f"the demo did not answer {url}/healthz within 30 s; ")
    assert f"{server.log_file} ends:\nline one\nit broke: bad flag" in message
    assert server.pid() is None
    assert not server.pid_file.exists()


def test_a_server_that_never_answers_is_stopped_after_the_timeout(server: LocalServer) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-c", "import time; print('waiting', flush=True); time.sleep(600)"]
    with pytest.raises(RaytraderError, match=r"within 1 s; .*demo\.log ends:\nwaiting"):
        server.start(cmd, None, f"{url}/", 1)
    pid = server.info()["pid"]
    assert _gone(pid)
    assert server.pid() is None


def test_a_stale_pid_file_is_not_running(server: LocalServer) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server.state_dir.mkdir(parents=True)
    server.pid_file.write_text(f"{dead.pid}\n")
    assert not alive(dead.pid)
    assert server.pid() is None
    assert not server.stop()  # not running: the stale pid file goes
    assert not server.pid_file.exists()

    server.pid_file.write_text("not a pid\n")
    assert server.pid() is None
    server.info_file.write_text("[1, 2]")
    assert server.info() == {}
