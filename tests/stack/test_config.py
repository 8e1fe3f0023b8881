"""StackConfig: defaults, derived addresses, environment overrides, loopback enforcement; and the
`raytrader stack` commands that need no running service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raytrader.errors import ConfigError, RaytraderError
from raytrader.stack import Stack, StackConfig
from raytrader.stack.config import DEFAULT_TOPICS, default_state_dir
from tests.support.cli import run_cli

ALL_INTERFACES = "0.0.0." + "0"  # the address the stack must refuse
TMP = Path("/tmp")  # noqa: S108 - only compared against, never written


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAYTRADER_STACK_* variables from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("RAYTRADER_STACK_"):
            monkeypatch.delenv(key)


def test_defaults_and_derived_addresses(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path)
    assert cfg.host == "127.0.0.1"
    assert cfg.kafka_bootstrap == "127.0.0.1:9092"
    assert cfg.redis_url == "redis://127.0.0.1:6379/0"
    assert cfg.redis_connection == "127.0.0.1:6379"
    assert cfg.mlflow_uri == "http://127.0.0.1:5000"
    assert cfg.ray_address == "127.0.0.1:6380"
    assert cfg.ray_client_address == "ray://127.0.0.1:10001"
    assert cfg.ray_dashboard_url == "http://127.0.0.1:8265"
    assert cfg.feast_url == "http://127.0.0.1:6566"
    assert cfg.metrics_ports == range(9400, 9500)
    assert cfg.kafka_topics == DEFAULT_TOPICS
    assert cfg.kafka_topics["bars.dlq"] == 1
    assert {cfg.kafka_topics[f"bars.{tf}"] for tf in ("1m", "5m", "15m", "1h", "4h", "1d")} == {4}
    assert cfg.ports() == {
        "postgres_port": 5432,
        "redis_port": 6379,
        "kafka_port": 9092,
        "kafka_controller_port": 9093,
        "mlflow_port": 5000,
        "ray_gcs_port": 6380,
        "ray_dashboard_port": 8265,
        "ray_client_port": 10001,
        "ray_dashboard_agent_port": 8266,
        "feast_port": 6566,
    }
    assert StackConfig().state_dir == default_state_dir()
    assert default_state_dir() == Path.home() / ".local/share/raytrader/stack"


def test_postgres_dsn_uses_the_generated_password(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, postgres_port=25432)
    with pytest.raises(RaytraderError, match="stack up"):
        _ = cfg.postgres_dsn
    cfg.secrets_dir.mkdir()
    cfg.postgres_password_file.write_text("s3cret-xyz\n")
    assert cfg.postgres_dsn == "postgresql://mlflow:s3cret-xyz@127.0.0.1:25432/mlflow"
    assert cfg.postgres_sqlalchemy_url.startswith("postgresql+psycopg2://mlflow:s3cret-xyz@")


def test_client_env_carries_ray_token_auth(tmp_path: Path) -> None:
    env = StackConfig(state_dir=tmp_path, ray_gcs_port=26380).client_env()
    assert env["RAY_ADDRESS"] == "127.0.0.1:26380"
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "secrets" / "ray-auth-token")
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["RAYTRADER_REDIS_CONNECTION"] == "127.0.0.1:6379"
    assert env["RAYTRADER_FEAST_DATA"] == str(tmp_path / "feast")


@pytest.mark.usefixtures("clean_env")
def test_env_overrides(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(
        {
            "RAYTRADER_STACK_DIR": str(tmp_path / "st"),
            "RAYTRADER_STACK_KAFKA_PORT": "29092",
            "RAYTRADER_STACK_HOST": "127.0.0.2",
            "RAYTRADER_STACK_KAFKA_TOPICS": "bars.1m=8, bars.dlq=2",
            "RAYTRADER_STACK_RAY_NUM_CPUS": "3",
            "RAYTRADER_STACK_POSTGRES_BIN_DIR": "",
            "PATH": "/usr/bin",
        }
    )
    assert cfg.state_dir == tmp_path / "st"
    assert cfg.kafka_bootstrap == "127.0.0.2:29092"
    assert cfg.kafka_topics == {"bars.1m": 8, "bars.dlq": 2}
    assert cfg.ray_num_cpus == 3
    assert cfg.postgres_bin_dir is None
    as_json = StackConfig.from_env({"RAYTRADER_STACK_KAFKA_TOPICS": '{"a.b": 3}'})
    assert as_json.kafka_topics == {"a.b": 3}


def test_env_round_trip(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, kafka_port=29092, kafka_topics={"x": 2}, ray_num_cpus=2)
    assert StackConfig.from_env(cfg.to_env()) == cfg


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAYTRADER_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("RAYTRADER_STACK_MLFLOW_PORT", "25000")
    cfg = StackConfig.from_env()
    assert cfg.state_dir == tmp_path
    assert cfg.mlflow_uri == "http://127.0.0.1:25000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RAYTRADER_STACK_KAFKA_PROT": "1"},
            "unknown environment variable RAYTRADER_STACK_KAFKA_PROT",
        ),
        (
            {"RAYTRADER_STACK_KAFKA_PORT": "nine"},
            "RAYTRADER_STACK_KAFKA_PORT: Input should be a valid integer",
        ),
        ({"RAYTRADER_STACK_KAFKA_TOPICS": "bars.1m"}, "expected name=partitions"),
        ({"RAYTRADER_STACK_KAFKA_TOPICS": "bars.1m=0"}, "at least 1 partition"),
        ({"RAYTRADER_STACK_KAFKA_TOPICS": "bad topic=1"}, "invalid Kafka topic name"),
        (
            {"RAYTRADER_STACK_HOST": ALL_INTERFACES},
            "RAYTRADER_STACK_HOST: 0.0.0.0 is not a loopback address",
        ),
    ],
)
def test_bad_env_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StackConfig.from_env(env)


@pytest.mark.parametrize(
    "host", [ALL_INTERFACES, "10.1.2.3", "192.168.0.10", "::1", "localhost", ""]
)
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="host"):
        StackConfig.parse({"host": host})


def test_any_127_address_is_loopback() -> None:
    assert StackConfig(host="127.0.0.5").kafka_bootstrap == "127.0.0.5:9092"


def test_port_clashes_are_refused() -> None:
    with pytest.raises(ConfigError, match="both use port 6379"):
        StackConfig.parse({"ray_gcs_port": 6379})
    with pytest.raises(ConfigError, match=r"metrics port range 9000-9500 contains kafka_port"):
        StackConfig.parse({"metrics_port_first": 9000, "metrics_port_last": 9500})
    with pytest.raises(ConfigError, match="Ray worker port range"):
        StackConfig.parse({"ray_min_worker_port": 5000, "ray_max_worker_port": 5100})
    with pytest.raises(ConfigError, match=r"1024\.\.65535"):
        StackConfig.parse({"redis_port": 80})


def test_kafka_version_must_be_a_kraft_3x() -> None:
    assert StackConfig(kafka_version="3.8.1").kafka_home.name == "kafka-3.8.1"
    with pytest.raises(ConfigError, match=r"tested with 3\.9\.1"):
        StackConfig.parse({"kafka_version": "4.0.0"})
    with pytest.raises(ConfigError, match=r"3\.3 or newer"):
        StackConfig.parse({"kafka_version": "3.2.0"})


def test_ray_temp_dir_stays_short_for_unix_sockets(tmp_path: Path) -> None:
    short = StackConfig(state_dir=TMP / "rt")
    assert short.ray_temp == TMP / "rt" / "ray"
    long = StackConfig(state_dir=tmp_path / ("x" * 60))
    assert long.ray_temp.parent == TMP
    assert long.ray_temp.name.startswith("raytrader-ray-")
    assert StackConfig(state_dir=tmp_path / ("x" * 60)).ray_temp == long.ray_temp
    # Ray's longest socket path (a dashboard module's, 7-digit pid) fits under either
    for temp in (short.ray_temp, long.ray_temp):
        session = "session_2026-12-07_07-37-45_144829_4194304"
        assert len(str(temp / session / "sockets" / "dash_TaskEventsHead")) <= 107, temp
    # a fresh HOME under /tmp: the stack's state dir is short, but not short enough for Ray
    fresh_home = StackConfig(state_dir=TMP / "home7" / ".local" / "share" / "raytrader" / "stack")
    assert fresh_home.ray_temp.parent == TMP


def test_the_longest_dashboard_module_socket_is_the_one_budgeted() -> None:
    """Ray names a dashboard module's socket dash_<class name>: the installed Ray's longest
    module name must fit the tail _RAY_TEMP_MAX_LEN is computed from."""
    import re

    import ray.dashboard

    from raytrader.stack.config import _RAY_SOCKET_TAIL

    pattern = re.compile(r"^class (\w+)\((?:[\w.]*\.)?SubprocessModule\)", re.M)
    root = Path(ray.dashboard.__file__).parent
    names = {m for f in root.rglob("*.py") for m in pattern.findall(f.read_text())}
    assert "MetricsHead" in names  # the one that failed on a fresh HOME
    longest = max(names, key=len)
    assert len(f"dash_{longest}") <= len(_RAY_SOCKET_TAIL.rsplit("/", 1)[1]), longest


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig(state_dir=Path("st"), feature_repo=Path("repo"))
    assert cfg.state_dir == tmp_path / "st"
    assert cfg.feature_repo == tmp_path / "repo"


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.usefixtures("clean_env")
def test_cli_env_prints_exports(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAYTRADER_STACK_DIR", str(tmp_path))
    code, out, _ = run_cli(capsys, "stack", "env")
    assert code == 0
    lines = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert lines["RAY_ADDRESS"] == "127.0.0.1:6380"
    assert lines["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "secrets" / "ray-auth-token")


@pytest.mark.usefixtures("clean_env")
def test_cli_status_of_a_stack_never_started(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAYTRADER_STACK_DIR", str(tmp_path / "st"))
    monkeypatch.setenv("RAYTRADER_STACK_FEATURE_REPO", str(tmp_path / "no-repo"))
    code, out, _ = run_cli(capsys, "stack", "status", "--json")
    assert code == 1  # not every service is healthy
    states = {s["name"]: s for s in json.loads(out)}
    assert list(states) == ["postgres", "redis", "kafka", "mlflow", "ray", "feast"]
    assert {s["state"] for n, s in states.items() if n != "feast"} == {"stopped"}
    assert states["feast"]["state"] == "skipped"
    assert "feature repo not found" in states["feast"]["detail"]


@pytest.mark.usefixtures("clean_env")
def test_cli_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAYTRADER_STACK_DIR", str(tmp_path))
    code, _, err = run_cli(capsys, "stack", "logs", "zookeeper")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: unknown stack service 'zookeeper'; known: feast, kafka, mlflow, postgres, ray, redis"
    ]
    monkeypatch.setenv("RAYTRADER_STACK_HOST", ALL_INTERFACES)
    code, _, err = run_cli(capsys, "stack", "up")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "0.0.0.0 is not a loopback address" in err


def test_logs_of_a_service_that_never_ran_are_empty(tmp_path: Path) -> None:
    assert Stack(StackConfig(state_dir=tmp_path)).logs("kafka", 10) == []
