"""The life cycle every stack service shares: prerequisites, prepare, start, health, status, stop.

A service is started detached in its own session with its output appended to
``<state>/logs/<service>.log`` and its session id written to ``<state>/run/<service>.pid``.
``up`` leaves a healthy service alone (a second ``up`` is a no-op), waits for one that is running
but not yet healthy, and (re)starts one that is not running; a service that does not become healthy
within ``start_timeout_s`` is reported with the last lines of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from raytrader.stack.config import PORT_FIELDS, StackConfig
from raytrader.stack.process import (
    StackError,
    cmdline,
    log_excerpt,
    port_in_use,
    session_members,
    spawn,
    start_ticks,
    stop_pids,
    stop_session,
)

State = Literal["healthy", "unhealthy", "stopped", "skipped"]


@dataclass(frozen=True)
class ServiceStatus:
    """What ``up`` / ``down`` / ``status`` report for one service."""

    name: str
    state: State
    address: str
    pid: int | None = None
    detail: str = ""
    #: ``up``: started by this call; ``down``: stopped by this call
    changed: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    #: seconds: ``up`` from the start (with its preparation) to healthy; ``down`` to stopped
    seconds: float | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Service(ABC):
    """One process-backed service of the local stack."""

    name: ClassVar[str]
    #: services that must be healthy before this one starts
    depends_on: ClassVar[tuple[str, ...]] = ()
    #: a substring of the main process's command line (guards against a recycled pid)
    marker: ClassVar[str]
    #: the fields of :class:`StackConfig` holding ports this service binds
    port_fields: ClassVar[tuple[str, ...]] = ()
    #: signal for the session leader on stop, and whether only the leader is signalled
    leader_signal: ClassVar[signal.Signals] = signal.SIGTERM
    leader_only: ClassVar[bool] = False
    #: the started command exits after launching the service's daemons (``ray start``)
    launcher_exits: ClassVar[bool] = False
    #: cap on the stop grace period (seconds)
    max_grace_s: ClassVar[float | None] = None
    #: command-line markers of processes to SIGTERM (and wait for) before the rest of the session
    stop_first: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    # ---------------------------------------------------------------------------------- to override
    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients connect (a URL or host:port)."""

    def skip_reason(self) -> str | None:
        """Why this service is not run at all (``None``: it is run)."""
        return None

    @abstractmethod
    def prerequisites(self) -> list[str]:
        """Problems that prevent starting, each with the fix (``[]``: ready to start)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Idempotent installation/initialisation before each start."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the service."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path:
        return self.config.state_dir

    def user(self) -> str | None:
        """Run the service as this system user (``None``: as the caller)."""
        return None

    @abstractmethod
    def probe(self, timeout_s: float) -> str | None:
        """``None`` if the service answers its health check, else why not."""

    def startup_probe(self, timeout_s: float) -> str | None:
        """The check awaited after a start, before :meth:`after_start` (default: :meth:`probe`)."""
        return self.probe(timeout_s)

    def after_start(self) -> None:  # noqa: B027 - optional hook
        """Idempotent set-up once the service answers (topics, roles, databases)."""

    def detail(self) -> str:
        """Extra status text for a healthy service."""
        return ""

    # ---------------------------------------------------------------------------------- shared
    @property
    def log_file(self) -> Path:
        return self.config.logs_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.config.run_dir / f"{self.name}.pid"

    def ports(self) -> dict[str, int]:
        return {f: int(getattr(self.config, f)) for f in self.port_fields}

    @property
    def meta_file(self) -> Path:
        """``run/<service>.json``: pid, start time (to detect a recycled pid), command."""
        return self.config.run_dir / f"{self.name}.json"

    def session_id(self) -> int | None:
        """The session id from the pid file, or ``None`` if there is none or it is stale (the
        pid now belongs to a process started later than ours)."""
        try:
            sid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            recorded = json.loads(self.meta_file.read_text()).get("start_ticks")
        except (FileNotFoundError, ValueError):
            recorded = None
        now = start_ticks(sid)
        if recorded is not None and now is not None and now != recorded:
            return None
        return sid

    def _write_pid(self, pid: int, command: list[str]) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        meta = {
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
        }
        self.meta_file.write_text(json.dumps(meta, indent=1) + "\n")

    def _clear_pid(self) -> None:
        for f in (self.pid_file, self.meta_file):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()

    def members(self) -> list[int]:
        sid = self.session_id()
        return session_members(sid) if sid is not None else []

    def main_pid(self) -> int | None:
        """The live main process of this service (``None`` when it is not running)."""
        for pid in self.members():
            if self.marker in cmdline(pid):
                return pid
        return None

    def status(self, timeout_s: float = 3.0) -> ServiceStatus:
        skip = self.skip_reason()
        if skip is not None:
            return self._status("skipped", None, skip)
        pid = self.main_pid()
        if pid is None:
            return self._status("stopped", None, "")
        why = self.probe(timeout_s)
        if why is not None:
            return self._status("unhealthy", pid, why)
        return self._status("healthy", pid, self.detail())

    def up(self) -> ServiceStatus:
        """Make this service healthy; leave it alone if it already is."""
        skip = self.skip_reason()
        if skip is not None:
            return self._status("skipped", None, skip)
        deadline = time.monotonic() + self.config.start_timeout_s
        pid = self.main_pid()
        if pid is not None:
            if self.probe(3.0) is None:
                return self._status("healthy", pid, self.detail())
            # running but not answering yet (e.g. started by another `up` a moment ago)
            self._await(self.startup_probe, deadline, proc=None)
            self.after_start()
            self._await(self.probe, deadline, proc=None)
            return self._status("healthy", self.main_pid(), self.detail())
        t0 = time.monotonic()
        self._clear_leftovers()
        self._check_ports()
        self.prepare()
        command = self.command()
        proc = spawn(
            command,
            log_file=self.log_file,
            env=self.env(),
            cwd=self.cwd(),
            user=self.user(),
        )
        self._write_pid(proc.pid, command)
        watched: subprocess.Popen[bytes] | None = proc
        if self.launcher_exits:
            try:
                rc: int | None = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                rc = None
            if rc != 0:
                self.down()
                what = "did not finish" if rc is None else f"failed with exit code {rc}"
                raise StackError(
                    f"{self.name}: `{' '.join(self.command()[:2])}` {what}"
                    f"{log_excerpt(self.log_file)}"
                )
            watched = None
        self._await(self.startup_probe, deadline, proc=watched)
        self.after_start()
        self._await(self.probe, deadline, proc=watched)
        return self._status(
            "healthy",
            self.main_pid(),
            self.detail(),
            changed=True,
            seconds=round(time.monotonic() - t0, 2),
        )

    def down(self) -> ServiceStatus:
        """Stop every process of this service; clean the pid file."""
        t0 = time.monotonic()
        sid = self.session_id()
        changed = False
        if sid is not None:
            grace = self.config.stop_grace_s
            if self.max_grace_s is not None:
                grace = min(grace, self.max_grace_s)
            changed = bool(session_members(sid))
            for marker in self.stop_first:
                first = [p for p in session_members(sid) if marker in cmdline(p)]
                stop_pids(first, grace_s=grace)
            stop_session(
                sid, leader_signal=self.leader_signal, leader_only=self.leader_only, grace_s=grace
            )
            if session_members(sid):
                raise StackError(f"{self.name}: processes {session_members(sid)} survived SIGKILL")
        self._clear_pid()
        skip = self.skip_reason()
        if skip is not None and not changed:
            return self._status("skipped", None, skip)
        return self._status(
            "stopped", None, "", changed=changed, seconds=round(time.monotonic() - t0, 2)
        )

    # ---------------------------------------------------------------------------------- internals
    def _status(
        self,
        state: State,
        pid: int | None,
        detail: str,
        *,
        changed: bool = False,
        seconds: float | None = None,
    ) -> ServiceStatus:
        return ServiceStatus(
            name=self.name,
            state=state,
            address=self.address,
            pid=pid,
            detail=detail,
            changed=changed,
            ports=self.ports(),
            seconds=seconds,
        )

    def _clear_leftovers(self) -> None:
        """Stop what is left of an earlier run whose main process died (e.g. half a Ray)."""
        sid = self.session_id()
        if sid is not None and session_members(sid):
            stop_session(sid, grace_s=5.0)
        self._clear_pid()

    def _check_ports(self) -> None:
        busy = [
            f"{self.config.host}:{port} ({PORT_FIELDS.get(f, f)}; RAYTRADER_STACK_{f.upper()})"
            for f, port in self.ports().items()
            if port_in_use(self.config.host, port)
        ]
        if busy:
            raise StackError(
                f"{self.name}: port(s) already in use by another process: {', '.join(busy)}; "
                "stop that process or choose other ports"
            )

    def _await(self, check: Any, deadline: float, *, proc: Any) -> None:
        why: str | None = "not checked yet"
        while True:
            why = check(min(3.0, max(0.5, deadline - time.monotonic())))
            if why is None:
                return
            if proc is not None and proc.poll() is not None:
                raise StackError(
                    f"{self.name} exited with code {proc.returncode} while starting"
                    f"{log_excerpt(self.log_file)}"
                )
            if proc is None and self.main_pid() is None:
                raise StackError(f"{self.name} is no longer running{log_excerpt(self.log_file)}")
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} did not become healthy within "
                    f"{self.config.start_timeout_s:.0f} s ({why}){log_excerpt(self.log_file)}"
                )
            time.sleep(0.3)
