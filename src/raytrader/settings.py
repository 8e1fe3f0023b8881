"""The settings raytrader's processes read from their environment, in one place (pydantic-settings).

``RAYTRADER_MODE`` says what an unset setting means:

``local`` (the default)
    the local stack's, when it has run: ``raytrader stack up`` writes the settings of its clients
    (what ``raytrader stack env`` prints) to ``<state dir>/client.env`` (state dir:
    ``RAYTRADER_STACK_DIR``, default ``~/.local/share/raytrader/stack``), and an unset variable is
    read from there; then a development default (below). The stack only *produces* settings:
    nothing here imports it.
``cluster``
    an error: a setting the process needs and does not have is a :class:`ConfigError` naming its
    variable. The chart sets this mode in every pod, so nothing there silently talks to
    127.0.0.1, writes to a state directory on the container's disk, keeps MLflow runs in a
    SQLite file or serves without a token.

========================================  ==========================================================
setting                                   unset, in local mode (after the stack's ``client.env``)
========================================  ==========================================================
``RAYTRADER_KAFKA_BOOTSTRAP`` (and the    an error naming it (there is no broker to guess)
security below)
``RAYTRADER_REDIS_CONNECTION``            ``localhost:6379`` (Feast's online store)
``RAYTRADER_FEAST_DATA``                  ``~/.cache/raytrader/feast``
``RAYTRADER_FEAST_REPO``                  the source tree's ``pipelines/feature_repo`` (also in
                                          cluster mode: the image carries it)
``MLFLOW_TRACKING_URI``                   the embedded SQLite store under the command's output
                                          root (never the stack's file: runs go to the stack's
                                          server only when it is exported or passed)
``RAY_ADDRESS``                           a Ray started in the process
``RAYTRADER_API_TOKEN`` / ``_ADMIN_``     none: no auth only with ``RAYTRADER_LOCAL_DEV=1``,
(or ``..._FILE``)                         which cluster mode refuses
``RAYTRADER_SERVE_URL``                   ``http://127.0.0.1:8000`` (clients of the service)
``RAYTRADER_DB_URL``                      the experiment store: SQLite
                                          ``~/.local/share/raytrader/experiments.db`` (the stack
                                          writes its PostgreSQL database ``raytrader`` here)
``RAYTRADER_EXPERIMENT_API_URL``          ``http://127.0.0.1:8080`` (the dashboard's API)
========================================  ==========================================================

Kafka (``RAYTRADER_KAFKA_*``, :class:`KafkaSettings`): the bootstrap servers and the security of
every client — the bar producer, the feature consumer, its dead-letter producer and the admin
client that creates topics. ``SECURITY_PROTOCOL`` is librdkafka's (``PLAINTEXT``, ``SSL``,
``SASL_PLAINTEXT``, ``SASL_SSL``); SASL takes ``SASL_MECHANISM`` (``SCRAM-SHA-512`` by default,
``SCRAM-SHA-256``, ``PLAIN``), ``SASL_USERNAME`` and ``SASL_PASSWORD`` or ``SASL_PASSWORD_FILE``
(a mounted Secret); TLS takes ``SSL_CA_LOCATION`` (the CA that signed the brokers' certificates,
PEM; unset: the system's), and for mutual TLS ``SSL_CERTIFICATE_LOCATION`` and
``SSL_KEY_LOCATION``. A setting that the protocol does not use is an error rather than ignored.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from raytrader.errors import ConfigError

Mode = Literal["local", "cluster"]
MODE_ENV = "RAYTRADER_MODE"
KAFKA_PREFIX = "RAYTRADER_KAFKA_"
#: the local stack's state directory, and the file in it with its clients' settings
STACK_DIR_ENV = "RAYTRADER_STACK_DIR"
STACK_ENV_FILE = "client.env"
#: Feast: the feature repo, its data dir (registry, offline files) and the Redis online store
FEAST_REPO_ENV = "RAYTRADER_FEAST_REPO"
FEAST_DATA_ENV = "RAYTRADER_FEAST_DATA"
REDIS_ENV = "RAYTRADER_REDIS_CONNECTION"
DEFAULT_REDIS_CONNECTION = "localhost:6379"
MLFLOW_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
#: the decision service's tokens (each also as ``<NAME>_FILE``, a mounted Secret) and its URL
TOKEN_ENV = "RAYTRADER_API_TOKEN"  # noqa: S105 - the variable's name, not a token
ADMIN_TOKEN_ENV = "RAYTRADER_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
LOCAL_DEV_ENV = "RAYTRADER_LOCAL_DEV"
SERVE_URL_ENV = "RAYTRADER_SERVE_URL"
#: the experiment store (raytrader.db) and the experiment API's base URL for its clients
DB_URL_ENV = "RAYTRADER_DB_URL"
API_URL_ENV = "RAYTRADER_EXPERIMENT_API_URL"
#: the experiment API's read and admin tokens (each also as ``<NAME>_FILE``)
EXPERIMENT_TOKEN_ENV = "RAYTRADER_EXPERIMENT_API_TOKEN"  # noqa: S105 - the variable's name
EXPERIMENT_ADMIN_TOKEN_ENV = "RAYTRADER_EXPERIMENT_ADMIN_TOKEN"  # noqa: S105 - the variable's name
DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_SERVE_URL = "http://127.0.0.1:8000"


#: the variables Kubernetes puts in every pod for each Service of its namespace: a release named
#: ``raytrader`` has a Service ``raytrader-kafka``, hence RAYTRADER_KAFKA_SERVICE_HOST, _PORT, ...
_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class _Settings(BaseSettings):
    """Settings read from the environment: frozen, unknown fields refused."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", case_sensitive=False, env_ignore_empty=True
    )


