"""The settings raytrader's processes read from their environment, in one place (pydantic-settings).

``RAYTRADER_MODE`` says what an unset setting means:

``local`` (the default)
    the local stack's (``raytrader stack up``): its addresses on 127.0.0.1 and its state
    directory, what ``eval "$(raytrader stack env)"`` would have exported.
``cluster``
    an error: a setting the process needs and does not have is a :class:`ConfigError` naming its
    variable. The chart sets this mode in every pod, so nothing there silently talks to
    127.0.0.1 or writes to a state directory on the container's disk.

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
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from raytrader.errors import ConfigError
from raytrader.features.feast_repo import DATA_ENV, REDIS_ENV

Mode = Literal["local", "cluster"]
MODE_ENV = "RAYTRADER_MODE"
KAFKA_PREFIX = "RAYTRADER_KAFKA_"


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


def required(variable: str) -> str | None:
    """``variable``'s value; unset (or empty) is ``None`` in local mode and a
    :class:`ConfigError` in cluster mode."""
    value = os.environ.get(variable) or None
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
    required(f"{KAFKA_PREFIX}BOOTSTRAP")  # raises in cluster mode
    return settings.model_copy(update={"bootstrap": _local_stack().kafka_bootstrap})


def _local_stack() -> Any:
    """The local stack's configuration (local mode's defaults)."""
    from raytrader.stack.config import StackConfig

    return StackConfig.from_env()


def state_dir() -> Path:
    """The local stack's state directory (local mode only: cluster processes are given theirs)."""
    if mode() == "cluster":
        raise ConfigError(
            f"no state directory given ({MODE_ENV}=cluster: the local stack's is not used)"
        )
    return Path(_local_stack().state_dir)


def redis_connection(explicit: str | None = None) -> str:
    """Feast's online store: ``explicit`` (a CLI flag), else ``RAYTRADER_REDIS_CONNECTION``,
    else (local mode) the local stack's Redis."""
    value = explicit or required(REDIS_ENV)
    return value or str(_local_stack().redis_connection)


def feast_data() -> Path:
    """Feast's data directory (offline files): ``RAYTRADER_FEAST_DATA``, else (local mode) the
    one the local stack's Feast server reads."""
    value = required(DATA_ENV)
    return Path(value) if value else Path(_local_stack().state_dir) / "feast"


__all__ = [
    "KafkaSettings",
    "Mode",
    "feast_data",
    "kafka",
    "mode",
    "redis_connection",
    "required",
    "state_dir",
]
