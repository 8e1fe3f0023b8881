"""raytrader.settings: Kafka's servers and security from RAYTRADER_KAFKA_*, and the two modes —
local falls back to the local stack, cluster refuses to."""

from __future__ import annotations

from pathlib import Path

import pytest

from raytrader import settings
from raytrader.errors import ConfigError

ALL = (
    "RAYTRADER_MODE",
    "RAYTRADER_REDIS_CONNECTION",
    "RAYTRADER_FEAST_DATA",
    *(f"RAYTRADER_KAFKA_{f.upper()}" for f in settings.KafkaSettings.model_fields),
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_local_mode_falls_back_to_the_local_stack() -> None:
    from raytrader.stack.config import StackConfig

    stack = StackConfig.from_env()
    assert settings.mode() == "local"
    assert settings.kafka().client_config() == {
        "bootstrap.servers": stack.kafka_bootstrap,
        "security.protocol": "PLAINTEXT",
    }
    assert settings.redis_connection() == stack.redis_connection
    assert settings.feast_data() == Path(stack.state_dir) / "feast"
    assert settings.state_dir() == Path(stack.state_dir)


def test_cluster_mode_names_each_missing_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RAYTRADER_MODE", "cluster")
    with pytest.raises(ConfigError, match="RAYTRADER_KAFKA_BOOTSTRAP is not set"):
        settings.kafka()
    with pytest.raises(ConfigError, match="RAYTRADER_REDIS_CONNECTION is not set"):
        settings.redis_connection()
    with pytest.raises(ConfigError, match="RAYTRADER_FEAST_DATA is not set"):
        settings.feast_data()
    with pytest.raises(ConfigError, match="no state directory given"):
        settings.state_dir()
    # given, they are used; a flag wins over the environment
    clean_env.setenv("RAYTRADER_KAFKA_BOOTSTRAP", "kafka:9092")
    clean_env.setenv("RAYTRADER_REDIS_CONNECTION", "redis:6379,password=x")
    assert settings.kafka().servers == "kafka:9092"
    assert settings.kafka("other:9092").servers == "other:9092"
    assert settings.redis_connection() == "redis:6379,password=x"


def test_a_bad_mode_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RAYTRADER_MODE", "prod")
    with pytest.raises(ConfigError, match="RAYTRADER_MODE: Input should be 'local' or 'cluster'"):
        settings.mode()


def test_sasl_ssl_with_a_password_file_and_a_ca(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    for key, value in {
        "BOOTSTRAP": "kafka:9093",
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-256",
        "SASL_USERNAME": "raytrader",
        "SASL_PASSWORD_FILE": str(tmp_path / "password"),
        "SSL_CA_LOCATION": str(tmp_path / "ca.pem"),
    }.items():
        clean_env.setenv(f"RAYTRADER_KAFKA_{key}", value)
    kafka = settings.kafka()
    assert kafka.client_config() == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "raytrader",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
    }
    assert "s3cret" not in repr(kafka)  # a password never shows in a log line or a traceback


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs RAYTRADER_KAFKA_SASL_USERNAME"),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": "u"},
            "needs one of RAYTRADER_KAFKA_SASL_PASSWORD and RAYTRADER_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {"SASL_USERNAME": "u", "SASL_PASSWORD": "secret-value"},
            "RAYTRADER_KAFKA_SASL_USERNAME, RAYTRADER_KAFKA_SASL_PASSWORD set, but "
            "RAYTRADER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        ({"SSL_CA_LOCATION": "/ca.pem"}, "RAYTRADER_KAFKA_SSL_CA_LOCATION set, but"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": "/nowhere.pem"}, "no file /nowhere.pem"),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_KEY_LOCATION": "/k.pem"},
            "mutual TLS needs both",
        ),
        ({"SECURITY_PROTOCOL": "TLS"}, "RAYTRADER_KAFKA_SECURITY_PROTOCOL: Input should be"),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"},
            "RAYTRADER_KAFKA_SASL_MECHANISM: Input should be",
        ),
        ({"SASL_PASWORD": "secret-value"}, "unknown Kafka setting RAYTRADER_KAFKA_SASL_PASWORD"),
    ],
)
def test_bad_kafka_settings_are_named(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    clean_env.setenv("RAYTRADER_KAFKA_BOOTSTRAP", "kafka:9092")
    for key, value in env.items():
        clean_env.setenv(f"RAYTRADER_KAFKA_{key}", value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as raised:
        settings.kafka()
    assert "secret-value" not in str(raised.value)  # names the variable, never its value


def test_kubernetes_service_links_are_not_mistaken_for_settings(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A release named ``raytrader`` has a Service ``raytrader-kafka``; Kubernetes puts its
    address in every pod of the namespace as RAYTRADER_KAFKA_SERVICE_HOST, _PORT, ..."""
    links = {
        "SERVICE_HOST": "10.96.0.12",
        "SERVICE_PORT": "9092",
        "SERVICE_PORT_KAFKA": "9092",
        "PORT": "tcp://10.96.0.12:9092",
        "PORT_9092_TCP": "tcp://10.96.0.12:9092",
        "PORT_9092_TCP_PROTO": "tcp",
        "PORT_9092_TCP_PORT": "9092",
        "PORT_9092_TCP_ADDR": "10.96.0.12",
    }
    for key, value in links.items():
        clean_env.setenv(f"RAYTRADER_KAFKA_{key}", value)
    clean_env.setenv("RAYTRADER_MODE", "cluster")
    clean_env.setenv("RAYTRADER_KAFKA_BOOTSTRAP", "raytrader-kafka:9092")
    assert settings.kafka().client_config() == {
        "bootstrap.servers": "raytrader-kafka:9092",
        "security.protocol": "PLAINTEXT",
    }
