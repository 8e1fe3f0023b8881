"""The real local stack on the test ports (see tests/support/stack_fixture.py): every service answers,
``up`` twice is a no-op, ``down`` leaves nothing behind, missing prerequisites are clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from raytrader.stack import PrerequisiteError, Stack, StackConfig
from raytrader.stack.kafka import ensure_kafka_jars, kafka_libs
from raytrader.stack.process import is_running, port_in_use, session_members
from tests.support.stack_fixture import stack, stack_test_config  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent


def _env(cfg: StackConfig, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYTRADER_STACK_", "RAY_"))}
    env.update(cfg.to_env())
    env.update(extra)
    return env


def _all_pids(st: Stack) -> dict[str, list[int]]:
    return {
        name: st.service(name).members()
        for name in ("postgres", "redis", "kafka", "mlflow", "ray", "feast")
    }


# ------------------------------------------------------------------------------ prerequisites
def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    """A PATH without java (no mocking): one stderr line naming the fix, exit 2, nothing started."""
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    cfg = stack_test_config(state_dir=tmp_path / "state")
    env = _env(cfg, PATH=str(empty_bin))
    env.pop("JAVA_HOME", None)
    proc = subprocess.run(
        [str(BIN / "raytrader"), "stack", "up", "--only", "kafka"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: java not found: apt-get install openjdk-17-jre-headless")
    assert not (cfg.run_dir / "kafka.pid").exists()


def test_missing_postgres_binaries_is_a_clear_error(tmp_path: Path) -> None:
    cfg = stack_test_config(state_dir=tmp_path / "state", postgres_bin_dir=tmp_path / "nowhere")
    with pytest.raises(
        PrerequisiteError, match=r"initdb, postgres\) not found .*apt-get install postgresql"
    ):
        Stack(cfg).up(["mlflow"])  # mlflow pulls in postgres
    assert not (cfg.run_dir / "postgres.pid").exists()


# ------------------------------------------------------------------------------ settings it produces
def test_up_writes_its_clients_settings_and_a_fresh_process_finds_the_stack(
    stack: Stack,  # noqa: F811
) -> None:
    """The stack only produces settings: `up` writes what `stack env` prints to client.env, and a
    process given nothing but the state dir reaches the stack's Kafka and Redis through
    raytrader.settings (which never imports raytrader.stack)."""
    cfg = stack.config
    text = (cfg.state_dir / "client.env").read_text()
    assert (
        dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
        == cfg.client_env()
    )
    script = (
        "import json, sys\n"
        "from confluent_kafka.admin import AdminClient\n"
        "import redis\n"
        "from raytrader import settings\n"
        "kafka = settings.kafka()\n"
        "topics = AdminClient(kafka.client_config()).list_topics(timeout=10).topics\n"
        "host, port = settings.redis_connection().split(':')\n"
        "pong = redis.Redis(host=host, port=int(port)).ping()\n"
        "from raytrader.db.store import ExperimentStore\n"
        "store = ExperimentStore.open()\n"
        "print(json.dumps({'kafka': kafka.servers, 'topics': sorted(topics), 'redis': pong,\n"
        "                  'db': store.engine.dialect.name,\n"
        "                  'stack_imported': 'raytrader.stack' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYTRADER_", "RAY_"))}
    env["RAYTRADER_STACK_DIR"] = str(cfg.state_dir)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["kafka"] == cfg.kafka_bootstrap
    assert set(cfg.kafka_topics) <= set(seen["topics"])
    assert seen["redis"] is True
    assert seen["db"] == "postgresql"  # the experiment store: the stack's database, migrated
    assert seen["stack_imported"] is False


# ------------------------------------------------------------------------------ every service answers
def test_every_service_is_healthy(stack: Stack) -> None:  # noqa: F811
    states = {s.name: s for s in stack.status()}
    for name in ("postgres", "redis", "kafka", "mlflow", "ray"):
        assert states[name].state == "healthy", states[name]
        pid = states[name].pid
        assert pid is not None
        assert is_running(pid)
    assert states["feast"].state in ("healthy", "skipped"), states["feast"]


def test_kafka_topics_and_a_round_trip_with_confluent_kafka_and_kcat(stack: Stack) -> None:  # noqa: F811
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    cfg = stack.config
    md = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap}).list_topics(timeout=10)
    for topic, parts in cfg.kafka_topics.items():
        assert len(md.topics[topic].partitions) == parts, topic
        assert all(len(p.replicas) == 1 for p in md.topics[topic].partitions.values())

    ours, theirs = f"confluent-{uuid.uuid4()}", f"kcat-{uuid.uuid4()}"
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap})
    producer.produce("bars.dlq", value=ours.encode(), partition=0)
    assert producer.flush(30) == 0
    subprocess.run(
        ["kcat", "-b", cfg.kafka_bootstrap, "-t", "bars.dlq", "-p", "0", "-P"],
        input=theirs + "\n",
        text=True,
        check=True,
        timeout=60,
    )
    # kcat reads both
    out = subprocess.run(
        [
            "kcat",
            "-b",
            cfg.kafka_bootstrap,
            "-C",
            "-t",
            "bars.dlq",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert ours in out
    assert theirs in out
    # confluent-kafka reads both
    consumer = Consumer(
        {
            "bootstrap.servers": cfg.kafka_bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition("bars.dlq", 0, OFFSET_BEGINNING)])
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while not {ours, theirs} <= seen and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            seen.add((msg.value() or b"").decode())
    consumer.close()
    assert {ours, theirs} <= seen


def test_postgres_answers_on_the_mlflow_database(stack: Stack) -> None:  # noqa: F811
    import psycopg2

    conn = psycopg2.connect(stack.config.postgres_dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1, current_database(), current_user")
            assert cur.fetchone() == (1, "mlflow", "mlflow")
    finally:
        conn.close()
    pid = stack.service("postgres").main_pid()
    assert pid is not None
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the postgres system user
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid != 0
    with pytest.raises(psycopg2.OperationalError):  # password auth over TCP
        psycopg2.connect(
            host=stack.config.host,
            port=stack.config.postgres_port,
            user="mlflow",
            password="wrong",  # noqa: S106 - deliberately wrong
            dbname="mlflow",
            connect_timeout=5,
        )


def test_redis_ping(stack: Stack) -> None:  # noqa: F811
    import redis

    client = redis.Redis.from_url(stack.config.redis_url, socket_timeout=5)
    assert client.ping() is True
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("appendonly") == {"appendonly": "yes"}  # online rows survive
    assert client.config_get("bind")["bind"] == stack.config.host


def test_mlflow_tracking_and_model_registry(stack: Stack) -> None:  # noqa: F811
    from mlflow import MlflowClient

    uri = stack.config.mlflow_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "sharpe", 1.5)
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    name = f"stack-test-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    mv = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    got = client.get_model_version(name, mv.version)
    assert got.version == "1"
    assert got.status == "READY"
    assert client.get_run(run.info.run_id).data.metrics == {"sharpe": 1.5}
    # the artifact went through the server into <state>/mlartifacts
    assert list(stack.config.mlartifacts_dir.rglob("MLmodel"))


def test_ray_task_and_job_submit_with_token_auth(stack: Stack) -> None:  # noqa: F811
    cfg = stack.config
    env = {**_env(cfg), **cfg.client_env()}
    script = (
        "import ray\n"
        f"ray.init(address={cfg.ray_address!r}, log_to_driver=False)\n"
        "@ray.remote\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "print('RESULT', sum(ray.get([double.remote(i) for i in range(4)])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESULT 12" in out.stdout
    job = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            cfg.ray_dashboard_url,
            "--",
            "python",
            "-c",
            "print(1)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-2000:]
    assert "succeeded" in job.stdout + job.stderr
    assert "1" in job.stdout.splitlines()
    # without the token the Jobs API refuses
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    denied = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", cfg.ray_dashboard_url],
        env=no_token,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode != 0
    assert "Authentication" in denied.stdout + denied.stderr


def test_feast_feature_server(stack: Stack) -> None:  # noqa: F811
    st = stack.service("feast").status()
    if st.state == "skipped":
        pytest.skip(st.detail)
    assert st.state == "healthy", st
    from raytrader.stack.process import http_get

    status, _ = http_get(stack.config.host, stack.config.feast_port, "/health")
    assert status == 200


def _listening(pids: list[int]) -> list[str]:
    """Local addresses of the LISTEN sockets held by ``pids`` (from /proc/net/tcp{,6})."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                continue
            addr, port = f[1].split(":")
            if len(addr) == 8:
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(addr)))
            else:
                words = [bytes.fromhex(addr[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
                raw = "".join(words)
                ip = (
                    "::ffff:" + ".".join(str(b) for b in bytes.fromhex(raw[24:]))
                    if raw[:24] == "0" * 20 + "ffff"
                    else raw
                )
            out.append(f"{ip}:{int(port, 16)}")
    return out


def test_every_port_is_on_loopback_only(stack: Stack) -> None:  # noqa: F811
    pids = [p for ps in _all_pids(stack).values() for p in ps]
    addrs = _listening(pids)
    assert addrs
    exposed = [a for a in addrs if not (a.startswith("127.") or a.startswith("::ffff:127."))]
    assert exposed == []
    for port in stack.config.ports().values():
        if port != stack.config.feast_port or stack.service("feast").skip_reason() is None:
            assert any(a.endswith(f":{port}") for a in addrs), port


# ------------------------------------------------------------------------------ idempotence
def test_up_twice_is_a_noop(stack: Stack) -> None:  # noqa: F811
    before = _all_pids(stack)
    t0 = time.monotonic()
    again = stack.up()
    elapsed = time.monotonic() - t0
    print(f"\n[stack timing] warm up (everything healthy): {elapsed:.2f} s")
    assert [s.changed for s in again] == [False] * len(again)
    assert all(s.state in ("healthy", "skipped") for s in again)
    assert _all_pids(stack) == before
    assert elapsed < 15


def test_kafka_jars_are_cached_so_no_maven_is_needed(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    libs = kafka_libs(stack.config)
    jars = {p.name for p in libs.glob("*.jar")}
    assert f"kafka_2.13-{stack.config.kafka_version}.jar" in jars
    assert "slf4j-reload4j-1.7.36.jar" in jars
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn (and no network tool at all)
    assert ensure_kafka_jars(stack.config, tmp_path / "mvn.log") == libs
    assert not (tmp_path / "mvn.log").exists()


def test_cli_status_and_logs(stack: Stack) -> None:  # noqa: F811
    env = _env(stack.config)
    out = subprocess.run(
        [str(BIN / "raytrader"), "stack", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    states = {s["name"]: s["state"] for s in json.loads(out.stdout)}
    assert {states[n] for n in ("postgres", "redis", "kafka", "mlflow", "ray")} == {"healthy"}
    logs = subprocess.run(
        [str(BIN / "raytrader"), "stack", "logs", "kafka", "--lines", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert len(logs.stdout.splitlines()) == 3


# ------------------------------------------------------------------------------ down (runs last)
def test_down_leaves_nothing_behind_and_up_restores_the_state(stack: Stack) -> None:  # noqa: F811
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from mlflow import MlflowClient

    cfg = stack.config
    exp_name = f"persist-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=cfg.mlflow_uri)
    client.create_experiment(exp_name)
    marker = f"persist-{uuid.uuid4()}"
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap})
    producer.produce("bars.1d", value=marker.encode(), partition=3)
    assert producer.flush(30) == 0
    del producer  # no reconnect noise while the broker is down

    sessions = {n: stack.service(n).session_id() for n in _all_pids(stack)}
    pids = [p for ps in _all_pids(stack).values() for p in ps]
    t0 = time.monotonic()
    down = stack.down()
    per = ", ".join(f"{s.name} {s.seconds}" for s in down)
    print(f"\n[stack timing] down: {time.monotonic() - t0:.2f} s ({per})")
    assert all(s.state in ("stopped", "skipped") for s in down)
    assert [p for p in pids if is_running(p)] == []
    assert all(session_members(sid) == [] for sid in sessions.values() if sid is not None)
    busy = [p for p in cfg.ports().values() if port_in_use(cfg.host, p)]
    assert busy == []
    assert list(cfg.run_dir.glob("*.pid")) == []
    assert {s.state for s in stack.status()} <= {"stopped", "skipped"}

    # the next up starts from the existing state: same cluster, same database, same topics
    t0 = time.monotonic()
    up = stack.up()
    per = ", ".join(f"{s.name} {s.seconds}" for s in up)
    print(f"[stack timing] up from existing state: {time.monotonic() - t0:.2f} s ({per})")
    assert all(s.state in ("healthy", "skipped") for s in up)
    assert client.get_experiment_by_name(exp_name) is not None
    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": f"t-{uuid.uuid4()}"})
    consumer.assign([TopicPartition("bars.1d", 3, OFFSET_BEGINNING)])
    found = False
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        found = msg is not None and msg.error() is None and msg.value() == marker.encode()
    consumer.close()
    assert found
