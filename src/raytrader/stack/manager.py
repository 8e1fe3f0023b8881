"""``Stack``: bring the local services up in dependency order, check them, stop them, read logs.

``up`` checks the prerequisites of every service it has to start before starting anything, then
starts services concurrently as soon as their dependencies are healthy (PostgreSQL, Redis, Kafka and
Ray at once; MLflow after PostgreSQL; Feast after Redis). Services that are already healthy are
left alone, so a second ``up`` is a no-op. ``down`` stops dependents before their dependencies.
One ``raytrader stack`` command at a time works on a state dir (``<state>/stack.lock``).

``up`` also writes ``<state>/client.env``, the settings of the stack's clients (what ``raytrader
stack env`` prints): :mod:`raytrader.settings` reads it in local mode, so the stack produces
settings and no runtime code imports this package.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from raytrader import settings
from raytrader.errors import UnknownNameError
from raytrader.stack.base import Service, ServiceStatus
from raytrader.stack.config import SERVICE_NAMES, StackConfig
from raytrader.stack.process import PrerequisiteError, StackError, tail
from raytrader.stack.services import SERVICES, PostgresService


class Stack:
    """The local development stack described by a :class:`StackConfig`."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config if config is not None else StackConfig.from_env()
        self._services: dict[str, Service] = {n: SERVICES[n](self.config) for n in SERVICE_NAMES}

    def service(self, name: str) -> Service:
        if name not in self._services:
            raise UnknownNameError("stack service", name, list(SERVICE_NAMES))
        return self._services[name]

    # ------------------------------------------------------------------------------ selection
    def _select(self, names: Sequence[str] | None, *, with_deps: bool) -> list[str]:
        if not names:
            return list(SERVICE_NAMES)
        chosen = set()
        for n in names:
            self.service(n)  # validates
            chosen.add(n)
        if with_deps:
            stack = list(chosen)
            while stack:
                for dep in self._services[stack.pop()].depends_on:
                    if dep not in chosen:
                        chosen.add(dep)
                        stack.append(dep)
        return [n for n in SERVICE_NAMES if n in chosen]

    # ------------------------------------------------------------------------------ commands
    def up(self, services: Sequence[str] | None = None) -> list[ServiceStatus]:
        """Start the selected services (and what they depend on); return their statuses."""
        names = self._select(services, with_deps=True)
        self._ensure_dirs()
        with self._lock():
            # what the stack gives its clients: raytrader reads it in local mode (settings). The
            # experiment store's URL only with PostgreSQL in it: the demo's embedded mode starts
            # the Ray head alone, and its results go to the local SQLite store, not to a
            # database that is not running
            env = self.config.client_env()
            pg = self._services["postgres"]
            if "postgres" not in names and pg.main_pid() is None:
                env.pop(settings.DB_URL_ENV, None)
            settings.write_local_stack_env(self.config.state_dir, env)
            todo = [
                n
                for n in names
                if self._services[n].skip_reason() is None and self._services[n].main_pid() is None
            ]
            problems = [p for n in todo for p in self._services[n].prerequisites()]
            if problems:
                raise PrerequisiteError("; ".join(dict.fromkeys(problems)))
            return self._run_dag(names, lambda s: s.up(), reverse=False, action="start")

    def down(self, services: Sequence[str] | None = None) -> list[ServiceStatus]:
        """Stop the selected services (all by default), dependents first."""
        names = self._select(services, with_deps=False)
        if not self.config.state_dir.exists():  # never started: nothing to stop
            return [self._services[n].status() for n in names]
        self._ensure_dirs()
        with self._lock():
            return self._run_dag(names, lambda s: s.down(), reverse=True, action="stop")

    def status(self) -> list[ServiceStatus]:
        """The state of every service (running and answering its health check?)."""
        with ThreadPoolExecutor(max_workers=len(SERVICE_NAMES)) as pool:
            futs = [pool.submit(self._services[n].status) for n in SERVICE_NAMES]
            return [f.result() for f in futs]

    def logs(self, service: str, lines: int = 100) -> list[str]:
        """The last ``lines`` lines of ``<state>/logs/<service>.log``."""
        return tail(self.service(service).log_file, lines)

    def purge(self) -> list[ServiceStatus]:
        """``down``, then delete the state dir (and PostgreSQL's and Ray's directories if they
        live outside it). The Kafka jars in the cache dir are kept."""
        statuses = self.down()
        extra = [PostgresService(self.config).root(), self.config.ray_temp]
        for path in extra:
            if not _inside(path, self.config.state_dir):
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.config.state_dir, ignore_errors=True)
        return statuses

    # ------------------------------------------------------------------------------ internals
    def _ensure_dirs(self) -> None:
        for d in (self.config.state_dir, self.config.logs_dir, self.config.run_dir):
            d.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        path = self.config.state_dir / "stack.lock"
        with path.open("w") as f:
            deadline = time.monotonic() + self.config.start_timeout_s
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"another `raytrader stack` command holds {path}"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _run_dag(
        self,
        names: list[str],
        fn: Callable[[Service], ServiceStatus],
        *,
        reverse: bool,
        action: str,
    ) -> list[ServiceStatus]:
        """Run ``fn`` on every service of ``names`` concurrently, each after its dependencies
        (``reverse``: after its dependents)."""
        selected = set(names)
        waits: dict[str, list[str]] = {}
        for n in names:
            if reverse:
                waits[n] = [m for m in names if n in self._services[m].depends_on]
            else:
                waits[n] = [d for d in self._services[n].depends_on if d in selected]
        order = list(reversed(names)) if reverse else names
        futures: dict[str, Future[ServiceStatus]] = {}

        def task(name: str) -> ServiceStatus:
            failed = []
            for other in waits[name]:
                try:
                    futures[other].result()
                except Exception:
                    failed.append(other)
            if failed and not reverse:
                raise StackError(f"{name} not started because {', '.join(failed)} failed")
            return fn(self._services[name])

        errors: list[str] = []
        results: dict[str, ServiceStatus] = {}
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack") as pool:
            for n in order:
                futures[n] = pool.submit(task, n)
            for n in order:
                try:
                    results[n] = futures[n].result()
                except Exception as exc:
                    msg = str(exc)
                    errors.append(msg if msg.startswith(n) else f"{n}: {msg}")
        if errors:
            hint = "" if reverse else "; services that did start are left running (stack down)"
            raise StackError(f"could not {action} the stack: " + "; ".join(errors) + hint)
        return [results[n] for n in names]


def running_config(config: StackConfig | None = None) -> tuple[StackConfig, dict[str, bool]]:
    """The stack's config (``StackConfig.from_env()`` by default) and whether each service is
    healthy right now (quick: pid files first)."""
    cfg = config if config is not None else StackConfig.from_env()
    return cfg, {st.name: st.healthy for st in Stack(cfg).status()}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
