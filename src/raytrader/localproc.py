"""A detached local server process and its state dir: ``raytrader api|dashboard up|down|status``.

A :class:`LocalServer` keeps ``<name>.pid``, ``<name>.json`` (what ``up`` reported: its URL and
the like, with the pid) and ``<name>.log`` in its state dir. :meth:`LocalServer.start` runs a
command in a session (and process group) of its own with its output appended to the log, and
polls a health URL until it answers; :meth:`LocalServer.stop` SIGTERMs the process group, then
SIGKILLs it after a grace period. What is specific to one server (its command, tokens,
migrations, URLs) stays with its CLI.

Only the standard library and :mod:`raytrader.errors`: this sits in the lowest layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from raytrader.errors import RaytraderError

STOP_GRACE_S = 10.0
POLL_S = 0.25


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie child of ours is reaped and counts dead)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the usual case, `up` ran in another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (or an odd line): kill(pid, 0) said it exists


def answers(url: str, body: bytes | None = None, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (and, when ``body`` is given, exactly that, stripped)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own http URL
            if resp.status != 200:
                return False
            return body is None or bool(resp.read().strip() == body)
    except (OSError, urllib.error.URLError):
        return False


def status_line(status: Mapping[str, Any], what: str, health_path: str, detail: str) -> str:
    """The one line ``status`` prints for a :meth:`LocalServer.status` (``what``: its name)."""
    if status["running"]:
        health = "healthy" if status["healthy"] else f"NOT answering {health_path}"
        return f"{what} running at {status['url']} (pid {status['pid']}, {health}); {detail}"
    return f"{what} is not running (state in {status['state_dir']})"


class LocalServer:
    """The detached server ``name`` whose pid, info and log live in ``state_dir``.

    ``label`` names it in errors (``"the experiment API did not answer ..."``; default ``name``).
    """

    def __init__(
        self,
        state_dir: Path,
        name: str,
        *,
        label: str | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.name = name
        self.label = label or name
        self.stop_grace_s = stop_grace_s

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def info_file(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the live server of this state dir, else ``None`` (a stale pid file too)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def info(self) -> dict[str, Any]:
        """What the last :meth:`start` recorded (``{}`` when nothing readable is there)."""
        try:
            data = json.loads(self.info_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def status(self, healthy: Callable[[str], bool], keys: Sequence[str] = ()) -> dict[str, Any]:
        """``running``, ``pid``, ``url``, the info's ``keys``, ``healthy`` (``healthy(url)`` of
        a running server) and ``state_dir``."""
        info = self.info()
        pid = self.pid()
        url = info.get("url")
        return {
            "running": pid is not None,
            "pid": pid,
            "url": url,
            **{key: info.get(key) for key in keys},
            "healthy": bool(pid is not None and url and healthy(str(url))),
            "state_dir": str(self.state_dir),
        }

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (``"(no log)"`` when there is none)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str] | None,
        health_url: str,
        timeout_s: float,
        *,
        info: Mapping[str, Any] | None = None,
        health_body: bytes | None = None,
    ) -> dict[str, Any]:
        """Start ``cmd`` detached and wait until ``health_url`` answers; ``{**info, "pid": pid}``.

        The info is written to the state dir before the wait. When the process exits or the URL
        does not answer within ``timeout_s``, the process group is stopped and a
        :class:`RaytraderError` carries the log's tail. A :class:`RaytraderError` too when the
        server already runs (the CLIs check :meth:`pid` first: ``up`` is idempotent).
        """
        running = self.pid()
        if running is not None:
            raise RaytraderError(f"{self.label} is already running (pid {running})")
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - the caller's own command
                list(cmd), env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{proc.pid}\n")
        recorded = {**(info or {}), "pid": proc.pid}
        self.info_file.write_text(json.dumps(recorded))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if answers(health_url, health_body):
                return recorded
            time.sleep(POLL_S)
        self._stop(proc.pid)
        raise RaytraderError(
            f"{self.label} did not answer {health_url} within {timeout_s:g} s; "
            f"{self.log_file} ends:\n{self.log_tail()}"
        )

    def stop(self) -> bool:
        """Stop the server; ``False`` when it was not running (a stale pid file is removed)."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._stop(pid)
        return True

    def _stop(self, pid: int) -> None:
        """SIGTERM the process group, SIGKILL after the grace period; forget the pid."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