class ModeSettings(_Settings):
    model_config = SettingsConfigDict(env_prefix="RAYTRADER_")

    mode: Mode = "local"


class KafkaSettings(_Settings):
    """Kafka's bootstrap servers and client security (module docstring)."""

    model_config = SettingsConfigDict(env_prefix=KAFKA_PREFIX)

    bootstrap: str | None = None
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    #: check the broker's host name against its certificate
    ssl_endpoint_identification: bool = True

    @property
    def servers(self) -> str:
        """The bootstrap servers (:func:`kafka` always sets them)."""
        if not self.bootstrap:
            raise ConfigError(f"{KAFKA_PREFIX}BOOTSTRAP is not set")
        return self.bootstrap

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.sasl:
            if not self.sasl_username:
                raise ValueError(f"{self.security_protocol} needs {KAFKA_PREFIX}SASL_USERNAME")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise ValueError(
                    f"{self.security_protocol} needs one of {KAFKA_PREFIX}SASL_PASSWORD and "
                    f"{KAFKA_PREFIX}SASL_PASSWORD_FILE"
                )
        else:
            unused = [f for f in ("sasl_username", "sasl_password", "sasl_password_file")
                      if getattr(self, f) is not None]  # fmt: skip
            if unused:
                raise ValueError(
                    f"{_names(unused)} set, but {KAFKA_PREFIX}SECURITY_PROTOCOL is "
                    f"{self.security_protocol} (SASL_PLAINTEXT or SASL_SSL use them)"
                )
        files = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
        if not self.tls:
            unused = [f for f in files if getattr(self, f) is not None]
            if unused:
                raise ValueError(
                    f"{_names(unused)} set, but {KAFKA_PREFIX}SECURITY_PROTOCOL is "
                    f"{self.security_protocol} (SSL or SASL_SSL use them)"
                )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError(
                f"mutual TLS needs both {KAFKA_PREFIX}SSL_CERTIFICATE_LOCATION and "
                f"{KAFKA_PREFIX}SSL_KEY_LOCATION"
            )
        for name in (*files, "sasl_password_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{_names([name])}: no file {path}")
        return self

    def password(self) -> str:
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        assert self.sasl_password_file is not None  # noqa: S101 - checked by _consistent
        return self.sasl_password_file.read_text().strip()

    def security_config(self) -> dict[str, Any]:
        """librdkafka's security settings (confluent-kafka clients), without the servers."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol}
        if self.sasl:
            conf |= {
                "sasl.mechanisms": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.password(),
            }
        if self.tls:
            identify = "https" if self.ssl_endpoint_identification else "none"
            conf["ssl.endpoint.identification.algorithm"] = identify
            for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
                path = getattr(self, name)
                if path is not None:
                    conf[name.replace("_", ".")] = str(path)
        return conf

    def client_config(self) -> dict[str, Any]:
        """librdkafka's settings for these servers and this security."""
        return {"bootstrap.servers": self.servers, **self.security_config()}


def _names(fields: list[str]) -> str:
    return ", ".join(KAFKA_PREFIX + f.upper() for f in fields)


