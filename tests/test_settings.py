"""raytrader.settings: Kafka's servers and security from RAYTRADER_KAFKA_*, and the two modes —
local falls back to what the local stack wrote (client.env) and then development defaults,
cluster refuses to."""

from __future__ import annotations

from pathlib import Path

import pytest

from raytrader import settings
from raytrader.errors import ConfigError
from raytrader.stack.config import StackConfig

ALL = (
    "RAYTRADER_MODE",
    "RAYTRADER_REDIS_CONNECTION",
    "RAYTRADER_FEAST_DATA",
    "RAYTRADER_FEAST_REPO",
    "MLFLOW_TRACKING_URI",
    "RAY_ADDRESS",
    "RAYTRADER_SERVE_URL",
    "RAYTRADER_LOCAL_DEV",
    *(f"{t}{f}" for t in ("RAYTRADER_API_TOKEN", "RAYTRADER_ADMIN_TOKEN") for f in ("", "_FILE")),
    *(f"RAYTRADER_KAFKA_{f.upper()}" for f in settings.KafkaSettings.model_fields),
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAYTRADER_STACK_DIR", str(tmp_path / "stack"))  # never the user's stack
    return monkeypatch


def test_local_mode_without_a_stack_has_development_defaults(tmp_path: Path) -> None:
    assert settings.mode() == "local"
    with pytest.raises(ConfigError, match=r"RAYTRADER_KAFKA_BOOTSTRAP is not set and the local "
                       r"stack has not run .*client.env is missing\): `raytrader stack up`"):  # fmt: skip
        settings.kafka()
    assert settings.redis_connection() == "localhost:6379"
    assert settings.feast_data() == Path.home() / ".cache" / "raytrader" / "feast"
    assert settings.feast_repo() is None  # the source tree's
    assert settings.state_dir() == tmp_path / "stack"
    assert settings.tracking_uri(root=tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="no MLflow tracking URI"):
        settings.tracking_uri()
    assert settings.ray_address() is None  # start one here
    assert settings.serve_url() == "http://127.0.0.1:8000"
    assert settings.client_token() is None


def test_local_mode_reads_what_the_local_stack_wrote(tmp_path: Path) -> None:
    stack = StackConfig(state_dir=tmp_path / "stack", kafka_port=29092, redis_port=26379)
    written = settings.write_local_stack_env(stack.state_dir, stack.client_env())
    assert written == tmp_path / "stack" / "client.env"
    assert settings.local_stack_env() == stack.client_env()
    assert settings.kafka().client_config() == {
        "bootstrap.servers": "127.0.0.1:29092",
        "security.protocol": "PLAINTEXT",
    }
    assert settings.redis_connection() == "127.0.0.1:26379"
    assert settings.feast_data() == stack.feast_data
    assert settings.feast_repo() == stack.feature_repo
    assert settings.serve_url() == stack.serve_url
    # the stack's token file before its service ever ran: no token yet, not an error
    assert settings.client_token() is None
    stack.secrets_dir.mkdir(parents=True)
    stack.serve_token_file.write_text("t" * 32 + "\n")
    assert settings.client_token() == "t" * 32
    assert settings.client_token(admin=True) is None
    # MLflow and Ray follow the stack only when exported: runs never move by surprise
    assert settings.tracking_uri(root=tmp_path).startswith("sqlite:")
    assert settings.ray_address() is None


def test_the_process_environment_wins_over_the_stack(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = StackConfig(state_dir=tmp_path / "stack")
    settings.write_local_stack_env(stack.state_dir, stack.client_env())
    clean_env.setenv("RAYTRADER_KAFKA_BOOTSTRAP", "kafka:9092")
    clean_env.setenv("RAYTRADER_REDIS_CONNECTION", "redis:6379")
    clean_env.setenv("RAYTRADER_API_TOKEN", "e" * 20)
    assert settings.kafka().servers == "kafka:9092"
    assert settings.kafka("flag:9092").servers == "flag:9092"
    assert settings.redis_connection() == "redis:6379"
    assert settings.redis_connection("flag:6379") == "flag:6379"
    assert settings.client_token() == "e" * 20


def test_a_malformed_stack_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "client.env").write_text("RAYTRADER_KAFKA_BOOTSTRAP=k:1\nnonsense\n")
    with pytest.raises(ConfigError, match=r"client.env, line 2: expected NAME=value"):
        settings.kafka()
    with pytest.raises(ConfigError, match="on one line"):
        settings.write_local_stack_env(tmp_path, {"A": "x\ny"})


def test_cluster_mode_names_each_missing_setting(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a local stack's file on the machine is never read in cluster mode
    stack = StackConfig(state_dir=tmp_path / "stack")
    settings.write_local_stack_env(stack.state_dir, stack.client_env())
    clean_env.setenv("RAYTRADER_MODE", "cluster")
    with pytest.raises(ConfigError, match="RAYTRADER_KAFKA_BOOTSTRAP is not set"):
        settings.kafka()
    with pytest.raises(ConfigError, match="RAYTRADER_REDIS_CONNECTION is not set"):
        settings.redis_connection()
    with pytest.raises(ConfigError, match="RAYTRADER_FEAST_DATA is not set"):
        settings.feast_data()
    with pytest.raises(ConfigError, match="no state directory given"):
        settings.state_dir()
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI is not set"):
        settings.tracking_uri(root=tmp_path)
    with pytest.raises(ConfigError, match="RAY_ADDRESS is not set"):
        settings.ray_address()
    with pytest.raises(ConfigError, match="RAYTRADER_SERVE_URL is not set"):
        settings.serve_url()
    assert settings.client_token() is None  # the stack's token file is not read either
    assert settings.feast_repo() is None  # the image's repo: not a fallback to the stack
    clean_env.setenv("RAYTRADER_LOCAL_DEV", "1")
    with pytest.raises(ConfigError, match=r"local-dev mode .* is refused"):
        settings.local_dev()
    # given, they are used; a flag wins over the environment
    clean_env.setenv("RAYTRADER_KAFKA_BOOTSTRAP", "kafka:9092")
    clean_env.setenv("RAYTRADER_REDIS_CONNECTION", "redis:6379,password=x")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    clean_env.setenv("RAY_ADDRESS", "raytrader-head-svc:6379")
    assert settings.kafka().servers == "kafka:9092"
    assert settings.kafka("other:9092").servers == "other:9092"
    assert settings.redis_connection() == "redis:6379,password=x"
    assert settings.tracking_uri() == "http://mlflow:5000"
    assert settings.ray_address() == "raytrader-head-svc:6379"


def test_the_service_refuses_local_dev_in_cluster_mode(clean_env: pytest.MonkeyPatch) -> None:
    from raytrader.serving.config import ServiceConfig, Tokens

    clean_env.setenv("RAYTRADER_MODE", "cluster")
    with pytest.raises(ConfigError, match=r"local-dev mode .* is refused"):
        Tokens.load(ServiceConfig(local_dev=True), env={})
    assert Tokens.load(ServiceConfig(), env={"RAYTRADER_API_TOKEN": "a" * 16}).api == "a" * 16


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
