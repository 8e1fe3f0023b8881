"""The feature consumer against a real Kafka broker (the test stack).

Each test uses its own topic (timeframe) and consumer group so they never see each other's messages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

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

    def reconcile(self, symbol: str, timeframe: str, last_bar: pd.Timestamp) -> None:
        return None

    def online_bar_times(
        self, symbols: list[str], timeframe: str
    ) -> dict[str, pd.Timestamp | None]:
        return {s: self.rows[s].index[-1] for s in symbols if s in self.rows}

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
    assert not raw.duplicated(["symbol", "timeframe", "event_timestamp"]).any()
    online = online_features(fs, [b.symbol for b in symbols], "1m")
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


# ---- feature rows keyed by symbol and timeframe; backfilled rows; the online store lost ------------


def _feast_consumer(
    stack: Any, tmp: Path, timeframe: str, group: str, **kw: Any
) -> FeatureConsumer:
    from raytrader.streaming.sinks import default_sink

    cfg = ConsumerConfig(
        bootstrap=stack.config.kafka_bootstrap,
        timeframe=timeframe,
        group_id=group,
        state_dir=str(tmp / f"state-{group}"),
        writer="thread",
        **kw,
    )
    return FeatureConsumer(cfg, default_sink(stack.config.redis_connection, str(tmp / "feast")))


def _batch_rows(bars: Bars) -> pd.DataFrame:
    from raytrader.features.feast_repo import feature_rows

    return feature_rows(bars, compute_features(bars))


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    cols = [c for c in want.columns if c != "created"]
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), want[cols].reset_index(drop=True), check_exact=True
    )


def test_two_timeframes_of_one_symbol_keep_separate_correct_rows(stack, tmp_path: Path) -> None:
    """The 1h and 4h bars of one symbol, through the two timeframes' consumers into one Feast
    store: two sets of rows offline and two online rows, each equal to its batch computation."""
    from raytrader.data.resample import resample
    from raytrader.features.feast_repo import apply, online_rows, read_offline, store

    hourly = load_bars("synthetic:n_bars=600,timeframe=1h,seed=41,symbol=TFX")
    four = resample(hourly, "4h")
    producer = BarProducer(stack.config.kafka_bootstrap)
    producer.replay(bar_messages(hourly, "t"))
    producer.replay(bar_messages(four, "t"))
    fs = store("redis", redis=stack.config.redis_connection, data=tmp_path / "feast")
    apply(fs)
    for tf in ("1h", "4h"):
        consumer = _feast_consumer(stack, tmp_path, tf, f"t-tf-{tf}")
        consumer.run(idle_timeout_s=4.0)
        consumer.close()
    for tf, bars in (("1h", hourly), ("4h", four)):
        _same_rows(read_offline("TFX", tmp_path / "feast", timeframe=tf), _batch_rows(bars))
        online = online_rows(fs, ["TFX"], tf)
        assert online["bar_open_time"].iloc[0] == bars.index[-1]
        want = compute_features(bars).iloc[-1]
        assert online.loc["TFX", "rsi_14"] == want["rsi_14"]


def test_streaming_a_backfilled_symbol_keeps_every_backfilled_row(stack, tmp_path: Path) -> None:
    """Backfill the whole series, then stream its first 1,500 bars (a consumer that has never
    seen the symbol), then restart the consumer (the restore path reconciles its own rows):
    every backfilled row is still there, equal to the batch rows."""
    from raytrader.features.backfill import backfill
    from raytrader.features.feast_repo import read_offline, store

    goog = load_bars("goog")
    bkf = Bars.from_frame(goog.frame, symbol="BKF", timeframe="1d", calendar="equity")
    fs = store("redis", redis=stack.config.redis_connection, data=tmp_path / "feast")
    backfill(fs, bkf)
    want = _batch_rows(bkf)
    _same_rows(read_offline("BKF", tmp_path / "feast", timeframe="1d"), want)
    producer = BarProducer(stack.config.kafka_bootstrap)
    producer.replay(bar_messages(bkf.head(1500), "t"))
    for _ in range(2):  # a first run without history, then a restart that restores it
        consumer = _feast_consumer(stack, tmp_path, "1d", "t-backfill")
        consumer.run(idle_timeout_s=4.0)
        consumer.close()
        _same_rows(read_offline("BKF", tmp_path / "feast", timeframe="1d"), want)
    producer.replay(
        bar_messages(
            bkf.frame.iloc[1500:1510].pipe(
                lambda f: Bars.from_frame(f, symbol="BKF", timeframe="1d", calendar="equity")
            ),
            "t",
        )
    )
    consumer = _feast_consumer(stack, tmp_path, "1d", "t-backfill")  # restored: reconciles
    consumer.run(idle_timeout_s=4.0)
    consumer.close()
    _same_rows(read_offline("BKF", tmp_path / "feast", timeframe="1d"), want)


def test_online_rows_come_back_after_redis_restarts_or_loses_them(stack, tmp_path: Path) -> None:
    """Redis keeps its append-only file across a restart; and if it lost everything anyway, the
    running consumer writes each symbol's latest row back from its bar history, without new bars."""
    import threading
    import time

    import redis as redis_client

    from raytrader.features.feast_repo import apply, online_rows, store

    bars = load_bars("synthetic:n_bars=300,timeframe=15m,seed=43,symbol=RDS")
    fs = store("redis", redis=stack.config.redis_connection, data=tmp_path / "feast")
    apply(fs)
    BarProducer(stack.config.kafka_bootstrap).replay(bar_messages(bars, "t"))
    consumer = _feast_consumer(stack, tmp_path, "15m", "t-redis", online_check_s=1.0)
    worker = threading.Thread(target=consumer.run, daemon=True)
    worker.start()

    def online_bar() -> Any:
        for _ in range(3):
            try:
                return online_rows(fs, ["RDS"], "15m")["bar_open_time"].iloc[0]
            except Exception:  # Redis restarting: try again
                time.sleep(1.0)
        raise AssertionError("Redis did not answer")

    def wait_for(pred: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.5)
        return False

    last = bars.index[-1]
    try:
        assert wait_for(lambda: online_bar() == last, 60)
        # a restart: the append-only file brings the rows back
        time.sleep(1.5)  # appendfsync everysec
        stack.down(["redis"])
        stack.up(["redis"])
        assert online_bar() == last
        # everything lost: the consumer restores the row from its history, no bar arrives
        cfg = stack.config
        redis_client.Redis(host=cfg.host, port=cfg.redis_port).flushall()
        assert pd.isna(online_bar())
        assert wait_for(lambda: online_bar() == last, 20)
        assert consumer.metrics.online_restored._value.get() >= 1
    finally:
        consumer.stop()
        worker.join(timeout=30)
        consumer.close()