def _load(cls: type[_Settings]) -> Any:
    """``cls`` from the process environment; a :class:`ConfigError` naming the variable on bad
    input."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        return cls()
    except ValidationError as e:
        problems = []
        for error in e.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{(prefix + where).upper()}: {message}" if where else message)
        raise ConfigError("; ".join(problems)) from None


def mode() -> Mode:
    """``RAYTRADER_MODE``: ``local`` or ``cluster`` (module docstring)."""
    settings: ModeSettings = _load(ModeSettings)
    return settings.mode


def local_stack_dir() -> Path:
    """The local stack's state directory: ``RAYTRADER_STACK_DIR``, else
    ``~/.local/share/raytrader/stack``."""
    value = os.environ.get(STACK_DIR_ENV)
    if value:
        return Path(os.path.abspath(Path(value).expanduser()))
    return default_local_stack_dir()


def default_local_stack_dir() -> Path:
    """``~/.local/share/raytrader/stack``."""
    return Path.home() / ".local" / "share" / "raytrader" / "stack"


def local_stack_env(state_dir: Path | None = None) -> dict[str, str]:
    """The settings the local stack wrote for its clients (``<state dir>/client.env``); empty
    when it never ran there."""
    path = (state_dir or local_stack_dir()) / STACK_ENV_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}, line {number}: expected NAME=value")
        out[key.strip()] = value
    return out


def write_local_stack_env(state_dir: Path, env: Mapping[str, str]) -> Path:
    """Write ``env`` as the local stack's clients' settings (atomically: readers see the old or
    the new file)."""
    for key, value in env.items():
        if "\n" in value or "=" in key:
            raise ConfigError(f"setting {key!r}: a name without '=' and a value on one line")
    path = state_dir / STACK_ENV_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    text = "# written by `raytrader stack up`; read by raytrader in local mode\n"
    text += "".join(f"{key}={value}\n" for key, value in env.items())
    with tempfile.NamedTemporaryFile("w", dir=state_dir, prefix=".client.env.", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)
    return path


def lookup(variable: str) -> str | None:
    """``variable`` from the process environment, else (local mode) from the local stack's
    ``client.env``; ``None`` when neither has it (an empty value is unset)."""
    value = os.environ.get(variable) or None
    if value is None and mode() == "local":
        value = local_stack_env().get(variable) or None
    return value


def required(variable: str) -> str | None:
    """:func:`lookup`; unset is ``None`` in local mode and a :class:`ConfigError` in cluster
    mode."""
    value = lookup(variable)
    if value is None and mode() == "cluster":
        raise ConfigError(
            f"{variable} is not set ({MODE_ENV}=cluster: nothing falls back to the local stack)"
        )
    return value


def kafka(bootstrap: str | None = None) -> KafkaSettings:
    """Kafka's settings; ``bootstrap`` (a CLI flag) wins over ``RAYTRADER_KAFKA_BOOTSTRAP``, and
    in local mode the local stack's broker is the default."""
    unknown = sorted(
        key
        for key in os.environ
        if key.upper().startswith(KAFKA_PREFIX)
        and key.upper().removeprefix(KAFKA_PREFIX).lower() not in KafkaSettings.model_fields
        and not _SERVICE_LINK.fullmatch(key.upper())
    )
    if unknown:  # a misspelt setting would otherwise be ignored
        raise ConfigError(
            f"unknown Kafka setting {', '.join(unknown)}; known: "
            + _names(list(KafkaSettings.model_fields))
        )
    settings: KafkaSettings = _load(KafkaSettings)
    if bootstrap:
        return settings.model_copy(update={"bootstrap": bootstrap})
    if settings.bootstrap:
        return settings
    variable = f"{KAFKA_PREFIX}BOOTSTRAP"
    found = required(variable)
    if found is None:
        raise ConfigError(
            f"{variable} is not set and the local stack has not run "
            f"({local_stack_dir() / STACK_ENV_FILE} is missing): `raytrader stack up`, "
            f"or set {variable} or pass --bootstrap"
        )
    return settings.model_copy(update={"bootstrap": found})


def state_dir() -> Path:
    """The local stack's state directory (local mode only: cluster processes are given theirs)."""
    if mode() == "cluster":
        raise ConfigError(
            f"no state directory given ({MODE_ENV}=cluster: the local stack's is not used)"
        )
    return local_stack_dir()


def redis_connection(explicit: str | None = None) -> str:
    """Feast's online store as given (a CLI flag, else ``RAYTRADER_REDIS_CONNECTION``; a
    ``redis://`` URL or Feast's ``host:port,...``), else (local mode) ``localhost:6379``."""
    return explicit or required(REDIS_ENV) or DEFAULT_REDIS_CONNECTION


