"""The feature consumer: Kafka bars in, ``bar_features_v1`` rows out to Feast (online + offline).

Per poll it takes a micro-batch of messages and, in this order:

1. decodes and validates each message; malformed JSON, a wrong schema version, broken bar rules
   (NaN prices, high < low, …) or a bar of another timeframe go to ``bars.dlq`` with the reason in
   the headers, and the consumer keeps going;
2. applies the ordering rules of :mod:`raytrader.streaming.incremental` per symbol (duplicates are
   skipped, conflicts and out-of-order bars go to the DLQ), restoring a symbol's state from its
   persisted history the first time it is seen (once; the sink then drops the offline rows this
   consumer wrote past that history — never rows the batch path wrote, and nothing at all for a
   symbol without history);
3. computes the feature rows of the new bars (equal to the batch engine's, bit for bit);
4. writes each symbol's newest row to the Feast online store (every poll);
5. at most every ``flush_interval_s`` (or once ``flush_bars`` are pending): hands the pending rows,
   with the positions consumed so far, to a background writer thread that appends them to the
   offline Parquet source (idempotent per symbol and event time) and persists the bar histories;
   when that flush has finished, the poll loop makes the dead letters durable and commits exactly
   those positions. One flush runs at a time, so commits keep their order, and polling never waits
   on disk (freshness is the poll loop's work only).

Offsets are committed only after the writes succeeded (at-least-once), dead letters included: a
message's offset is committed only once its dead letter is acknowledged by the broker (``acks=all``,
a delivery report per record); a failed flush or an undeliverable dead letter stops the consumer with
its error and nothing committed past the last good flush. A crash after 4 replays the
batch: the bars are new to the history, recomputed identically and rewritten under the same keys. A
crash after 5 replays bars the history already holds: they are skipped as duplicates. Either way
every bar ends up exactly once in the stores. Consumers in one group split the partitions, and a
symbol always maps to one partition (the message key), so each symbol has one writer.

**Online rows survive the online store.** Redis may lose its data (a restart without persistence,
an eviction, a new instance); replayed bars would then be skipped as duplicates and nothing would
write the latest rows back. So the consumer checks the online rows of every symbol in its bar
history when it first joins its group and then every ``online_check_s``: a row that is missing or
older than the history's newest bar is recomputed from the history and written again, without any
new bar (Redis keeps the newer of two rows, so a second consumer's check cannot roll a row back).

Metrics (Prometheus, on ``metrics_port``): messages consumed, dead-lettered messages by reason,
consumer lag per partition, feature freshness (Kafka message timestamp → online write), micro-batch
processing time and sink write latency histograms, online rows restored, and the age of the last
poll. The same port answers ``/healthz``: 200 while the poll loop has run within
``liveness_max_poll_age_s``, 503 after (a stuck loop, not a live metrics thread, decides liveness).
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
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import RaytraderError
from raytrader.features import get_feature_set
from raytrader.features.engine import compute_features
from raytrader.streaming.history import BarHistory
from raytrader.streaming.incremental import BarRejected, IncrementalFeatureEngine
from raytrader.streaming.messages import DLQ_TOPIC, BarMessage, MessageError, decode, topic_for

log = logging.getLogger(__name__)


class DeadLetterError(RaytraderError):
    """A dead letter the broker did not acknowledge: the consumer stops before committing."""


class ConsumerConfig(StrictConfig):
    bootstrap: str = "127.0.0.1:9092"
    timeframe: str = "1m"
    group_id: str = "raytrader-features"
    feature_set: str = "bar_features_v1"
    state_dir: str = Field(description="where bar histories are persisted")
    #: the symbols' market calendar: auto = each symbol's first message's ``calendar``, crypto
    #: when messages carry none; feature values do not depend on it
    calendar: Literal["auto", "equity", "fx", "crypto"] = "auto"
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
    #: how often the online rows of the symbols in the bar history are checked (module docstring)
    online_check_s: float = Field(default=30.0, gt=0.0)
    #: /healthz answers 503 once the poll loop has not run for this long
    liveness_max_poll_age_s: float = Field(default=120.0, gt=0.0)
    dlq_topic: str = DLQ_TOPIC
    #: how long the broker may take to acknowledge a dead letter before the consumer gives up
    dlq_timeout_ms: int = Field(default=30_000, ge=1_000)

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
    state is restored from its history: rows the consumer itself wrote for bars after ``last_bar``
    were written ahead of a crash and will be rewritten (rows of the batch path are kept).
    ``online_bar_times`` is the open time of each symbol's online row (None: no row)."""

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None: ...

    def offline_writer(self) -> OfflineWriter: ...

    def reconcile(self, symbol: str, timeframe: str, last_bar: pd.Timestamp) -> None: ...

    def online_bar_times(
        self, symbols: list[str], timeframe: str
    ) -> dict[str, pd.Timestamp | None]: ...


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
                calendar=parts[0][0].calendar,
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
        self.online_check_failures = Counter(
            "raytrader_stream_online_check_failures_total",
            "Checks of the online rows that failed (the online store unreachable)",
            registry=r,
        )
        self.online_restored = Counter(
            "raytrader_stream_online_rows_restored_total",
            "Online rows found missing or behind the bar history and written again",
            registry=r,
        )
        self.poll_age = Gauge(
            "raytrader_stream_last_poll_age_seconds",
            "Seconds since the poll loop last ran",
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
        self,
        config: ConsumerConfig,
        sink: FeatureSink,
        *,
        metrics: ConsumerMetrics | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        """``security``: librdkafka's security settings of the consumer and the dead-letter
        producer (:meth:`raytrader.settings.KafkaSettings.security_config`)."""
        from confluent_kafka import Consumer, Producer

        self.config = config
        self.timeframe = Timeframe.parse(config.timeframe)
        self.topic = topic_for(self.timeframe.name)
        self.sink = sink
        self.engine = IncrementalFeatureEngine(get_feature_set(config.feature_set), self.timeframe)
        self.history = BarHistory(config.state_dir, self.timeframe)
        self._calendars: dict[str, Calendar] = {}
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
                **(security or {}),
            }
        )
        self._dlq = Producer(
            {
                "bootstrap.servers": config.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": config.dlq_timeout_ms,
                **(security or {}),
            }
        )
        self._dlq_failures: list[str] = []
        #: the next offset of each partition whose messages are fully processed (their rows are
        #: pending or written): what a flush commits, never the fetch position, which runs ahead
        #: of a batch fetched but not yet processed
        self._done: dict[tuple[str, int], int] = {}
        #: why this consumer may not commit again (a failed flush: its rows are lost)
        self._broken: str | None = None
        self._restored: set[str] = set()
        self._online_checked = float("-inf")
        self._last_poll = time.monotonic()
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
        self._http: Any = None
        if config.metrics_port:
            self._http = serve_metrics_and_health(self)

    # -- partition ownership: state is only trusted for partitions we hold -------------------------
    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        self._assigned = True

    def _on_revoke(self, consumer: Any, partitions: Any) -> None:
        if not self._closed:  # close() has flushed already (or failed to, and said so)
            self.flush()  # commit what we processed before another member takes the partitions
        for tp in partitions:
            self._done.pop((tp.topic, tp.partition), None)
        self.engine = IncrementalFeatureEngine(self.engine.feature_set, self.timeframe)
        self._restored.clear()

    def last_poll_age(self) -> float:
        """Seconds since the poll loop last ran (what ``/healthz`` judges liveness by)."""
        return time.monotonic() - self._last_poll

    def stop(self) -> None:
        self._running = False

    def close(self) -> None:
        """Flush, then release the broker connections (a second call does nothing). After a
        failed flush nothing more is written or committed: the next consumer replays from the
        last good commit."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._broken is None:
                self.flush()
            else:
                log.error("closing without a flush: %s", self._broken)
        finally:
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
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
        self._last_poll = time.monotonic()
        msgs = self._consumer.consume(
            num_messages=self.config.batch_size, timeout=self.config.poll_timeout_s
        )
        if self._assigned and time.monotonic() - self._online_checked >= self.config.online_check_s:
            try:
                self.check_online()
            except Exception:  # the online store down: try again at the next check, keep going
                self.metrics.online_check_failures.inc()
                log.warning(
                    "checking the online rows failed; retrying in %gs",
                    self.config.online_check_s,
                    exc_info=True,
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
        if (self._pending or self._uncommitted) and self._broken is None:
            self._start_flush()
            self._finish_flush(wait=True)

    def _start_flush(self) -> None:
        """Hand the pending rows and the offsets of the messages they came from (every message
        processed so far) over to the writer."""
        from confluent_kafka import TopicPartition

        pending, self._pending, self._pending_bars = self._pending, [], 0
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._done.items()]
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
        try:
            future.result()
        except BaseException as exc:  # its rows are lost: never commit past them, even at close
            self._broken = f"a flush failed: {type(exc).__name__}: {exc}"
            raise
        self._confirm_dead_letters()
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

    def _confirm_dead_letters(self) -> None:
        """Wait until the broker has acknowledged every dead letter produced so far; an undelivered
        one stops the consumer before it commits the offset of the message it stands for."""
        left = self._dlq.flush(self.config.dlq_timeout_ms / 1000 + 5)
        if left and not self._dlq_failures:
            self._dlq_failures.append(f"{left} still queued")
        if self._dlq_failures:  # sticky: this consumer never commits past a lost dead letter
            detail = "; ".join(dict.fromkeys(self._dlq_failures))
            raise DeadLetterError(
                f"dead letters to {self.config.dlq_topic} were not delivered ({detail}); "
                "nothing is committed past them"
            )

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._dlq_failures.append(str(err))

    def _dead_letter(self, msg: Any, reason: str, stats: BatchStats) -> None:
        kind = _reason_kind(reason)
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.reason", reason.encode()),
            ("source.topic", str(msg.topic()).encode()),
            ("source.partition", str(msg.partition()).encode()),
            ("source.offset", str(msg.offset()).encode()),
        ]
        self._dlq.produce(
            self.config.dlq_topic,
            key=msg.key(),
            value=msg.value(),
            headers=headers,
            on_delivery=self._delivered,
        )
        self._dlq.poll(0)
        self.metrics.dlq.labels(kind).inc()
        stats.dead_letters += 1
        stats.reasons[kind] += 1
        log.warning(
            "dead-lettered %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason
        )

    def process(self, msgs: list[Any]) -> BatchStats:
        """One micro-batch (see the module docstring for the order of effects). Its messages
        count as processed (their offsets may be committed) only once it has finished."""
        stats = BatchStats()
        by_symbol: dict[str, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        processed: dict[tuple[str, int], int] = {}
        for msg in msgs:
            if msg.error() is not None:
                log.error("kafka error: %s", msg.error())
                continue
            processed[(msg.topic(), msg.partition())] = msg.offset() + 1
            stats.consumed += 1
            self.metrics.consumed.labels(msg.topic()).inc()
            try:
                bar = decode(msg.value())
                if bar.timeframe != self.timeframe.name:
                    raise MessageError(f"wrong timeframe: {bar.timeframe} bar on {self.topic}")
                self._calendar(bar)
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
                calendar=self._calendars[symbol],
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
        self._done.update(processed)
        self._uncommitted = self._uncommitted or stats.consumed > 0
        return stats

    def _calendar(self, bar: BarMessage) -> None:
        """A symbol's calendar: the configured one, else its first message's, else crypto."""
        if bar.symbol not in self._calendars:
            given = self.config.calendar
            self._calendars[bar.symbol] = (
                Calendar(given) if given != "auto" else bar.calendar or Calendar.CRYPTO
            )

    def _restore(self, symbol: str) -> None:
        """A symbol's state from its persisted history, once per assignment; without history
        there is nothing to restore and nothing to reconcile."""
        if symbol in self._restored:
            return
        self._restored.add(symbol)
        if self.engine.has(symbol):
            return
        bars = self.history.load(symbol, self._calendars.get(symbol, Calendar.CRYPTO))
        if bars is not None:
            self.engine.restore(symbol, bars)
            self.sink.reconcile(symbol, self.timeframe.name, bars.index[-1])

    def check_online(self) -> int:
        """Write again the online row of each symbol whose row is missing or older than its
        newest bar; returns how many it wrote. The first check after joining covers every symbol
        of the bar history (a restarted consumer restores rows without any new bar); later ones
        the symbols this consumer has processed since, by their newest bar in memory, and build
        features only for the rows that need them."""
        first = self._online_checked == float("-inf")
        self._online_checked = time.monotonic()
        held = set(self.engine.symbols())
        symbols = sorted(held | set(self.history.symbols())) if first else sorted(held)
        if not symbols:
            return 0
        online = self.sink.online_bar_times(symbols, self.timeframe.name)
        items = []
        for symbol in symbols:
            newest = self.engine.last_open_time(symbol)
            seen = online.get(symbol)
            if newest is not None and seen is not None and seen >= newest:
                continue  # the common case: nothing to build
            cal = self._calendars.get(symbol, Calendar.CRYPTO)
            bars = (
                self.engine.bars(symbol, cal) if symbol in held else self.history.load(symbol, cal)
            )
            if bars is None or len(bars) == 0 or (seen is not None and seen >= bars.index[-1]):
                continue
            items.append((bars, compute_features(bars, self.engine.feature_set)))
        if items:
            self.sink.write_online(items)
            self.metrics.online_restored.inc(len(items))
            log.info("restored %d online row(s): %s", len(items), [b.symbol for b, _ in items])
        return len(items)

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


def serve_metrics_and_health(consumer: FeatureConsumer) -> Any:
    """Prometheus ``/metrics`` and ``/healthz`` on the consumer's metrics address, in a daemon
    thread; ``/healthz`` is 200 while the poll loop is alive, 503 once it has stalled."""
    import json
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    metrics_app = make_wsgi_app(consumer.metrics.registry)
    limit = consumer.config.liveness_max_poll_age_s

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        age = consumer.last_poll_age()
        consumer.metrics.poll_age.set(age)
        if environ.get("PATH_INFO") == "/healthz":
            ok = age <= limit
            body = json.dumps({"ok": ok, "last_poll_age_s": round(age, 3), "limit_s": limit})
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body.encode()]
        return metrics_app(environ, start_response)

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    cfg = consumer.config
    server = make_server(
        str(cfg.metrics_host), int(cfg.metrics_port or 0), app, _Server, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, name="raytrader-metrics", daemon=True).start()
    return server


__all__ = [
    "BatchStats",
    "ConsumerConfig",
    "DeadLetterError",
    "FeatureConsumer",
    "FeatureSink",
    "OfflineWriter",
]
