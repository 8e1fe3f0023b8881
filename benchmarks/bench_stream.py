"""Section 5: streaming features — consumer throughput, freshness, Feast online reads.

Endpoints come from ``RAYTRADER_KAFKA_BOOTSTRAP`` / ``RAYTRADER_REDIS_CONNECTION`` /
``RAYTRADER_FEAST_URL`` when set, else from the local stack's config (``raytrader stack up``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Section, Verdict, fmt_s, load_average, log, table, verdict

NAME = "stream"
N_SYMBOLS = 20
BARS_PER_SYMBOL = 5_000
THROUGHPUT_TARGET = 5_000.0
FRESH_RATE = 1_000
FRESH_SECONDS = 15
FRESH_TARGET_S = 0.100
READ_TARGET_S = 0.005
READS = 1_000


def _endpoints() -> dict[str, str]:
    env = {
        "kafka": os.environ.get("RAYTRADER_KAFKA_BOOTSTRAP"),
        "redis": os.environ.get("RAYTRADER_REDIS_CONNECTION"),
        "feast_url": os.environ.get("RAYTRADER_FEAST_URL"),
    }
    if not all(env.values()):
        from raytrader.stack.config import StackConfig

        cfg = StackConfig.from_env()
        env = {
            "kafka": env["kafka"] or cfg.kafka_bootstrap,
            "redis": env["redis"] or cfg.redis_connection,
            "feast_url": env["feast_url"] or cfg.feast_url,
        }
    return {k: str(v) for k, v in env.items()}


def _symbols(prefix: str, timeframe: str, n: int, bars: int) -> list[Any]:
    from raytrader.data.sources import load_bars

    return [
        load_bars(f"synthetic:n_bars={bars},timeframe={timeframe},seed={i},symbol={prefix}{i:02d}")
        for i in range(n)
    ]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _throughput(kafka: str, redis: str) -> tuple[list[list[str]], list[Verdict]]:
    from kafka import KafkaConsumer

    from raytrader.features.feast_repo import apply, store
    from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
    from raytrader.streaming.producer import BarProducer, bar_messages, interleave
    from raytrader.streaming.sinks import FeastSink, NullSink

    run = uuid.uuid4().hex[:6]
    series = _symbols(f"T{run}", "5m", N_SYMBOLS, BARS_PER_SYMBOL)
    n = N_SYMBOLS * BARS_PER_SYMBOL
    log(f"stream: producing {n:,} bars of {N_SYMBOLS} symbols to bars.5m")
    producer = BarProducer(kafka)
    t0 = time.perf_counter()
    producer.replay(interleave([bar_messages(b, "bench") for b in series]))
    produce_s = time.perf_counter() - t0
    prefix = f"T{run}"

    def ceiling() -> tuple[float, int]:
        c = KafkaConsumer(
            "bars.5m",
            bootstrap_servers=kafka,
            group_id=f"bench-kp-{run}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        seen, start = 0, None
        while seen < n:
            batch = c.poll(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if start is None:
                    start = time.perf_counter()
                for r in records:
                    if json.loads(r.value)["symbol"].startswith(prefix):
                        seen += 1
        c.close()
        return time.perf_counter() - (start or time.perf_counter()), seen

    def ours(sink: Any, label: str) -> tuple[float, int]:
        state = tempfile.mkdtemp(prefix="bench-stream-")
        cfg = ConsumerConfig(
            bootstrap=kafka, timeframe="5m", group_id=f"bench-{label}-{run}", state_dir=state
        )
        consumer = FeatureConsumer(cfg, sink)
        start = None
        # time from the first delivered batch (group join excluded, as for the ceiling)
        while consumer.totals.new_bars < n:
            stats = consumer.poll()
            if stats is not None and start is None:
                start = time.perf_counter()
        consumer.flush()
        elapsed = time.perf_counter() - (start or time.perf_counter())
        consumer.close()
        return elapsed, consumer.totals.new_bars

    log("stream: kafka-python consume loop (ceiling)")
    kp_s, kp_n = ceiling()
    log("stream: feature consumer, null sink")
    null_s, null_n = ours(NullSink(), "null")
    log("stream: feature consumer, Feast sink (Redis online + offline Parquet)")
    fs = store("redis", redis=redis, data=Path(tempfile.mkdtemp(prefix="bench-feast-")))
    apply(fs)
    feast_s, feast_n = ours(FeastSink(fs), "feast")
    rows = [
        [
            "kafka-python loop (`json.loads` only) — the ceiling",
            f"{kp_n:,}",
            fmt_s(kp_s),
            f"{kp_n / kp_s:,.0f}",
            "—",
            "—",
        ],
        [
            "raytrader consumer, 70 features, null sink",
            f"{null_n:,}",
            fmt_s(null_s),
            f"{null_n / null_s:,.0f}",
            f">= {THROUGHPUT_TARGET:,.0f}",
            verdict(null_n / null_s >= THROUGHPUT_TARGET),
        ],
        [
            "raytrader consumer, 70 features, Feast (Redis + Parquet)",
            f"{feast_n:,}",
            fmt_s(feast_s),
            f"{feast_n / feast_s:,.0f}",
            f">= {THROUGHPUT_TARGET:,.0f}",
            verdict(feast_n / feast_s >= THROUGHPUT_TARGET),
        ],
    ]
    verdicts = [
        Verdict(
            "5. consumer throughput, Feast sink",
            f">= {THROUGHPUT_TARGET:,.0f} bars/s",
            f"{feast_n / feast_s:,.0f} bars/s",
            feast_n / feast_s >= THROUGHPUT_TARGET,
        ),
    ]
    rows.append(
        [
            "(producer: idempotent, acks=all)",
            f"{n:,}",
            fmt_s(produce_s),
            f"{n / produce_s:,.0f}",
            "—",
            "—",
        ]
    )
    return rows, verdicts


def _paced_producer(kafka: str, prefix: str, n_sym: int, per: int, rate: int) -> None:
    from raytrader.streaming.producer import BarProducer, bar_messages, interleave

    series = _symbols(prefix, "15m", n_sym, per)
    producer = BarProducer(kafka, extra={"linger.ms": 0})
    producer.replay(interleave([bar_messages(b, "bench") for b in series]), interval_s=1.0 / rate)


def _freshness(kafka: str, redis: str) -> tuple[dict[str, float], Verdict]:
    from raytrader.features.feast_repo import apply, store
    from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
    from raytrader.streaming.sinks import FeastSink

    run = uuid.uuid4().hex[:6]
    n_sym = 10
    per = FRESH_RATE * FRESH_SECONDS // n_sym
    fs = store("redis", redis=redis, data=Path(tempfile.mkdtemp(prefix="bench-feast-")))
    apply(fs)
    cfg = ConsumerConfig(
        bootstrap=kafka,
        timeframe="15m",
        group_id=f"bench-fresh-{run}",
        state_dir=tempfile.mkdtemp(),
        auto_offset_reset="latest",
        poll_timeout_s=0.005,
        batch_size=500,
    )
    consumer = FeatureConsumer(cfg, FeastSink(fs))
    while not consumer.assigned:  # join first, so the timed messages are consumed live
        consumer.poll()
    log(f"stream: freshness at {FRESH_RATE} bars/s for {FRESH_SECONDS} s ({n_sym} symbols)")
    # the producer is another process, as in production: it must not share the consumer's GIL
    sender = multiprocessing.get_context("spawn").Process(
        target=_paced_producer, args=(kafka, f"F{run}", n_sym, per, FRESH_RATE)
    )
    sender.start()
    deadline = time.monotonic() + FRESH_SECONDS + 60
    while consumer.totals.new_bars < n_sym * per and time.monotonic() < deadline:
        consumer.poll()
    sender.join()
    consumer.close()
    if sender.exitcode != 0:
        raise RuntimeError(f"the paced producer process failed (exit code {sender.exitcode})")
    f = consumer.totals.freshness
    b = consumer.totals.batch_seconds
    stats = {
        "batches": float(len(b)),
        "batch_p50": _pct(b, 50),
        "batch_p99": _pct(b, 99),
        "n": float(len(f)),
        "p50": _pct(f, 50),
        "p99": _pct(f, 99),
        "max": max(f) if f else float("nan"),
    }
    ok = stats["p99"] <= FRESH_TARGET_S
    return stats, Verdict(
        f"5. freshness p99 at {FRESH_RATE} bars/s",
        f"<= {FRESH_TARGET_S * 1000:.0f} ms",
        fmt_s(stats["p99"]),
        ok,
    )


def _reads(redis: str, feast_url: str) -> tuple[list[list[str]], list[Verdict]]:
    import requests

    from raytrader.data.sources import load_bars
    from raytrader.features.engine import compute_features
    from raytrader.features.feast_repo import FEATURE_SERVICE, apply, feature_rows, push, store

    fs = store("redis", redis=redis)
    apply(fs)
    goog = load_bars("goog")
    push(fs, feature_rows(goog, compute_features(goog)).tail(1), to="online")
    service = fs.get_feature_service(FEATURE_SERVICE)

    def sdk() -> None:
        fs.get_online_features(
            features=service, entity_rows=[{"symbol": "GOOG", "timeframe": "1d"}]
        ).to_dict()

    session = requests.Session()
    body = {
        "feature_service": FEATURE_SERVICE,
        "entities": {"symbol": ["GOOG"], "timeframe": ["1d"]},
    }

    def http() -> None:
        r = session.post(f"{feast_url}/get-online-features", json=body, timeout=5)
        r.raise_for_status()

    out, verdicts = [], []
    for short, label, fn in (
        ("SDK", "Feast SDK `get_online_features` (ensemble_v1, 1 symbol)", sdk),
        ("HTTP", "Feast feature server HTTP `/get-online-features`", http),
    ):
        try:
            for _ in range(50):
                fn()
            samples = []
            for _ in range(READS):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
        except Exception as exc:  # the feature server may not be running: say so in the table
            out.append([label, "—", "—", "—", f"not measured: {type(exc).__name__}: {exc}"[:120]])
            continue
        p99 = _pct(samples, 99)
        out.append(
            [
                label,
                fmt_s(_pct(samples, 50)),
                fmt_s(p99),
                fmt_s(max(samples)),
                verdict(p99 <= READ_TARGET_S),
            ]
        )
        verdicts.append(
            Verdict(
                f"5. online read p99, {short}",
                f"<= {READ_TARGET_S * 1000:.0f} ms",
                fmt_s(p99),
                p99 <= READ_TARGET_S,
            )
        )
    return out, verdicts


def run() -> Section:
    load_start = load_average()
    ep = _endpoints()
    t_rows, t_verdicts = _throughput(ep["kafka"], ep["redis"])
    fresh, f_verdict = _freshness(ep["kafka"], ep["redis"])
    r_rows, r_verdicts = _reads(ep["redis"], ep["feast_url"])
    body = f"""