def feast_data(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Feast's data directory (registry, offline files): ``explicit``, else
    ``RAYTRADER_FEAST_DATA``, else (local mode) ``~/.cache/raytrader/feast``."""
    value = explicit or required(FEAST_DATA_ENV)
    if not value:
        return Path.home() / ".cache" / "raytrader" / "feast"
    return Path(value).expanduser().resolve()


def feast_repo(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The feature repo given (``explicit``, else ``RAYTRADER_FEAST_REPO``); ``None``: the
    one in the source tree (:data:`raytrader.features.feast_repo.DEFAULT_REPO_DIR`)."""
    value = explicit or lookup(FEAST_REPO_ENV)
    return Path(value).expanduser().resolve() if value else None


def tracking_uri(explicit: str | None = None, root: str | os.PathLike[str] | None = None) -> str:
    """The MLflow tracking (and registry) URI: ``explicit``, else ``MLFLOW_TRACKING_URI``, else
    (local mode, with an output ``root``) the embedded SQLite store ``<root>/mlflow.db``."""
    value = explicit or os.environ.get(MLFLOW_ENV)
    if value:
        return value
    if mode() == "cluster":
        raise ConfigError(
            f"{MLFLOW_ENV} is not set ({MODE_ENV}=cluster: runs never go to a SQLite file in a pod)"
        )
    if root is None:
        raise ConfigError(f"no MLflow tracking URI: set {MLFLOW_ENV} or pass one")
    return embedded_tracking_uri(root)


def embedded_tracking_uri(root: str | os.PathLike[str]) -> str:
    """The embedded SQLite store under ``root`` (absolute, so any working directory finds it)."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def ray_address(explicit: str | None = None) -> str | None:
    """The Ray cluster to join: ``explicit``, else ``RAY_ADDRESS``; ``None`` (local mode only):
    start one in this process."""
    value = explicit or os.environ.get(RAY_ADDRESS_ENV)
    if value is None and mode() == "cluster":
        raise ConfigError(
            f"{RAY_ADDRESS_ENV} is not set ({MODE_ENV}=cluster: a pod joins its Ray cluster, it "
            "never starts one of its own)"
        )
    return value


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """``$NAME``, else the contents of the file ``$NAME_FILE`` (``env``: default the process's);
    None when neither is set."""
    env = os.environ if env is None else env
    value = env.get(name)
    if value:
        return value.strip()
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={path}: {exc.strerror}") from exc
    if not text:
        raise ConfigError(f"{name}_FILE={path} is empty")
    return text


def local_dev(env: Mapping[str, str] | None = None, *, configured: bool = False) -> bool:
    """Whether a service without a token may run without auth: ``configured`` (its config's
    ``local_dev``) or ``RAYTRADER_LOCAL_DEV=1``; refused in cluster mode."""
    env = os.environ if env is None else env
    wanted = configured or env.get(LOCAL_DEV_ENV, "").strip().lower() in ("1", "true", "yes")
    if wanted and mode() == "cluster":
        raise ConfigError(
            f"local-dev mode (no auth) is refused with {MODE_ENV}=cluster; set {TOKEN_ENV}"
        )
    return wanted


def client_token(admin: bool = False) -> str | None:
    """The token a client of the decision service sends: ``RAYTRADER_API_TOKEN`` (or
    ``RAYTRADER_ADMIN_TOKEN`` with ``admin``), or its ``_FILE``, else (local mode) the local
    stack's token file."""
    name = ADMIN_TOKEN_ENV if admin else TOKEN_ENV
    found = {key: value for key in (name, f"{name}_FILE") if (value := lookup(key))}
    stacks = found.get(f"{name}_FILE")
    if stacks and f"{name}_FILE" not in os.environ and not Path(stacks).exists():
        del found[f"{name}_FILE"]  # the stack's, before its service ever ran: no token yet
    return read_secret(name, found)


def serve_url(explicit: str | None = None) -> str:
    """The decision service's base URL for clients: ``explicit``, else ``RAYTRADER_SERVE_URL``,
    else (local mode) ``http://127.0.0.1:8000``."""
    return (explicit or required(SERVE_URL_ENV) or DEFAULT_SERVE_URL).rstrip("/")


def db_url(explicit: str | None = None) -> str:
    """The experiment store's SQLAlchemy URL: ``explicit``, else ``RAYTRADER_DB_URL`` (the local
    stack's PostgreSQL once it ran), else (local mode) the SQLite file
    ``~/.local/share/raytrader/experiments.db``."""
    value = explicit or required(DB_URL_ENV)
    if value:
        return value
    path = Path.home() / ".local" / "share" / "raytrader" / "experiments.db"
    return f"sqlite:///{path}"


def api_url(explicit: str | None = None) -> str:
    """The experiment API's base URL for its clients (the dashboard): ``explicit``, else
    ``RAYTRADER_EXPERIMENT_API_URL``, else (local mode) ``http://127.0.0.1:8080``."""
    return (explicit or required(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


__all__ = [
    "KafkaSettings",
    "Mode",
    "api_url",
    "client_token",
    "db_url",
    "embedded_tracking_uri",
    "feast_data",
    "feast_repo",
    "kafka",
    "local_dev",
    "local_stack_dir",
    "local_stack_env",
    "lookup",
    "mode",
    "ray_address",
    "read_secret",
    "redis_connection",
    "required",
    "serve_url",
    "state_dir",
    "tracking_uri",
    "write_local_stack_env",
]
