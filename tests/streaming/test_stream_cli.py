"""``raytrader stream topics`` and the consumer's SIGTERM handling, against the test stack's Kafka."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raytrader.cli", "stream", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_topics_are_created_then_grown_and_never_shrunk(stack) -> None:
    from raytrader.kafka_admin import admin_client

    boot = stack.config.kafka_bootstrap
    name = f"t-cli-{uuid.uuid4().hex[:8]}"
    first = cli("topics", "--bootstrap", boot, "--topic", f"{name}=2")
    assert first.returncode == 0, first.stderr
    assert f"{name}: created (2 partitions)" in first.stdout
    again = cli("topics", "--bootstrap", boot, "--topic", f"{name}=2")
    assert f"{name}: exists (2 partitions)" in again.stdout
    grown = cli("topics", "--bootstrap", boot, "--topic", f"{name}=3")
    assert f"{name}: grown to 3 (3 partitions)" in grown.stdout
    lower = cli("topics", "--bootstrap", boot, "--topic", f"{name}=1")
    assert lower.returncode == 0, lower.stderr
    md = admin_client(boot).list_topics(timeout=10)
    assert len(md.topics[name].partitions) == 3
    admin_client(boot).delete_topics([name])


def test_bad_topic_specs_and_an_unreachable_broker_are_named() -> None:
    bad = cli("topics", "--bootstrap", "127.0.0.1:9", "--topic", "bars.1m")
    assert bad.returncode != 0
    assert "--topic 'bars.1m': expected NAME=PARTITIONS" in bad.stderr
    down = cli("topics", "--bootstrap", "127.0.0.1:9", "--topic", "x=1", "--wait", "1")
    assert down.returncode != 0
    assert "kafka at 127.0.0.1:9 not ready" in down.stderr


def test_a_stopped_kafka_is_named_by_every_client_instead_of_retried_forever(
    tmp_path: Path,
) -> None:
    """Replay used to time out its messages one by one and the consumer to poll forever."""
    for args in (
        ("replay", "--data", "goog", "--limit", "5"),
        ("features", "--timeframe", "1d", "--state-dir", str(tmp_path), "--metrics-port", "0"),
    ):
        t0 = time.monotonic()
        down = cli(*args, "--bootstrap", "127.0.0.1:9", "--wait", "2")
        assert down.returncode == 2, (args, down.stderr)
        assert "kafka at 127.0.0.1:9 not ready: " in down.stderr, down.stderr
        assert "Connection refused" in down.stderr, down.stderr
        assert time.monotonic() - t0 < 60, args


def test_sigterm_stops_the_consumer_cleanly(stack, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    from raytrader.features.feast_repo import apply, store

    cfg = stack.config
    # the topic holds other tests' bars and, here, a malformed one for the DLQ: the consumer is
    # busy with real work when the signal comes
    apply(store("redis", redis=cfg.redis_connection, data=tmp_path / "feast"))
    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap})
    producer.produce("bars.1d", key=b"TERM", value=b"not json")
    assert producer.flush(30) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        RAYTRADER_FEAST_DATA=str(tmp_path / "feast"),
        RAYTRADER_REDIS_CONNECTION=cfg.redis_connection,
        RAYTRADER_KAFKA_BOOTSTRAP=cfg.kafka_bootstrap,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raytrader.cli",
            "stream",
            "features",
            "--timeframe",
            "1d",
            "--group",
            f"t-term-{uuid.uuid4().hex[:8]}",
            "--state-dir",
            str(tmp_path / "state"),
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:  # /metrics answers once the consumer is built, its SIGTERM handler with it
        assert proc.poll() is None, proc.communicate()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the consumer did not start"
            time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "consumed" in out
