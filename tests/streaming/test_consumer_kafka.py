"""The feature consumer against a real Kafka broker (the test stack).

Each test uses its own topic (timeframe) and consumer group so they never see each other's messages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.data import load_bars
from raytrader.data.bars import Bars
from raytrader.features import compute_features
from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
from raytrader.streaming.messages import DLQ_TOPIC
from raytrader.streaming.producer import BarProducer, bar_messages

pytestmark = pytest.mark.integration


class MemorySink:
    """Collects rows per symbol (what a real sink would write), overwriting by key like Feast."""

    def __init__(self) -> None:
        self.rows: dict[str, pd.DataFrame] = {}

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def offline_writer(self) -> MemorySink:
        return self

    def reconcile(self, symbol: str, last_bar: pd.Timestamp | None) -> None:
        return None

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        for bars, rows in items:
            old = self.rows.get(bars.symbol)
            merged = rows if old is None else pd.concat([old, rows])
            self.rows[bars.symbol] = merged[~merged.index.duplicated(keep="last")].sort_index()


def exact(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.index.equals(b.index)
    for c in b.columns:
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True), c


def consume_all(cfg: ConsumerConfig, sink: MemorySink) -> FeatureConsumer:
    consumer = FeatureConsumer(cfg, sink)
    consumer.run(idle_timeout_s=4.0)
    consumer.close()
    return consumer


def kcat_produce(bootstrap: str, topic: str, lines: list[tuple[str, str]]) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "Debian's kcat is required (apt-get install kcat)"
    payload = "\n".join(f"{k}\t{v}" for k, v in lines) + "\n"
    subprocess.run(
        [kcat, "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-X", "enable.idempotence=true"],
        input=payload.encode(),
        check=True,
        timeout=60,
    )


def test_streamed_features_equal_batch_features_for_every_bar(stack, tmp_path: Path) -> None:
    bootstrap = stack.config.kafka_bootstrap
    goog = load_bars("goog")
    spx = load_bars("sp500").head(800)
    producer = BarProducer(bootstrap)
    producer.replay(bar_messages(goog, "bundled:goog"))
    # a second, independent client: Debian's kcat
    kcat_produce(
        bootstrap,
        "bars.1d",
        [(m.symbol, m.model_dump_json()) for m in bar_messages(spx, "bundled:sp500")],
    )
    sink = MemorySink()
    cfg = ConsumerConfig(
        bootstrap=bootstrap,
        timeframe="1d",
        group_id="t-exact",
        state_dir=str(tmp_path),
        writer="thread",  # the in-memory sink lives in this process
    )
    consume_all(cfg, sink)
    exact(sink.rows["GOOG"], compute_features(goog))
    exact(sink.rows["SP500"], compute_features(spx))


def test_invalid_messages_go_to_the_dlq_and_the_consumer_keeps_going(stack, tmp_path: Path) -> None:
    from confluent_kafka import Consumer

    bootstrap = stack.config.kafka_bootstrap
    good = list(bar_messages(load_bars("synthetic:n_bars=3,timeframe=4h,seed=9,symbol=DLQT"), "t"))
    base = json.loads(good[0].model_dump_json())
    producer = BarProducer(bootstrap)
    bad = [
        b"{this is not json",
        json.dumps({**base, "schema_version": 2}).encode(),
        json.dumps({**base, "close": float("nan")}).encode(),
        json.dumps({**base, "high": base["low"] * 0.5}).encode(),
    ]
    producer.send(good[0])
    for raw in bad:
        producer.send_raw("bars.4h", b"DLQT", raw)
    producer.send(good[1])
    producer.send(good[0])  # a duplicate: skipped, not dead-lettered
    producer.send(good[2])
    producer.flush()
    sink = MemorySink()
    cfg = ConsumerConfig(
        bootstrap=bootstrap,
        timeframe="4h",
        group_id="t-dlq",
        state_dir=str(tmp_path),
        writer="thread",
    )
    consumer = consume_all(cfg, sink)
    consumer.close()  # closed already: a second close does nothing
    assert len(sink.rows["DLQT"]) == 3
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "t-dlq-reader",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([DLQ_TOPIC])
    reasons = []
    for _ in range(40):
        msg = reader.poll(0.5)
        if msg is None or msg.error():
            if len(reasons) >= 4:
                break
            continue
        if msg.key() == b"DLQT":
            reasons.append(dict(msg.headers())["dlq.reason"].decode())
    reader.close()
    assert len(reasons) == 4
    assert "malformed JSON" in reasons[0]
    assert "unsupported schema_version 2" in reasons[1]
    assert "close is not finite" in reasons[2]
    assert "high" in reasons[3]


@pytest.mark.slow
def test_consumer_killed_ten_times_still_stores_every_bar_exactly_once(
    stack, tmp_path: Path
) -> None:
    """SIGKILL the consumer process at random points while bars are replayed; after a final clean
    run, the offline Parquet source holds every bar once and the online store the latest row, both
    equal to the batch features."""
    import os
    import random
    import signal
    import sys
    import threading
    import time

    from raytrader.features.feast_repo import apply, online_features, read_offline, store

    cfg = stack.config
    data = tmp_path / "feast"
    fs = store("redis", redis=cfg.redis_connection, data=data)
    apply(fs)
    symbols = [
        load_bars(f"synthetic:n_bars=2500,timeframe=1m,seed={s},symbol=KILL{s}") for s in (1, 2)
    ]
    env = dict(
        os.environ,
        RAYTRADER_FEAST_DATA=str(data),
        RAYTRADER_REDIS_CONNECTION=cfg.redis_connection,
        RAYTRADER_KAFKA_BOOTSTRAP=cfg.kafka_bootstrap,
    )
    cmd = [
        sys.executable,
        "-m",
        "raytrader.streaming.cli",
        "features",
        "--timeframe",
        "1m",
        "--group",
        "t-kill",
        "--instance-id",
        "kill-test",
        "--state-dir",
        str(tmp_path / "state"),
        "--metrics-port",
        "0",
    ]
    from raytrader.streaming.producer import interleave

    producer = BarProducer(cfg.kafka_bootstrap)
    stream = interleave([bar_messages(b, "synthetic") for b in symbols])
    replay = threading.Thread(
        target=producer.replay, args=(stream,), kwargs={"interval_s": 1 / 1500}
    )
    replay.start()
    rng = random.Random(7)
    for _ in range(10):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    replay.join(timeout=120)
    final = subprocess.run(
        [*cmd, "--idle-exit", "5"], env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr[-2000:]

    offline = read_offline(data=data)
    # physically, too: the Parquet files of the source hold each (symbol, event time) once
    import pyarrow.parquet as pq

    raw = pd.concat(
        [
            pq.read_table(f).to_pandas()
            for f in sorted((data / "bar_features_v1").glob("[!._]*.parquet"))
        ]
    )
    assert not raw.duplicated(["symbol", "event_timestamp"]).any()
    online = online_features(fs, [b.symbol for b in symbols])
    for bars in symbols:
        want = compute_features(bars)
        got = offline[offline["symbol"] == bars.symbol].sort_values("event_timestamp")
        assert len(got) == len(bars)  # every bar exactly once
        assert got["event_timestamp"].is_unique
        assert np.array_equal(
            got["bar_open_time"].to_numpy(dtype="datetime64[ns]"),
            bars.index.tz_convert(None).to_numpy(),
        )
        for c in want.columns:
            assert np.array_equal(got[c].to_numpy(), want[c].to_numpy(), equal_nan=True), c
        last = online.loc[bars.symbol]
        for c in want.columns:
            if c != "warm":
                assert last[c] == want[c].iloc[-1], c