def test_no_offset_is_committed_past_an_undelivered_dead_letter(stack, tmp_path: Path) -> None:
    """With the dead-letter topic unavailable the consumer stops with an error before committing;
    a consumer of the same group then meets the bad message again and dead-letters it."""
    from confluent_kafka import Consumer

    from raytrader.streaming.consumer import DeadLetterError

    bootstrap = stack.config.kafka_bootstrap
    producer = BarProducer(bootstrap)
    producer.send_raw("bars.5m", b"UNDLV", b"{not json")
    producer.flush()
    cfg = dict(
        bootstrap=bootstrap,
        timeframe="5m",
        group_id="t-dlq-down",
        state_dir=str(tmp_path),
        writer="thread",
        dlq_timeout_ms=3000,
    )
    broken = FeatureConsumer(ConsumerConfig(**cfg, dlq_topic="bars.dlq.missing"), MemorySink())
    with pytest.raises(DeadLetterError, match=r"bars\.dlq\.missing were not delivered"):
        broken.run(idle_timeout_s=6.0)
    broken.close()  # lets go of the broker without committing anything
    healthy = FeatureConsumer(ConsumerConfig(**cfg), MemorySink())
    healthy.run(idle_timeout_s=6.0)
    healthy.close()
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "t-dlq-down-reader",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([DLQ_TOPIC])
    found = False
    for _ in range(40):
        msg = reader.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == b"UNDLV":
            found = True
            break
    reader.close()
    assert found, "the bad message was dead-lettered by the second consumer"
    assert healthy.totals.dead_letters >= 1


class FlakySink(MemorySink):
    """A sink whose online store fails once, on its ``fail_on``-th write (an outage mid-stream),
    and whose online read always fails (the store down when the consumer checks its rows)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.writes = 0
        self.fail_on = fail_on

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        self.writes += 1
        if self.writes == self.fail_on:
            raise ConnectionError("online store unreachable")
        super().write_online(items)

    def online_bar_times(
        self, symbols: list[str], timeframe: str
    ) -> dict[str, pd.Timestamp | None]:
        raise ConnectionError("online store unreachable")


def test_a_batch_that_failed_is_never_committed_and_a_failed_check_does_not_stop_the_consumer(
    stack, tmp_path: Path
) -> None:
    """The consumer commits the offsets of the messages it finished, not its fetch position: a
    batch that failed half-way (its online write) is replayed by the next consumer, and every bar
    reaches the store. A failing check of the online rows is retried later, not fatal."""
    bars = load_bars("synthetic:n_bars=40,timeframe=5m,seed=47,symbol=FLKY")
    BarProducer(stack.config.kafka_bootstrap).replay(bar_messages(bars, "t"))
    cfg = dict(
        bootstrap=stack.config.kafka_bootstrap,
        timeframe="5m",
        group_id="t-flaky",
        state_dir=str(tmp_path),
        writer="thread",
        batch_size=5,
        online_check_s=1e-6,  # every poll: a check runs between any two batches
    )
    sink = FlakySink(fail_on=3)
    first = FeatureConsumer(ConsumerConfig(**cfg), sink)
    with pytest.raises(ConnectionError):
        first.run(idle_timeout_s=6.0)
    failures = first.metrics.registry.get_sample_value(
        "raytrader_stream_online_check_failures_total"
    )
    assert (failures or 0.0) >= 1  # the checks failed, and it went on
    first.close()  # commits the two finished batches only
    second_sink = MemorySink()
    second = FeatureConsumer(ConsumerConfig(**cfg), second_sink)
    second.run(idle_timeout_s=6.0)
    second.close()
    stored = pd.concat(
        [r for r in (sink.rows.get("FLKY"), second_sink.rows.get("FLKY")) if r is not None]
    )
    stored = stored[~stored.index.duplicated(keep="last")].sort_index()
    exact(stored, compute_features(bars))  # every bar once: the failed batch came again
