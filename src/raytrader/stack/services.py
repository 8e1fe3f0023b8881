"""The services of the local stack: PostgreSQL, Redis, Kafka (:mod:`raytrader.stack.kafka`), MLflow,
the Ray head and the Feast feature server.

* **PostgreSQL** — Debian's server binaries (``/usr/lib/postgresql/<v>/bin``, newest first, or
  ``postgres_bin_dir``); ``initdb`` once into ``<state>/postgres/data`` (superuser ``postgres``, trust
  on the Unix socket only, SCRAM passwords over TCP), ``listen_addresses=127.0.0.1``, Unix socket in
  ``<state>/postgres/run`` (mode 0700). Roles and databases ``mlflow`` (MLflow's) and ``raytrader``
  (the experiment store, :mod:`raytrader.db`) are created (and each role's password re-set to
  ``<state>/secrets/postgres-<role>-password``) on every start. PostgreSQL
  refuses to run as root: as root it runs as the ``postgres`` system user (created if missing) and
  its directory is owned by it; if that user cannot reach the state dir (``/root`` is 0700) the
  directory lives in ``/var/lib/raytrader/postgres-<hash of state dir>`` and ``<state>/postgres``
  is a symlink to it.
* **Redis** — ``redis-server --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec``
  (the online rows survive a restart) with its pid file in ``<state>/run/redis-server.pid``
  and its log in ``<state>/logs/redis.log``; it is daemonized by the stack (detached session)
  rather than by ``--daemonize yes``, so it is tracked and stopped like every other service.
* **MLflow** — ``mlflow server --backend-store-uri postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow
  --artifacts-destination <state>/mlartifacts --host 127.0.0.1 --port 5000 --workers 1`` (tracking
  + model registry, artifacts proxied by the server). The password reaches libpq through
  ``PGPASSFILE=<state>/secrets/pgpass``, so it is not on the command line. Health: ``GET /health``.
* **Ray head** — ``ray start --head --node-ip-address 127.0.0.1 --port 6380 …`` with token
  authentication (see :mod:`raytrader.stack` for the token and the client environment) and its own
  ``--temp-dir`` so that a plain ``ray.init()`` elsewhere on the machine never attaches to it.
  Health: ``GET /api/version`` on the dashboard with the token. ``down`` stops exactly the
  processes of this Ray (never ``ray stop``, which kills every Ray on the machine).
* **Feast** — ``feast -c <feature_repo> apply`` then ``feast -c <feature_repo> serve -h 127.0.0.1
  -p 6566 --no-access-log --max-requests 0`` (no periodic worker recycling); skipped ("feature
  repo not found") while ``<feature_repo>/feature_store.yaml`` does not exist. Feast runs with
  the stack's client environment, which ``feature_store.yaml`` uses as ``${VAR}``:
  ``RAYTRADER_REDIS_CONNECTION`` (the stack's Redis) and ``RAYTRADER_FEAST_DATA`` (registry and
  offline files: ``<state>/feast`` unless ``feast_data_dir`` is set).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

from raytrader.stack.base import Service
from raytrader.stack.config import (
    POSTGRES_DB,
    POSTGRES_USER,
    STORE_DB,
    STORE_USER,
    StackConfig,
)
from raytrader.stack.kafka import KafkaService
from raytrader.stack.process import (
    PrerequisiteError,
    StackError,
    find_program,
    http_get,
    port_open,
    run_logged,
    write_secret,
)

_STACK_PIP = "pip install 'raytrader[stack]'"


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _psycopg2() -> Any:
    return importlib.import_module("psycopg2")


# ------------------------------------------------------------------------------------ PostgreSQL
PG_SYSTEM_USER = "postgres"
PG_SUPERUSER = "postgres"


def find_postgres_bin(config: StackConfig) -> Path | None:
    """The directory with ``initdb`` and ``postgres``."""
    candidates: list[Path] = []
    if config.postgres_bin_dir is not None:
        candidates.append(config.postgres_bin_dir)
    else:
        debian = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates.extend(debian)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)
    for d in candidates:
        if all(
            (d / exe).is_file() and os.access(d / exe, os.X_OK) for exe in ("initdb", "postgres")
        ):
            return d
    return None


def _traversable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Can ``uid`` (with groups ``gids``) reach ``path`` (execute permission on every ancestor)?"""
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