Kafka `{ep["kafka"]}`, Redis `{ep["redis"]}`, Feast feature server `{ep["feast_url"]}` (the local
stack). Load average at start {load_start}, at end {load_average()}.

**Throughput** — {N_SYMBOLS} synthetic symbols × {BARS_PER_SYMBOL:,} 5-minute bars on `bars.5m`
(4 partitions), one consumer process, timed from the first delivered batch (group join excluded)
to the last bar processed and committed. The ceiling is a plain kafka-python loop on the same topic
that only decodes JSON.

{table(["what", "bars", "time", "bars / s", "target", "result"], t_rows)}

**Freshness** — {FRESH_RATE} bars/s for {FRESH_SECONDS} s over 10 symbols on `bars.15m`, sent by a
paced producer in another process and consumed live by one consumer (default settings: online write
every poll, offline rows + bar histories flushed every second on the writer process); freshness =
online-store write time − the message's Kafka timestamp, per bar. A bar waits for the poll in
progress, then for its own: freshness is about 1.5–2× the per-poll processing time, which is
dominated by recomputing the features over each symbol's whole history (exact, see the README).

{
        table(
            [
                "bars",
                "p50",
                "p99",
                "max",
                "polls",
                "poll work p50",
                "poll work p99",
                "target",
                "result",
            ],
            [
                [
                    f"{int(fresh['n']):,}",
                    fmt_s(fresh["p50"]),
                    fmt_s(fresh["p99"]),
                    fmt_s(fresh["max"]),
                    f"{int(fresh['batches']):,}",
                    fmt_s(fresh["batch_p50"]),
                    fmt_s(fresh["batch_p99"]),
                    f"<= {FRESH_TARGET_S * 1000:.0f} ms",
                    verdict(f_verdict.ok),
                ]
            ],
        )
    }

**Online reads** — the latest `ensemble_v1` row (70 features + warm + bar_open_time) of one
symbol, {READS} sequential reads after 50 warm-up reads, from this process.

{table(["what", "p50", "p99", "max", "result"], r_rows)}
"""
    return Section(
        NAME,
        "5. Streaming features (Kafka → features → Feast)",
        body,
        [*t_verdicts, f_verdict, *r_verdicts],
    )
