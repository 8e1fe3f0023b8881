"""Every Kafka client of raytrader against a broker that takes only SASL_SSL (SCRAM-SHA-512 over
TLS, tests/support/secure_kafka.py): the topics command, the replay producer, the feature consumer
and its dead-letter producer, configured by ``RAYTRADER_KAFKA_*`` alone. A wrong password and an
untrusted certificate are refused with an error that says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raytrader import settings
from raytrader.data import load_bars
from raytrader.features import compute_features
from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
from raytrader.streaming.messages import DLQ_TOPIC
from raytrader.streaming.producer import BarProducer
from tests.streaming.test_consumer_kafka import MemorySink, exact
from tests.support.secure_kafka import SecureKafka, secure_kafka  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

BARS = 300


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``raytrader`` CLI in its own process, with ``env`` added to this one's environment."""
    return subprocess.run(
        [sys.executable, "-m", "raytrader.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_topics_replay_features_and_dead_letters_over_sasl_ssl(
    secure_kafka: SecureKafka,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = _cli(secure_kafka.env, "stream", "topics", "--topic", "bars.1d=2", "--topic",
                  f"{DLQ_TOPIC}=1")  # fmt: skip
    assert topics.returncode == 0, topics.stderr
    assert "bars.1d: created (2 partitions)" in topics.stdout
    replay = _cli(secure_kafka.env, "stream", "replay", "--data", "goog", "--limit", str(BARS))
    assert replay.returncode == 0, replay.stderr
    assert f"sent {BARS} bars" in replay.stdout

    for key, value in secure_kafka.env.items():
        monkeypatch.setenv(key, value)
    kafka = settings.kafka()
    producer = BarProducer(kafka.servers, extra=kafka.security_config())
    producer.send_raw("bars.1d", b"GOOG", b"{not json")  # for the dead-letter topic
    producer.flush()

    sink = MemorySink()
    cfg = ConsumerConfig(
        bootstrap=kafka.servers, timeframe="1d", group_id="t-secure", state_dir=str(tmp_path),
        writer="thread",
    )  # fmt: skip
    consumer = FeatureConsumer(cfg, sink, security=kafka.security_config())
    consumer.run(idle_timeout_s=4.0)
    consumer.close()
    exact(sink.rows["GOOG"], compute_features(load_bars("goog").head(BARS)))

    from confluent_kafka import Consumer

    reader = Consumer({**kafka.client_config(), "group.id": "t-secure-dlq",
                       "auto.offset.reset": "earliest"})  # fmt: skip
    reader.subscribe([DLQ_TOPIC])
    dead = []
    for _ in range(40):
        msg = reader.poll(0.5)
        if msg is not None and not msg.error():
            dead.append(msg)
            break
    reader.close()
    assert len(dead) == 1
    assert "malformed JSON" in dict(dead[0].headers())["dlq.reason"].decode()


def test_a_wrong_password_is_refused_and_says_so(
    secure_kafka: SecureKafka,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    env = {**secure_kafka.env, "RAYTRADER_KAFKA_SASL_PASSWORD_FILE": str(wrong)}
    done = _cli(env, "stream", "topics", "--topic", "bars.1d=2")
    assert done.returncode != 0
    assert "Authentication failed" in done.stderr, done.stderr


def test_a_broker_certificate_from_an_unknown_ca_is_refused(
    secure_kafka: SecureKafka,  # noqa: F811 - the fixture
) -> None:
    env = {k: v for k, v in secure_kafka.env.items() if k != "RAYTRADER_KAFKA_SSL_CA_LOCATION"}
    done = _cli(env, "stream", "topics", "--topic", "bars.1d=2")  # the system's CAs only
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr, done.stderr
