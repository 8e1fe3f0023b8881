"""The feature consumer: Kafka bars in, ``bar_features_v1`` rows out to Feast (online + offline).

Per poll it takes a micro-batch of messages and, in this order:

1. decodes and validates each message; malformed JSON, a wrong schema version, broken bar rules
   (NaN prices, high < low, …) or a bar of another timeframe go to ``bars.dlq`` with the reason in
   the headers, and the consumer keeps going;
2. applies the ordering rules of :mod:`raytrader.streaming.incremental` per symbol (duplicates are
   skipped, conflicts and out-of-order bars go to the DLQ), restoring a symbol's state from its
   persisted history the first time it is seen;
3. computes the feature rows of the new bars (equal to the batch engine's, bit for bit);
4. writes each symbol's newest row to the Feast online store (every poll);
5. at most every ``flush_interval_s`` (or once ``flush_bars`` are pending): hands the pending rows,
   with the positions consumed so far, to a background writer thread that appends them to the
   offline Parquet source (idempotent per symbol and event time) and persists the bar histories;
   when that flush has finished, the poll loop makes the dead letters durable and commits exactly
   those positions. One flush runs at a time, so commits keep their order, and polling never waits
   on disk (freshness is the poll loop's work only).

Offsets are committed only after the writes succeeded (at-least-once); a failed flush stops the
consumer with its error and nothing committed past the last good flush. A crash after 4 replays the
batch: the bars are new to the history, recomputed identically and rewritten under the same keys. A
crash after 5 replays bars the history already holds: they are skipped as duplicates. Either way
every bar ends up exactly once in the stores. Consumers in one group split the partitions, and a
symbol always maps to one partition (the message key), so each symbol has one writer.

Metrics (Prometheus, on ``metrics_port``): messages consumed, dead-lettered messages by reason,
consumer lag per partition, feature freshness (Kafka message timestamp → online write), micro-batch
processing time and sink write latency histograms.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from raytrader.config import StrictConfig
from raytrader.data.bars import Bars, make_frame
from raytrader.data.timeframe import Timeframe
from raytrader.features import get_feature_set
from raytrader.streaming.history import BarHistory
from raytrader.streaming.incremental import BarRejected, IncrementalFeatureEngine
from raytrader.streaming.messages import DLQ_TOPIC, BarMessage, MessageError, decode, topic_for

log = logging.getLogger(__name__)


class ConsumerConfig(StrictConfig):
    bootstrap: str = "127.0.0.1:9092"
    timeframe: str = "1m"
    group_id: str = "raytrader-features"
    feature_set: str = "bar_features_v1"
    state_dir: str = Field(description="where bar histories are persisted")
    calendar: str = "crypto"
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.5, gt=0.0)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: the address /metrics binds: loopback locally, ``0.0.0.0`` in a pod Prometheus scrapes
    metrics_host: str = "127.0.0.1"
    auto_offset_reset: str = "earliest"
    # static membership: a restarted consumer with the same id takes its partitions back at once
    # instead of waiting for the dead member's session to time out
    instance_id: str | None = None
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # the online store is written every poll; offline rows, bar histories and offsets go together,
    # on a background thread, at most this often (or once flush_bars are pending)
    flush_interval_s: float = Field(default=1.0, ge=0.0)
    flush_bars: int = Field(default=20_000, ge=1)
    # pending rows beyond which polling waits for the running flush (bounds memory if disk lags)
    max_pending_bars: int = Field(default=200_000, ge=1)
    # where flushes run: "process" keeps their CPU off the poll loop's GIL (freshness); "thread"
    # for sinks whose offline leg cannot leave the process
    writer: Literal["process", "thread"] = "process"
    # once the consumer has joined its group: move every object alive then (imports, Feast's
    # registry, the restored state) out of the collector's scans and collect the young generation
    # less often. Full collections otherwise pause the poll loop for up to ~150 ms (measured),
    # which is the freshness p99. Process-wide: the consumer owns its process.
    tune_gc: bool = True

    @field_validator("metrics_host")
    @classmethod
    def _an_ip(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"metrics_host {v!r} is not an IP address") from None
        return v


class OfflineWriter(Protocol):
    """The offline leg of a sink. It runs on the consumer's writer (a separate process by default,
    so it must pickle) and must be idempotent per (symbol, bar)."""

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None: ...


class FeatureSink(Protocol):
    """Where feature rows go. Each item is (the new bars of one symbol, their feature rows: same
    index of bar open times, the feature set's columns plus ``warm``). Writes must be idempotent per
    (symbol, bar). The online leg is written from the poll loop, so freshness does not wait for the
    offline write; both happen before the offsets are committed. ``reconcile`` runs when a symbol's
    state is restored: rows for bars after ``last_bar`` were written ahead of a crash and will be
    rewritten."""

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None: ...

    def offline_writer(self) -> OfflineWriter: ...

    def reconcile(self, symbol: str, last_bar: pd.Timestamp | None) -> None: ...


@dataclass(frozen=True)
class _FlushJob:
    """One flush on the writer: the offline rows, then the bar histories (one part per symbol)."""

    writer: OfflineWriter
    history: BarHistory

    def __call__(self, pending: list[tuple[Bars, pd.DataFrame]]) -> None:
        if not pending:
            return
        by_symbol: dict[str, list[tuple[Bars, pd.DataFrame]]] = defaultdict(list)
        for bars, rows in pending:
            by_symbol[bars.symbol].append((bars, rows))
        items = []
        for symbol, parts in by_symbol.items():
            frame = pd.concat([b.frame for b, _ in parts])
            bars = Bars.from_frame(
                frame,
                symbol=symbol,
                timeframe=self.history.timeframe,
                calendar=self.history.calendar,
            )
            items.append((bars, pd.concat([r for _, r in parts])))
        self.writer.write_offline(items)
        for bars, _ in items:
            self.history.append(bars)


def _writer_init() -> None:
    """Writer process start-up: exit as soon as the consumer process is gone (a SIGKILLed consumer
    must not leave its writer behind; an interrupted flush was never committed, and every file it
    writes is atomic), and pay the imports before the first flush."""
    import os
    import threading
    from multiprocessing import parent_process
    from multiprocessing.connection import wait

    parent = parent_process()
    if parent is not None:
        sentinel = parent.sentinel

        def watch() -> None:
            wait([sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="raytrader-parent-watch", daemon=True).start()
    import pyarrow.parquet  # noqa: F401


@dataclass
class BatchStats:
    consumed: int = 0
    new_bars: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    freshness: list[float] = field(default_factory=list)  # seconds, message timestamp -> online
    batch_seconds: list[float] = field(default_factory=list)  # per poll: processing wall time


class ConsumerMetrics:
    def __init__(self, registry: Any | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "raytrader_stream_messages_consumed_total",
            "Bar messages consumed",
            ["topic"],
            registry=r,
        )
        self.dlq = Counter(
            "raytrader_stream_dead_letters_total",
            "Messages sent to the DLQ",
            ["reason"],
            registry=r,
        )
        self.bars = Counter(
            "raytrader_stream_feature_rows_total", "Feature rows written", registry=r
        )
        self.lag = Gauge(
            "raytrader_stream_consumer_lag",
            "Messages behind the log end",
            ["partition"],
            registry=r,
        )
        buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        self.freshness = Histogram(
            "raytrader_stream_feature_freshness_seconds",
            "Kafka message timestamp to online-store write",
            buckets=buckets,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "raytrader_stream_batch_seconds",
            "Processing time of one polled micro-batch (decode, features, online write)",
            buckets=buckets,
            registry=r,
        )
        self.write_latency = Histogram(
            "raytrader_stream_sink_write_seconds",
            "Feature sink write latency per symbol batch",
            buckets=buckets,
            registry=r,
        )


def _reason_kind(reason: str) -> str:
    head = reason.split(":", 1)[0].strip().lower()
    for kind in (
        "malformed json",
        "unsupported schema_version",
        "out of order",
        "conflicting duplicate",
        "wrong timeframe",
        "empty message",
    ):
        if head.startswith(kind):
            return kind.replace(" ", "_")
    return "invalid_bar"


class FeatureConsumer:
    """Consumes ``bars.<timeframe>`` and feeds a :class:`FeatureSink`."""

    def __init__(
        self, config: ConsumerConfig, sink: FeatureSink, *, metrics: ConsumerMetrics | None = None
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.config = config
        self.timeframe = Timeframe.parse(config.timeframe)
        self.topic = topic_for(self.timeframe.name)
        self.sink = sink
        self.engine = IncrementalFeatureEngine(get_feature_set(config.feature_set), self.timeframe)
        self.history = BarHistory(config.state_dir, self.timeframe, config.calendar)
        self.metrics = metrics or ConsumerMetrics()
        self._consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": config.auto_offset_reset,
                "enable.partition.eof": False,
                "session.timeout.ms": config.session_timeout_ms,
                **({"group.instance.id": config.instance_id} if config.instance_id else {}),
            }
        )
        self._dlq = Producer(
            {"bootstrap.servers": config.bootstrap, "enable.idempotence": True, "acks": "all"}
        )
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._running = True
        self._closed = False
        self._assigned = False
        self.totals = BatchStats()  # accumulated over run()
        self._pending: list[tuple[Bars, pd.DataFrame]] = []
        self._pending_bars = 0
        self._uncommitted = False
        self._last_flush = time.monotonic()
        self._gc_tuned = False
        self._flush_job = _FlushJob(sink.offline_writer(), self.history)
        self._writer: Executor
        if config.writer == "process":
            # spawn, not fork: the parent already runs librdkafka's threads
            self._writer = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_writer_init
            )
            self._writer.submit(int)  # start it now: the first flush should not wait for imports
        else:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="raytrader-flush")
        self._inflight: tuple[Future[None], list[Any]] | None = None  # (write, offsets to commit)
        if config.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(
                config.metrics_port, addr=str(config.metrics_host), registry=self.metrics.registry
            )

    # -- partition ownership: state is only trusted for partitions we hold -------------------------
    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        self._assigned = True

    def _on_revoke(self, consumer: Any, partitions: Any) -> None:
        self.flush()  # commit what we processed before another member takes the partitions
        self.engine = IncrementalFeatureEngine(self.engine.feature_set, self.timeframe)

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        """Flush, then release the broker connections (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)
            self._consumer.close()
            left = self._dlq.flush(10)
            if left:  # the broker is gone: close() must not wait on records it cannot deliver
                log.error("%d dead-letter record(s) undelivered at close", left)
                self._dlq.purge()
            # close, not just drop: a consumer object kept alive (or frozen by tune_gc) would
            # otherwise hold the producer's connection and retry a stopped broker until exit
            self._dlq.close()

    def poll(self) -> BatchStats | None:
        """One poll: consume up to ``batch_size`` messages, process them, start or finish a
        background flush when due. Returns the batch's stats, or None when nothing arrived."""
        msgs = self._consumer.consume(
            num_messages=self.config.batch_size, timeout=self.config.poll_timeout_s
        )
        if not msgs:
            self.maybe_flush()
            return None
        if self.config.tune_gc and not self._gc_tuned:
            self._gc_tuned = True
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, *gc.get_threshold()[1:])
        started = time.perf_counter()
        stats = self.process(msgs)
        stats.batch_seconds.append(time.perf_counter() - started)
        self.metrics.batch_seconds.observe(stats.batch_seconds[-1])
        self._accumulate(stats)
        self.maybe_flush()
        self._update_lag()
        return stats

    @property
    def assigned(self) -> bool:
        """Whether the group has given this consumer partitions yet."""
        return self._assigned

    def run(self, *, max_messages: int | None = None, idle_timeout_s: float | None = None) -> int:
        """Consume until stopped, ``max_messages`` processed, or nothing arrives for ``idle_timeout_s``."""
        total = 0
        idle_since = time.monotonic()
        while self._running:
            stats = self.poll()
            if stats is None:
                if not self._assigned:  # still joining the group: idle time does not count yet
                    idle_since = time.monotonic()
                elif idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            total += stats.consumed
            if max_messages is not None and total >= max_messages:
                break
        self.flush()
        return total

    def maybe_flush(self) -> None:
        """Commit a finished background flush; start the next one when it is due."""
        self._finish_flush(wait=self._pending_bars >= self.config.max_pending_bars)
        if self._inflight is not None or not (self._pending or self._uncommitted):
            return
        due = time.monotonic() - self._last_flush >= self.config.flush_interval_s
        if due or self._pending_bars >= self.config.flush_bars:
            self._start_flush()

    def flush(self) -> None:
        """Write everything processed so far and commit it (blocks until done)."""
        self._finish_flush(wait=True)
        if self._pending or self._uncommitted:
            self._start_flush()
            self._finish_flush(wait=True)

    def _start_flush(self) -> None:
        """Hand the pending rows and the positions they bring us to over to the writer thread."""
        pending, self._pending, self._pending_bars = self._pending, [], 0
        offsets = [
            tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0
        ]
        self._uncommitted = False
        self._inflight = (self._writer.submit(self._flush_job, pending), offsets)
        self._last_flush = time.monotonic()

    def _finish_flush(self, *, wait: bool) -> None:
        """If the running flush is done (or ``wait``), re-raise its error or commit its offsets."""
        if self._inflight is None:
            return
        future, offsets = self._inflight
        if not wait and not future.done():
            return
        self._inflight = None
        future.result()  # a failed write propagates: nothing past the last good flush is committed
        self._dlq.flush(10)
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def _accumulate(self, stats: BatchStats) -> None:
        t = self.totals
        t.consumed += stats.consumed
        t.new_bars += stats.new_bars
        t.duplicates += stats.duplicates
        t.dead_letters += stats.dead_letters
        for k, v in stats.reasons.items():
            t.reasons[k] += v
        t.freshness.extend(stats.freshness)
        t.batch_seconds.extend(stats.batch_seconds)

    def _update_lag(self) -> None:
        try:
            for tp in self._consumer.assignment():
                _, high = self._consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
                pos = self._consumer.position([tp])[0].offset
                if pos >= 0:
                    self.metrics.lag.labels(str(tp.partition)).set(max(high - pos, 0))
        except Exception:  # lag is best-effort telemetry; never fail the pipeline over it
            log.debug("lag update failed", exc_info=True)

    def _dead_letter(self, msg: Any, reason: str, stats: BatchStats) -> None:
        kind = _reason_kind(reason)
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.reason", reason.encode()),
            ("source.topic", str(msg.topic()).encode()),
            ("source.partition", str(msg.partition()).encode()),
            ("source.offset", str(msg.offset()).encode()),
        ]
        self._dlq.produce(DLQ_TOPIC, key=msg.key(), value=msg.value(), headers=headers)
        self._dlq.poll(0)
        self.metrics.dlq.labels(kind).inc()
        stats.dead_letters += 1
        stats.reasons[kind] += 1
        log.warning(
            "dead-lettered %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason
        )

    def process(self, msgs: list[Any]) -> BatchStats:
        """One micro-batch (see the module docstring for the order of effects)."""
        stats = BatchStats()
        by_symbol: dict[str, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for msg in msgs:
            if msg.error() is not None:
                log.error("kafka error: %s", msg.error())
                continue
            stats.consumed += 1
            self.metrics.consumed.labels(msg.topic()).inc()
            try:
                bar = decode(msg.value())
                if bar.timeframe != self.timeframe.name:
                    raise MessageError(f"wrong timeframe: {bar.timeframe} bar on {self.topic}")
                self._restore(bar.symbol)
                open_ns = int(pd.Timestamp(bar.open_time).value)
                values = np.array([bar.open, bar.high, bar.low, bar.close, bar.volume])
                pending = by_symbol[bar.symbol]
                kind = self._classify(bar, open_ns, values, pending)
            except (MessageError, BarRejected) as exc:
                self._dead_letter(msg, exc.reason, stats)
                continue
            if kind == "duplicate":
                stats.duplicates += 1
                continue
            ts_type, ts_ms = msg.timestamp()
            pending.append((open_ns, values, ts_ms / 1000.0 if ts_type else time.time()))
        written: list[tuple[Bars, pd.DataFrame, list[tuple[int, np.ndarray, float]]]] = []
        for symbol, items in by_symbol.items():
            if not items:
                continue
            times = np.array([t for t, _, _ in items], dtype=np.int64)
            values = np.vstack([v for _, v, _ in items])
            rows = self.engine.update(symbol, times, values)
            new_bars = Bars.from_frame(
                make_frame(pd.DatetimeIndex(rows.index), *(values[:, j] for j in range(5))),
                symbol=symbol,
                timeframe=self.timeframe,
                calendar=self.config.calendar,
            )
            written.append((new_bars, rows, items))
        if written:
            t0 = time.time()
            self.sink.write_online([(b, r) for b, r, _ in written])
            done = time.time()
            self.metrics.write_latency.observe(done - t0)
            for _, rows, items in written:
                for _, _, produced_at in items:
                    fresh = max(done - produced_at, 0.0)
                    self.metrics.freshness.observe(fresh)
                    stats.freshness.append(fresh)
                self.metrics.bars.inc(len(rows))
                stats.new_bars += len(rows)
            self._pending.extend((b, r) for b, r, _ in written)
            self._pending_bars += stats.new_bars
        self._dlq.poll(0)
        self._uncommitted = self._uncommitted or stats.consumed > 0
        return stats

    def _restore(self, symbol: str) -> None:
        if self.engine.has(symbol):
            return
        bars = self.history.load(symbol)
        if bars is not None:
            self.engine.restore(symbol, bars)
        self.sink.reconcile(symbol, bars.index[-1] if bars is not None else None)

    def _classify(
        self,
        bar: BarMessage,
        open_ns: int,
        values: np.ndarray,
        pending: list[tuple[int, np.ndarray, float]],
    ) -> str:
        """Ordering rules against this batch's earlier bars of the symbol, then its history."""
        if pending:
            if open_ns > pending[-1][0]:
                return "new"
            for t, v, _ in pending:
                if t == open_ns:
                    if np.array_equal(v, values):
                        return "duplicate"
                    raise BarRejected(
                        f"conflicting duplicate: {bar.symbol} bar at {bar.open_time.isoformat()} "
                        "already seen with other values"
                    )
            newest = self.engine.last_open_time(bar.symbol)
            if newest is None or open_ns > newest.value:
                raise BarRejected(
                    f"out of order: {bar.symbol} bar at {bar.open_time.isoformat()} is older than "
                    "the newest seen in this batch"
                )
        return self.engine.classify(bar.symbol, open_ns, values)


__all__ = ["BatchStats", "ConsumerConfig", "FeatureConsumer", "FeatureSink", "OfflineWriter"]