class PostgresService(Service):
    name = "postgres"
    marker = "postgres"
    port_fields = ("postgres_port",)
    leader_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, then exit
    leader_only = True

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.postgres_port}"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def prerequisites(self) -> list[str]:
        problems = []
        if find_postgres_bin(self.config) is None:
            where = self.config.postgres_bin_dir or "/usr/lib/postgresql/*/bin or PATH"
            problems.append(
                f"PostgreSQL server binaries (initdb, postgres) not found in {where}: "
                "apt-get install postgresql (or set RAYTRADER_STACK_POSTGRES_BIN_DIR)"
            )
        if not _has_module("psycopg2"):
            problems.append(f"psycopg2 not installed (MLflow's PostgreSQL driver): {_STACK_PIP}")
        if self.as_root and _pg_user() is None and shutil.which("useradd") is None:
            problems.append(
                "running as root, PostgreSQL needs the 'postgres' system user, which is missing "
                "and useradd is not available: apt-get install passwd postgresql"
            )
        return problems

    # -- layout
    def root(self) -> Path:
        """The directory holding ``data/`` and ``run/`` (``<state>/postgres`` or its target)."""
        link = self.config.postgres_dir
        if link.is_symlink():
            return Path(os.path.realpath(link))
        if link.exists() or not self.as_root:
            return link
        pg = _pg_user()
        if pg is None or _traversable_by(self.config.state_dir, pg.pw_uid, _groups(pg)):
            return link
        digest = hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:12]
        return Path("/var/lib/raytrader") / f"postgres-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root() / "run"

    def user(self) -> str | None:
        return PG_SYSTEM_USER if self.as_root else None

    def cwd(self) -> Path:
        return self.root()

    # -- life cycle
    def prepare(self) -> None:
        cfg = self.config
        if not cfg.postgres_password_file.exists():
            write_secret(cfg.postgres_password_file, secrets.token_urlsafe(24) + "\n")
        if not cfg.store_password_file.exists():
            write_secret(cfg.store_password_file, secrets.token_urlsafe(24) + "\n")
        password = cfg.postgres_password()
        store_password = cfg.store_password_file.read_text().strip()
        write_secret(
            cfg.pgpass_file,
            f"{cfg.host}:{cfg.postgres_port}:{POSTGRES_DB}:{POSTGRES_USER}:{password}\n"
            f"{cfg.host}:{cfg.postgres_port}:{STORE_DB}:{STORE_USER}:{store_password}\n",
        )
        root = self.root()
        if self.as_root and _pg_user() is None:
            subprocess.run(  # noqa: S603 - fixed argument list
                [
                    str(shutil.which("useradd") or "useradd"),
                    "--system",
                    "--user-group",
                    "--home-dir",
                    "/var/lib/postgresql",
                    "--shell",
                    "/usr/sbin/nologin",
                    PG_SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
        root.mkdir(parents=True, exist_ok=True)
        if root != cfg.postgres_dir and not cfg.postgres_dir.is_symlink():
            cfg.postgres_dir.parent.mkdir(parents=True, exist_ok=True)
            cfg.postgres_dir.symlink_to(root, target_is_directory=True)
        for d in (root, self.data_dir, self.socket_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)
        if self.as_root:
            pg = _pg_user()
            if pg is None:
                raise StackError(f"postgres: system user {PG_SYSTEM_USER!r} could not be created")
            for d in (root, self.data_dir, self.socket_dir):
                if d.stat().st_uid != pg.pw_uid:
                    _chown_tree(d, pg.pw_uid, pg.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            bindir = self._bin()
            run_logged(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                log_file=self.log_file,
                what="initdb",
                cwd=root,
                user=self.user(),
                timeout_s=cfg.start_timeout_s,
            )

    def _bin(self) -> Path:
        bindir = find_postgres_bin(self.config)
        if bindir is None:
            raise PrerequisiteError(self.prerequisites()[0])
        return bindir

    def command(self) -> list[str]:
        c = self.config
        return [
            str(self._bin() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(c.postgres_port),
            "-c",
            f"listen_addresses={c.host}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "logging_collector=off",
        ]

    def _superuser_connect(self, timeout_s: float) -> Any:
        return _psycopg2().connect(
            host=str(self.socket_dir),
            port=self.config.postgres_port,
            user=PG_SUPERUSER,
            dbname="postgres",
            connect_timeout=max(1, int(timeout_s)),
        )

    def startup_probe(self, timeout_s: float) -> str | None:
        try:
            self._superuser_connect(timeout_s).close()
        except Exception as exc:
            return f"not accepting connections: {str(exc).strip()}"
        return None

    def after_start(self) -> None:
        from psycopg2 import sql  # type: ignore[import-untyped]

        cfg = self.config
        owners = {
            POSTGRES_USER: (POSTGRES_DB, cfg.postgres_password()),
            STORE_USER: (STORE_DB, cfg.store_password_file.read_text().strip()),
        }
        conn = self._superuser_connect(10.0)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for role, (database, password) in owners.items():
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    verb = "ALTER" if cur.fetchone() else "CREATE"
                    cur.execute(
                        sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD %s").format(
                            sql.Identifier(role)
                        ),
                        (password,),
                    )
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cur.fetchone() is None:
                        cur.execute(
                            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                sql.Identifier(database), sql.Identifier(role)
                            )
                        )
        finally:
            conn.close()

    def probe(self, timeout_s: float) -> str | None:
        try:
            dsn = self.config.postgres_dsn
        except Exception as exc:
            return str(exc)
        try:
            conn = _psycopg2().connect(dsn, connect_timeout=max(1, int(timeout_s)))
        except Exception as exc:
            return f"cannot connect as {POSTGRES_USER}: {str(exc).strip()}"
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
        return None

    def detail(self) -> str:
        return f"databases {POSTGRES_DB}, {STORE_DB}"


def _pg_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        return None


def _groups(user: pwd.struct_passwd) -> set[int]:
    return set(os.getgrouplist(user.pw_name, user.pw_gid))


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


# ------------------------------------------------------------------------------------ Redis
class RedisService(Service):
    name = "redis"
    marker = "redis-server"
    port_fields = ("redis_port",)

    @property
    def address(self) -> str:
        return self.config.redis_url

    def prerequisites(self) -> list[str]:
        if find_program("redis-server") is None:
            return ["redis-server not found: apt-get install redis-server"]
        return []

    def prepare(self) -> None:
        self.config.redis_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        c = self.config
        exe = find_program("redis-server")
        if exe is None:
            raise PrerequisiteError(self.prerequisites()[0])
        return [
            str(exe),
            "--bind",
            c.host,
            "--port",
            str(c.redis_port),
            "--protected-mode",
            "yes",
            # the append-only file keeps the online feature rows across a restart (fsynced once a
            # second); RDB snapshots stay off
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(c.redis_dir),
            "--pidfile",
            str(c.run_dir / "redis-server.pid"),
            "--logfile",
            "",
            "--daemonize",
            "no",
        ]

    def cwd(self) -> Path:
        return self.config.redis_dir

    def probe(self, timeout_s: float) -> str | None:
        try:
            with socket.create_connection(
                (self.config.host, self.config.redis_port), timeout=timeout_s
            ) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = s.recv(64)
        except OSError as exc:
            return f"no answer: {exc}"
        return None if reply.startswith(b"+PONG") else f"unexpected reply {reply!r}"

    def down(self) -> Any:
        st = super().down()
        with contextlib.suppress(FileNotFoundError):
            (self.config.run_dir / "redis-server.pid").unlink()
        return st


# ------------------------------------------------------------------------------------ MLflow
class MlflowService(Service):
    name = "mlflow"
    depends_on = ("postgres",)
    marker = "mlflow"
    port_fields = ("mlflow_port",)

    @property
    def address(self) -> str:
        return self.config.mlflow_uri

    def prerequisites(self) -> list[str]:
        problems = []
        if find_program("mlflow") is None:
            problems.append(f"mlflow not found: {_STACK_PIP}")
        if not _has_module("psycopg2"):
            problems.append(f"psycopg2 not installed (MLflow's PostgreSQL driver): {_STACK_PIP}")
        return problems

    def prepare(self) -> None:
        self.config.mlartifacts_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        c = self.config
        exe = find_program("mlflow")
        if exe is None:
            raise PrerequisiteError(f"mlflow not found: {_STACK_PIP}")
        return [
            str(exe),
            "server",
            "--backend-store-uri",
            # explicit driver: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3
            f"postgresql+psycopg2://{POSTGRES_USER}@{c.host}:{c.postgres_port}/{POSTGRES_DB}",
            "--artifacts-destination",
            str(c.mlartifacts_dir),
            "--host",
            c.host,
            "--port",
            str(c.mlflow_port),
            "--workers",
            str(c.mlflow_workers),
            # don't let idle keep-alive clients hold up `down`
            "--uvicorn-opts",
            "--timeout-graceful-shutdown 2",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_TRACKING_URI", "PGPASSWORD", "PGSERVICE"):
            env.pop(k, None)
        env.update(
            PGPASSFILE=str(self.config.pgpass_file),
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
        )
        return env

    def cwd(self) -> Path:
        return self.config.state_dir

    def probe(self, timeout_s: float) -> str | None:
        try:
            status, body = http_get(
                self.config.host, self.config.mlflow_port, "/health", timeout_s=timeout_s
            )
        except OSError as exc:
            return f"GET /health: {exc}"
        return None if status == 200 else f"GET /health: HTTP {status} {body[:100]}"


# ------------------------------------------------------------------------------------ Ray
class RayService(Service):
    name = "ray"
    marker = "gcs_server"
    port_fields = (
        "ray_gcs_port",
        "ray_dashboard_port",
        "ray_client_port",
        "ray_dashboard_agent_port",
    )
    launcher_exits = True
    # the raylet first (with it its workers and agents), then GCS, dashboard and the rest; Ray's
    # autoscaler monitor ignores SIGTERM, and a local head keeps nothing worth a long wait
    stop_first = ("raylet/raylet",)
    max_grace_s = 2.0

    @property
    def address(self) -> str:
        return self.config.ray_address

    def prerequisites(self) -> list[str]:
        problems = []
        if find_program("ray") is None:
            problems.append(f"ray not found: {_STACK_PIP}")
        elif not _has_module("aiohttp"):
            problems.append(f"the Ray dashboard needs ray[default]: {_STACK_PIP}")
        return problems

    def prepare(self) -> None:
        c = self.config
        for path in (c.ray_token_file, c.serve_token_file, c.serve_admin_token_file):
            if not path.exists():
                write_secret(path, secrets.token_hex(32))
        c.ray_temp.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        c = self.config
        exe = find_program("ray")
        if exe is None:
            raise PrerequisiteError(f"ray not found: {_STACK_PIP}")
        cmd = [
            str(exe),
            "start",
            "--head",
            "--node-ip-address",
            c.host,
            "--port",
            str(c.ray_gcs_port),
            "--dashboard-host",
            c.host,
            "--dashboard-port",
            str(c.ray_dashboard_port),
            "--ray-client-server-port",
            str(c.ray_client_port),
            "--dashboard-agent-listen-port",
            str(c.ray_dashboard_agent_port),
            "--min-worker-port",
            str(c.ray_min_worker_port),
            "--max-worker-port",
            str(c.ray_max_worker_port),
            "--num-cpus",
            str(c.ray_num_cpus or os.cpu_count() or 1),
            "--temp-dir",
            str(c.ray_temp),
            "--disable-usage-stats",
        ]
        if c.ray_object_store_mb is not None:
            cmd += ["--object-store-memory", str(c.ray_object_store_mb * 2**20)]
        return cmd

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS"):
            env.pop(k, None)
        c = self.config.client_env()
        env.update(
            {k: c[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")},
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_USAGE_STATS_ENABLED="0",
        )
        return env

    def probe(self, timeout_s: float) -> str | None:
        c = self.config
        try:
            token = c.ray_token_file.read_text().strip()
        except FileNotFoundError:
            return f"no token in {c.ray_token_file}"
        if not port_open(c.host, c.ray_gcs_port, timeout_s):
            return f"GCS not listening on {c.ray_address}"
        try:
            status, body = http_get(
                c.host,
                c.ray_dashboard_port,
                "/api/version",
                headers={"Authorization": f"Bearer {token}"},
                timeout_s=timeout_s,
            )
        except OSError as exc:
            return f"dashboard GET /api/version: {exc}"
        if status != 200 or "ray_version" not in body:
            return f"dashboard GET /api/version: HTTP {status} {body[:100]}"
        return None

    def detail(self) -> str:
        return f"dashboard {self.config.ray_dashboard_url}"


# ------------------------------------------------------------------------------------ Feast
class FeastService(Service):
    name = "feast"
    depends_on = ("redis",)
    marker = "feast"
    port_fields = ("feast_port",)

    @property
    def address(self) -> str:
        return self.config.feast_url

    @property
    def repo(self) -> Path:
        return self.config.feature_repo

    def skip_reason(self) -> str | None:
        if not (self.repo / "feature_store.yaml").is_file():
            return (
                f"feature repo not found: no {self.repo / 'feature_store.yaml'} "
                "(set RAYTRADER_STACK_FEATURE_REPO)"
            )
        return None

    def prerequisites(self) -> list[str]:
        return [] if find_program("feast") else [f"feast not found: {_STACK_PIP}"]

    def _feast(self) -> str:
        exe = find_program("feast")
        if exe is None:
            raise PrerequisiteError(f"feast not found: {_STACK_PIP}")
        return str(exe)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.client_env())
        env.setdefault("FEAST_USAGE", "False")
        return env

    def cwd(self) -> Path:
        return self.repo

    def prepare(self) -> None:
        self.config.feast_data.mkdir(parents=True, exist_ok=True)
        run_logged(
            [self._feast(), "-c", str(self.repo), "apply"],
            log_file=self.log_file,
            what=f"feast apply in {self.repo}",
            env=self.env(),
            cwd=self.repo,
            timeout_s=self.config.start_timeout_s,
        )

    def command(self) -> list[str]:
        c = self.config
        return [
            self._feast(),
            "-c",
            str(self.repo),
            "serve",
            "-h",
            c.host,
            "-p",
            str(c.feast_port),
            "--no-access-log",
            # Feast's default recycles the worker every ~1,000 requests, resetting the clients'
            # keep-alive connections mid-stream (seen in the read benchmark); serving must not
            "--max-requests",
            "0",
        ]

    def probe(self, timeout_s: float) -> str | None:
        try:
            status, body = http_get(
                self.config.host, self.config.feast_port, "/health", timeout_s=timeout_s
            )
        except OSError as exc:
            return f"GET /health: {exc}"
        return None if status == 200 else f"GET /health: HTTP {status} {body[:100]}"


SERVICES: dict[str, type[Service]] = {
    "postgres": PostgresService,
    "redis": RedisService,
    "kafka": KafkaService,
    "mlflow": MlflowService,
    "ray": RayService,
    "feast": FeastService,
}

__all__ = [
    "SERVICES",
    "FeastService",
    "KafkaService",
    "MlflowService",
    "PostgresService",
    "RayService",
    "RedisService",
    "StackError",
]
