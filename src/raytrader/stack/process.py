"""Process, port, file and HTTP helpers for the local stack.

Every service is started detached in a **session of its own** (``setsid``), so its session id is the
pid of the process we started; the pid file ``<state>/run/<service>.pid`` holds that id. Everything
the service spawns stays in the session (PostgreSQL backends, uvicorn workers, every Ray process),
so stopping a service signals exactly the processes of that session, never anything matched by
name: another Ray or Kafka on the machine is left alone.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from raytrader.errors import RaytraderError


class StackError(RaytraderError):
    """A stack service could not be prepared, started, checked or stopped."""


class PrerequisiteError(StackError):
    """A program or library a service needs is missing; the message says how to install it."""


# Popen objects of the services this process started, so that exited ones are reaped (a zombie
# is not "running", but it would otherwise linger until this process exits).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


def reap() -> None:
    """Collect the exit status of any service process this process started that has exited."""
    with _CHILDREN_LOCK:
        for pid, proc in list(_CHILDREN.items()):
            if proc.poll() is not None:
                del _CHILDREN[pid]


# ------------------------------------------------------------------------------------------ /proc
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name is in parentheses and may contain spaces or parentheses itself
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[3])


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[19])


def is_running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (arguments joined by spaces), or ``""``."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    reap()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[1] == sid and st[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return sorted(out)


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_session(
    sid: int,
    *,
    leader_signal: signal.Signals = signal.SIGTERM,
    leader_only: bool = False,
    grace_s: float = 15.0,
) -> list[int]:
    """Stop every process of session ``sid``: ``leader_signal`` to the leader (or, when the leader
    has exited or ``leader_only`` is false, SIGTERM to every member), SIGKILL whatever is left
    after ``grace_s``. Returns the pids that had to be killed."""
    members = session_members(sid)
    if not members:
        return []
    if leader_only and sid in members:
        _signal([sid], leader_signal)
    else:
        _signal([sid] if sid in members else [], leader_signal)
        _signal([p for p in members if p != sid], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not session_members(sid):
            return []
        time.sleep(0.1)
    left = session_members(sid)
    _signal(left, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def stop_pids(pids: list[int], *, grace_s: float) -> None:
    """SIGTERM ``pids`` and wait up to ``grace_s`` for them to exit (no SIGKILL)."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(is_running(p) for p in pids) and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ spawn
def spawn(
    cmd: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` detached in a new session, stdout+stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- {stamp} raytrader stack: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc
    return proc


def run_logged(
    cmd: Sequence[str],
    *,
    log_file: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    timeout_s: float = 600.0,
) -> None:
    """Run ``cmd`` to completion with its output appended to ``log_file``; a non-zero exit raises
    :class:`StackError` quoting the log's last lines."""
    proc = spawn(cmd, log_file=log_file, env=env, cwd=cwd, user=user)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_session(proc.pid, grace_s=5.0)
        raise StackError(
            f"{what} did not finish within {timeout_s:.0f} s{log_excerpt(log_file)}"
        ) from None
    finally:
        reap()
    if rc != 0:
        raise StackError(f"{what} failed with exit code {rc}{log_excerpt(log_file)}")


# ------------------------------------------------------------------------------------------ files
def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (``[]`` if it does not exist)."""
    if lines <= 0:
        return []
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = min(size, max(8192, lines * 400))
            while True:
                f.seek(size - block)
                data = f.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 4)
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def log_excerpt(path: Path, lines: int = 8) -> str:
    """``; last lines of <path>: a | b | c`` (one line, for error messages)."""
    text = [ln.strip()[:300] for ln in tail(path, lines) if ln.strip()]
    if not text:
        return f"; see {path}"
    return f"; last lines of {path}: " + " | ".join(text)


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` (mode 0600, directory 0700) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (only if it changed)."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def find_program(name: str, *, env_dir: str | None = None) -> Path | None:
    """``name`` from this interpreter's ``bin`` directory (the venv), else from ``PATH``."""
    if env_dir:
        cand = Path(env_dir) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    venv = Path(sys.executable).parent / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return venv
    found = shutil.which(name)
    return Path(found) if found else None


# ------------------------------------------------------------------------------------------ network
def port_in_use(host: str, port: int) -> bool:
    """True if ``host:port`` cannot be bound (something listens there, on it or on 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_get(
    host: str,
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, str]:
    """``GET http://host:port/path`` → (status, body); raises ``OSError`` if unreachable."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode(errors="replace")
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()
