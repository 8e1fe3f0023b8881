"""``StackConfig``: where the local stack keeps its state, which ports it uses, and the addresses
clients connect to.

Every field can be overridden from the environment: ``RAYTRADER_STACK_DIR`` sets ``state_dir`` and
``RAYTRADER_STACK_<FIELD>`` (upper case) sets any other field, e.g. ``RAYTRADER_STACK_KAFKA_PORT=19092``
or ``RAYTRADER_STACK_KAFKA_TOPICS=bars.1m=8,bars.dlq=1``. An unknown ``RAYTRADER_STACK_*`` variable is
an error (a typo must not be silently ignored). See :mod:`raytrader.stack` for the ports table and
the state layout.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from raytrader import settings
from raytrader.config import StrictConfig
from raytrader.errors import ConfigError, RaytraderError
from raytrader.kafka_admin import DEFAULT_TOPICS

ENV_PREFIX = "RAYTRADER_STACK_"
ENV_STATE_DIR = settings.STACK_DIR_ENV

#: the stack's services, in dependency (start) order
SERVICE_NAMES: tuple[str, ...] = ("postgres", "redis", "kafka", "mlflow", "ray", "feast")


#: the fields that are TCP ports, with a description used in error messages and the docs
PORT_FIELDS: dict[str, str] = {
    "postgres_port": "PostgreSQL",
    "redis_port": "Redis",
    "kafka_port": "Kafka broker",
    "kafka_controller_port": "Kafka KRaft controller",
    "mlflow_port": "MLflow tracking server",
    "ray_gcs_port": "Ray GCS (head address)",
    "ray_dashboard_port": "Ray dashboard / Jobs API",
    "ray_client_port": "Ray client server",
    "ray_dashboard_agent_port": "Ray dashboard agent",
    "feast_port": "Feast feature server",
}

# Ray's Unix sockets live under <ray temp dir>/session_<date>_<pid>/sockets/…; paths over 107 bytes
# cannot be bound, so a state dir with a long path puts Ray's temp dir under /tmp instead. The
# longest: the dashboard's module sockets, ``dash_TaskEventsHead`` (Ray 2.60), in a session named
# ``session_2026-12-07_07-37-45_144829_<pid>`` with a 7-digit pid (pid_max 4194304). A state dir of
# ``/tmp/home7/.local/share/raytrader/stack`` (a fresh HOME) left 44 and Ray's dashboard failed:
# ``AF_UNIX path length cannot exceed 107 bytes: .../sockets/dash_MetricsHead``.
_RAY_SOCKET_MAX_LEN = 107
_RAY_SOCKET_TAIL = "/session_2026-12-07_07-37-45_144829_4194304/sockets/dash_TaskEventsHead"
_RAY_TEMP_MAX_LEN = _RAY_SOCKET_MAX_LEN - len(_RAY_SOCKET_TAIL)  # 36


#: ``~/.local/share/raytrader/stack``
default_state_dir = settings.default_local_stack_dir


def default_cache_dir() -> Path:
    """``~/.cache/raytrader`` (Maven repository and Kafka jars)."""
    return Path.home() / ".cache" / "raytrader"


def project_root() -> Path:
    """The source checkout this package was installed from (editable installs)."""
    return Path(__file__).resolve().parents[3]


def default_feature_repo() -> Path:
    """``pipelines/feature_repo`` of the source checkout."""
    return project_root() / "pipelines" / "feature_repo"


class StackConfig(StrictConfig):
    """Configuration of the local development stack (all services on a loopback address)."""

    state_dir: Path = Field(default_factory=default_state_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    host: str = "127.0.0.1"

    postgres_port: int = 5432
    redis_port: int = 6379
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mlflow_port: int = 5000
    ray_gcs_port: int = 6380
    ray_dashboard_port: int = 8265
    ray_client_port: int = 10001
    #: not Ray's default (52365): every local ``ray.init()`` binds that one, and the stack's head must
    #: run beside a user's (or the demo's, or a test session's) local Ray
    ray_dashboard_agent_port: int = 8266
    feast_port: int = 6566
    #: the decision service's HTTP port (Ray Serve's proxy, once `raytrader serve up` deploys it)
    serve_port: int = 8000
    #: reserved for raytrader's own Prometheus ``/metrics`` endpoints (nothing listens there yet)
    metrics_port_first: int = 9400
    metrics_port_last: int = 9499
    #: the ports Ray workers bind (Ray's defaults)
    ray_min_worker_port: int = 10002
    ray_max_worker_port: int = 19999

    kafka_version: str = "3.9.1"
    kafka_scala_version: str = "2.13"
    #: the slf4j binding that gives the Kafka jars a logging backend (reload4j = log4j 1.2 API)
    kafka_slf4j_version: str = "1.7.36"
    kafka_heap_mb: int = Field(default=1024, ge=128)
    kafka_topics: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TOPICS))

    postgres_bin_dir: Path | None = None
    mlflow_workers: int = Field(default=1, ge=1)
    ray_num_cpus: int | None = Field(default=None, ge=1)
    ray_object_store_mb: int | None = Field(default=None, ge=64)
    ray_temp_dir: Path | None = None
    feature_repo: Path = Field(default_factory=default_feature_repo)
    #: Feast's data dir (registry.db, offline files) = ``RAYTRADER_FEAST_DATA``; default <state>/feast
    feast_data_dir: Path | None = None

    start_timeout_s: float = Field(default=180.0, gt=0)
    stop_grace_s: float = Field(default=15.0, ge=0)

    # ------------------------------------------------------------------------------ validation
    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(
                f"{v!r} is not an IP address; the local stack listens on a loopback address "
                "such as 127.0.0.1"
            ) from None
        if not addr.is_loopback:
            raise ValueError(
                f"{v} is not a loopback address; the local stack only listens on 127.0.0.0/8"
            )
        if addr.version != 4:
            raise ValueError(f"{v}: only IPv4 loopback addresses (127.0.0.0/8) are supported")
        return v

    @field_validator("kafka_version")
    @classmethod
    def _kafka_3(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] != "3":
            raise ValueError(
                f"Kafka {v!r}: this launcher runs Kafka 3.x (KRaft, log4j 1.x via reload4j); "
                "tested with 3.9.1"
            )
        if int(parts[1]) < 3:
            raise ValueError(f"Kafka {v}: KRaft mode needs 3.3 or newer")
        return v

    @field_validator("kafka_topics")
    @classmethod
    def _topics(cls, v: dict[str, int]) -> dict[str, int]:
        for name, parts in v.items():
            if not name or any(c not in _TOPIC_CHARS for c in name) or len(name) > 249:
                raise ValueError(f"invalid Kafka topic name {name!r}")
            if parts < 1:
                raise ValueError(f"topic {name!r} needs at least 1 partition, got {parts}")
        return v

    @field_validator(
        "state_dir",
        "cache_dir",
        "ray_temp_dir",
        "postgres_bin_dir",
        "feature_repo",
        "feast_data_dir",
    )
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        return None if v is None else Path(os.path.abspath(v.expanduser()))

    @model_validator(mode="after")
    def _ports(self) -> Self:
        ports = self.ports()
        for name, port in ports.items():
            if not 1024 <= port <= 65535:
                raise ValueError(f"{name} must be in 1024..65535, got {port}")
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} both use port {port}")
            seen[port] = name
        for lo, hi, what in (
            (self.metrics_port_first, self.metrics_port_last, "metrics port range"),
            (self.ray_min_worker_port, self.ray_max_worker_port, "Ray worker port range"),
        ):
            if not 1024 <= lo <= hi <= 65535:
                raise ValueError(f"{what} {lo}-{hi} must satisfy 1024 <= first <= last <= 65535")
            clash = [n for n, p in ports.items() if lo <= p <= hi]
            if clash:
                raise ValueError(
                    f"{what} {lo}-{hi} contains {', '.join(clash)}; move the port(s) or the range "
                    "(ray_min_worker_port/ray_max_worker_port, metrics_port_first/metrics_port_last)"
                )
        if not (
            self.metrics_port_last < self.ray_min_worker_port
            or self.ray_max_worker_port < self.metrics_port_first
        ):
            raise ValueError("the metrics port range overlaps the Ray worker port range")
        return self

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        """The config from ``RAYTRADER_STACK_DIR`` / ``RAYTRADER_STACK_<FIELD>`` (then ``overrides``)."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        names: dict[str, str] = {}  # field -> env var, for error messages
        fields = {f for f in cls.model_fields if f != "state_dir"}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            if key == ENV_STATE_DIR:
                data["state_dir"], names["state_dir"] = raw, key
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field not in fields:
                known = ", ".join(
                    [ENV_STATE_DIR, *(ENV_PREFIX + f.upper() for f in sorted(fields))]
                )
                raise ConfigError(f"unknown environment variable {key}; known: {known}")
            data[field] = _parse_env_value(field, raw, key)
            names[field] = key
        data.update(overrides)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else ""
                where = names.get(field, f"stack.{field}" if field else "stack")
                parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
            raise ConfigError("; ".join(parts)) from exc

    def to_env(self) -> dict[str, str]:
        """``RAYTRADER_STACK_*`` variables that reproduce this config in another process."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            key = ENV_STATE_DIR if name == "state_dir" else ENV_PREFIX + name.upper()
            if isinstance(value, dict):
                out[key] = ",".join(f"{k}={v}" for k, v in value.items())
            else:
                out[key] = str(value)
        return out

    # ------------------------------------------------------------------------------ ports
    def ports(self) -> dict[str, int]:
        """Every fixed port of the stack, by field name."""
        return {name: int(getattr(self, name)) for name in PORT_FIELDS}

    @property
    def metrics_ports(self) -> range:
        """The port range reserved for raytrader's own ``/metrics`` endpoints."""
        return range(self.metrics_port_first, self.metrics_port_last + 1)

    # ------------------------------------------------------------------------------ addresses
    @property
    def kafka_bootstrap(self) -> str:
        """Kafka ``bootstrap.servers``, e.g. ``127.0.0.1:9092``."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """``redis://127.0.0.1:6379/0``."""
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def redis_connection(self) -> str:
        """Feast's Redis ``connection_string``: ``127.0.0.1:6379``."""
        return f"{self.host}:{self.redis_port}"

    @property
    def postgres_dsn(self) -> str:
        """``postgresql://mlflow:<password>@127.0.0.1:5432/mlflow`` (password from the state dir)."""
        return (
            f"postgresql://{POSTGRES_USER}:{self.postgres_password()}@{self.host}:"
            f"{self.postgres_port}/{POSTGRES_DB}"
        )

    @property
    def postgres_sqlalchemy_url(self) -> str:
        """``postgres_dsn`` with the psycopg2 driver named (SQLAlchemy 2.1 defaults to psycopg 3)."""
        return self.postgres_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)

    @property
    def mlflow_uri(self) -> str:
        """MLflow tracking and registry URI: ``http://127.0.0.1:5000``."""
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def ray_address(self) -> str:
        """The address for ``ray.init(address=...)`` / ``RAY_ADDRESS``: ``127.0.0.1:6380``."""
        return f"{self.host}:{self.ray_gcs_port}"

    @property
    def ray_client_address(self) -> str:
        """Ray Client address: ``ray://127.0.0.1:10001``."""
        return f"ray://{self.host}:{self.ray_client_port}"

    @property
    def ray_dashboard_url(self) -> str:
        """Ray dashboard and Jobs API: ``http://127.0.0.1:8265``."""
        return f"http://{self.host}:{self.ray_dashboard_port}"

    @property
    def feast_url(self) -> str:
        """Feast feature server: ``http://127.0.0.1:6566``."""
        return f"http://{self.host}:{self.feast_port}"

    # ------------------------------------------------------------------------------ state layout
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def postgres_password_file(self) -> Path:
        return self.secrets_dir / "postgres-mlflow-password"

    @property
    def store_password_file(self) -> Path:
        """The experiment store's role (``raytrader``) password."""
        return self.secrets_dir / "postgres-raytrader-password"

    @property
    def store_url(self) -> str:
        """The experiment store: database ``raytrader`` as role ``raytrader``; the password reaches
        libpq through the pgpass file, so it is in neither the URL nor ``client.env``."""
        return (
            f"postgresql+psycopg2://{STORE_USER}@{self.host}:{self.postgres_port}/{STORE_DB}"
            f"?passfile={self.pgpass_file}"
        )

    @property
    def pgpass_file(self) -> Path:
        return self.secrets_dir / "pgpass"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def mlartifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def feast_data(self) -> Path:
        """Feast's data dir (``RAYTRADER_FEAST_DATA`` for the feature repo): ``<state>/feast``."""
        return self.feast_data_dir if self.feast_data_dir is not None else self.state_dir / "feast"

    @property
    def serve_token_file(self) -> Path:
        """The decision service's API token (``RAYTRADER_API_TOKEN_FILE``)."""
        return self.secrets_dir / "serve-api-token"

    @property
    def serve_admin_token_file(self) -> Path:
        """The decision service's admin token (``RAYTRADER_ADMIN_TOKEN_FILE``)."""
        return self.secrets_dir / "serve-admin-token"

    @property
    def serve_url(self) -> str:
        return f"http://{self.host}:{self.serve_port}"

    @property
    def ray_token_file(self) -> Path:
        """The Ray cluster's auth token (``RAY_AUTH_TOKEN_PATH`` for clients)."""
        return self.secrets_dir / "ray-auth-token"

    @property
    def ray_temp(self) -> Path:
        """Ray's ``--temp-dir``: ``<state>/ray`` if that path is short enough for Unix sockets,
        else ``/tmp/raytrader-ray-<hash of state dir>``."""
        if self.ray_temp_dir is not None:
            return self.ray_temp_dir
        inside = self.state_dir / "ray"
        if len(str(inside)) <= _RAY_TEMP_MAX_LEN:
            return inside
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"raytrader-ray-{digest}"  # noqa: S108 - short path for sockets

    @property
    def kafka_home(self) -> Path:
        """``<cache>/kafka-<version>``: the generated pom and ``libs/``."""
        return self.cache_dir / f"kafka-{self.kafka_version}"

    @property
    def maven_repo(self) -> Path:
        """``<cache>/m2``: the Maven local repository used to resolve the Kafka jars."""
        return self.cache_dir / "m2"

    # ------------------------------------------------------------------------------ secrets / env
    def postgres_password(self) -> str:
        """The ``mlflow`` role's password, generated into the state dir by ``stack up``."""
        try:
            return self.postgres_password_file.read_text().strip()
        except FileNotFoundError:
            raise RaytraderError(
                f"no PostgreSQL password in {self.postgres_password_file}; "
                "run `raytrader stack up` first"
            ) from None

    def client_env(self) -> dict[str, str]:
        """Environment for clients of the stack (``raytrader stack env`` prints it; ``stack up``
        writes it to ``<state>/client.env``, where :mod:`raytrader.settings` reads it in local
        mode).

        Ray: ``RAY_ADDRESS``, token auth (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN_PATH``), and
        ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so Ray keeps 127.0.0.1 instead of rewriting a
        loopback address to the machine's network IP (the head only listens on 127.0.0.1).
        """
        return {
            "RAY_ADDRESS": self.ray_address,
            "RAY_API_SERVER_ADDRESS": self.ray_dashboard_url,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.ray_token_file),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "RAYTRADER_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "RAYTRADER_REDIS_CONNECTION": self.redis_connection,
            "RAYTRADER_REDIS_URL": self.redis_url,
            "RAYTRADER_FEAST_URL": self.feast_url,
            "RAYTRADER_FEAST_REPO": str(self.feature_repo),
            "RAYTRADER_FEAST_DATA": str(self.feast_data),
            "RAYTRADER_MLFLOW_URI": self.mlflow_uri,
            "RAYTRADER_SERVE_URL": self.serve_url,
            "RAYTRADER_DB_URL": self.store_url,
            "RAYTRADER_API_TOKEN_FILE": str(self.serve_token_file),
            "RAYTRADER_ADMIN_TOKEN_FILE": str(self.serve_admin_token_file),
        }


POSTGRES_USER = "mlflow"
POSTGRES_DB = "mlflow"
#: the experiment store's role and database (raytrader.db), apart from MLflow's
STORE_USER = "raytrader"
STORE_DB = "raytrader"

_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _parse_env_value(field: str, raw: str, key: str) -> Any:
    """Strings are validated by pydantic; the topic map also accepts ``name=n,name=n``."""
    if field != "kafka_topics":
        return None if raw == "" and field in _OPTIONAL_FIELDS else raw
    text = raw.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}: invalid JSON: {exc}") from exc
    topics: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, parts = item.partition("=")
        if not sep:
            raise ConfigError(f"{key}: expected name=partitions, got {item!r}")
        topics[name.strip()] = parts.strip()
    return topics


_OPTIONAL_FIELDS = frozenset(
    {"postgres_bin_dir", "ray_num_cpus", "ray_object_store_mb", "ray_temp_dir", "feast_data_dir"}
)
