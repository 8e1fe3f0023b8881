"""The paper trader: closed bars from Kafka, decisions, the portfolio kernel, the ledger.

Per complete bar time (:mod:`raytrader.paper.clock`), oldest first:

1. the bars at that time join each symbol's history (before the session's start — the first time
   every symbol has a bar, or ``start`` — that is all: they are a strategy's warm-up);
2. each symbol with a bar there gets a decision (:mod:`raytrader.paper.decisions`); one that
   cannot be had is recorded with its reason and the position is kept (NaN target);
3. :class:`~raytrader.sim.portfolio.PortfolioSimulator` steps the account through the bar, the
   backtest's kernel call: fills at the next open with the session's ``SimConfig``;
4. the kill switch is checked on the equity at the close: past a limit every position is ordered
   flat and the session halts with the rule as its reason once flat;
5. the ledger commits the bar — bars, step, decisions, orders, fills, positions, the simulator's
   state and the Kafka offsets to read next — in one transaction (:mod:`raytrader.paper.ledger`).

The trader reads Kafka by assigning partitions at the offsets its ledger holds (a consumer group's
committed offsets are never used), so a restart after a crash continues at the last committed bar.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import ServiceError
from raytrader.paper.clock import BarClock, Pending
from raytrader.paper.config import PaperConfig
from raytrader.paper.decisions import DecisionSource, Outcome, decision_source
from raytrader.paper.ledger import BAR_FIELDS, BarWrite, Ledger, Resume, bar_frame
from raytrader.paper.metrics import PaperMetrics
from raytrader.sim import kernel as K
from raytrader.sim.portfolio import (
    F_COL,
    F_COMMISSION,
    F_PRICE,
    F_REASON,
    F_UNITS,
    PortfolioSimulator,
)
from raytrader.streaming.messages import MessageError, decode, topic_for

log = logging.getLogger(__name__)

#: how long the trader waits for Kafka's metadata at start
KAFKA_WAIT_S = 30.0
#: a calendar's rank: the portfolio is annualized with its most often trading symbol's
_WIDTH = {Calendar.EQUITY: 0, Calendar.FX: 1, Calendar.CRYPTO: 2}


class PaperTrader:
    def __init__(
        self,
        config: PaperConfig,
        ledger: Ledger,
        *,
        bootstrap: str,
        security: dict[str, Any] | None = None,
        source: DecisionSource | None = None,
        metrics: PaperMetrics | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.source = source if source is not None else decision_source(config.decisions)
        self.metrics = metrics or PaperMetrics()
        self.timeframe = Timeframe.parse(config.timeframe)
        self.topic = topic_for(config.timeframe)
        self.symbols = config.names
        self.resume: Resume = ledger.open(config)
        self.clock = BarClock(list(self.symbols))
        self.history: dict[str, pd.DataFrame] = dict(self.resume.bars)
        self._rows: dict[str, list[tuple[pd.Timestamp, dict[str, float]]]] = {
            s: [] for s in self.symbols
        }
        for symbol, frame in self.history.items():
            self.clock.latest[symbol] = frame.index[-1]
        stored = [f.index[-1] for f in self.history.values()]
        self.clock.done = max(stored) if stored else None
        self.calendars: dict[str, Calendar] = {}
        self.sim: PortfolioSimulator | None = None
        if self.resume.state is not None and self.resume.periods_per_year is not None:
            self.sim = PortfolioSimulator.from_bytes(
                self.resume.state, config.sim, self.resume.periods_per_year,
                np.asarray(config.weights), self.symbols,
            )  # fmt: skip
        self._stop = False
        self._kafka = (bootstrap, security or {})
        self._consumer: Any = None  # connected by run(): a halted session never reads

    # -- Kafka ------------------------------------------------------------------------------------
    def _connect(self, bootstrap: str, security: dict[str, Any]) -> Any:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"raytrader-paper-{self.config.session}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            **security,
        })  # fmt: skip
        try:
            topics = consumer.list_topics(self.topic, timeout=KAFKA_WAIT_S).topics
        except KafkaException as exc:
            consumer.close()
            raise ServiceError(
                f"kafka at {bootstrap} did not answer within {KAFKA_WAIT_S:.0f} s: {exc}"
            ) from None
        meta = topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            consumer.close()
            raise ServiceError(f"kafka at {bootstrap} has no topic {self.topic}")
        assignment = []
        for p in sorted(meta.partitions):
            start = self.resume.offsets.get((self.topic, p))
            if start is None:
                assignment.append(TopicPartition(self.topic, p, -2))  # OFFSET_BEGINNING
            else:
                assignment.append(TopicPartition(self.topic, p, start))
                self.clock.read[(self.topic, p)] = start
        consumer.assign(assignment)
        return consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        closer = getattr(self.source, "close", None)
        if closer is not None:
            closer()

    def stop(self, *_: Any) -> None:
        """Finish the bar in hand, then return from :meth:`run` (SIGTERM, SIGINT)."""
        self._stop = True

    # -- the loop ---------------------------------------------------------------------------------
    def run(
        self,
        *,
        idle_exit_s: float | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> str:
        """Trade until stopped, halted, finished (``end``), or ``idle_exit_s`` without a message;
        returns the session's status."""
        if self.resume.status in ("halted", "finished"):
            return self.resume.status
        if self._consumer is None:
            self._consumer = self._connect(*self._kafka)
        signal.signal(signal.SIGTERM, self.stop)
        idle_since = time.monotonic()
        status = self.resume.status if self.resume.status == "halting" else "running"
        if self.resume.status == "stopped":
            self.ledger.set_status(self.resume.session_id, "running", None)
        while not self._stop:
            messages = self._consumer.consume(num_messages=500, timeout=0.5)
            if messages:
                idle_since = time.monotonic()
            for msg in messages:
                self._accept(msg)
            while (t := self.clock.next_complete()) is not None:
                status = self._process(t)
                idle_since = time.monotonic()  # idle: nothing read and nothing to do
                if on_step is not None:
                    on_step(self.resume.steps)
                if status in ("halted", "finished") or self._stop:
                    return status
            if self.ledger.status_of(self.resume.session_id) == "stopped":  # `paper stop`
                return "stopped"
            if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        return status

    def _accept(self, msg: Any) -> None:
        partition = (msg.topic(), msg.partition())
        self.clock.consumed(partition, msg.offset())
        if msg.error() is not None:
            log.warning("kafka: %s", msg.error())
            return
        try:
            bar = decode(msg.value())
        except MessageError as exc:
            self.metrics.skipped.labels(reason="invalid").inc()
            log.debug("skipped an invalid message at %s: %s", partition, exc.reason)
            return
        if bar.symbol not in self.symbols or bar.timeframe != self.timeframe.name:
            return
        if bar.calendar is not None:
            self.calendars.setdefault(bar.symbol, bar.calendar)
        values = {f: float(getattr(bar, f)) for f in BAR_FIELDS}
        item = Pending(pd.Timestamp(bar.open_time), values, partition, msg.offset())
        why = self.clock.add(bar.symbol, item)
        if why is not None:
            self.metrics.skipped.labels(reason="duplicate").inc()
            log.debug("skipped %s %s: %s", bar.symbol, item.time, why)

    # -- one bar time -----------------------------------------------------------------------------
    def _process(self, t: pd.Timestamp) -> str:
        if self.resume.start_time is None:
            firsts = {s: self.clock.latest[s] for s in self.symbols}
            firsts.update(self.clock.first_times())
            start = max(firsts.values())
            if self.config.start is not None:
                start = max(start, pd.Timestamp(self.config.start))
            self.resume.start_time = start
        bars = self.clock.pop(t)
        for symbol, item in bars.items():
            self._rows[symbol].append((t, item.bar))
        session: dict[str, Any] = {"start_time": self.resume.start_time.to_pydatetime()}
        if t < self.resume.start_time:
            write = BarWrite(
                time=t, bars={s: i.bar for s, i in bars.items()},
                offsets=self.clock.resume_offsets(), session=session,
            )  # fmt: skip
            self.ledger.commit_bar(self.resume.session_id, write)
            return self.resume.status
        return self._step(t, bars, session)

    def _history(self, symbols: list[str]) -> dict[str, pd.DataFrame]:
        """Each symbol's bars up to now (the stored ones and the ones processed since)."""
        out = {}
        for s in symbols:
            rows = self._rows[s]
            if rows:
                fresh = pd.DataFrame(
                    [{"timestamp": t, **bar} for t, bar in rows], columns=["timestamp", *BAR_FIELDS]
                )
                frame = bar_frame(fresh)
                self.history[s] = (
                    frame if s not in self.history else pd.concat([self.history[s], frame])
                )
                rows.clear()
            out[s] = self.history[s]
        return out

    def _simulator(self) -> PortfolioSimulator:
        if self.sim is None:
            calendar = max(
                (self.calendars.get(s, Calendar.EQUITY) for s in self.symbols),
                key=_WIDTH.__getitem__,
            )
            ppy = self.timeframe.periods_per_year(calendar)
            self.resume.periods_per_year = ppy
            self.sim = PortfolioSimulator(
                self.config.sim, ppy, np.asarray(self.config.weights), self.symbols
            )
        return self.sim

    def _step(self, t: pd.Timestamp, bars: dict[str, Pending], session: dict[str, Any]) -> str:
        sim = self._simulator()
        close_time = t + pd.Timedelta(seconds=self.timeframe.seconds)
        k = len(self.symbols)
        prices = {f: np.full(k, np.nan) for f in ("open", "high", "low", "close")}
        for j, s in enumerate(self.symbols):
            if s in bars:
                for f in prices:
                    prices[f][j] = bars[s].bar[f]
        traded = [s for s in self.symbols if s in bars]
        history = self._history(traded)
        halting = self.resume.status == "halting"
        if halting:
            outcomes = {s: Outcome(0.0, "hold", f"halting: {self.resume.reason}") for s in traded}
        else:
            positions = self._fractions(sim)
            outcomes = self.source.decide(close_time, history, positions)
        targets = np.full(k, np.nan)
        for j, s in enumerate(self.symbols):
            outcome = outcomes.get(s)
            if outcome is not None and outcome.target is not None:
                targets[j] = outcome.target
        desired = sim.states[:, K.S_DESIRED].copy()
        equity = sim.step(prices["open"], prices["high"], prices["low"], prices["close"], targets)
        number = self.resume.steps
        status, reason = self._kill_switch(sim, equity, close_time)
        write = BarWrite(
            time=t,
            bars={s: i.bar for s, i in bars.items()},
            offsets=self.clock.resume_offsets(),
            step=self._step_row(sim, number, t, close_time, equity),
            decisions=[self._decision_row(number, s, outcomes[s]) for s in traded if s in outcomes],
            orders=self._order_rows(sim, number, desired),
            fills=self._fill_rows(sim, number),
            positions=self._position_rows(sim, number),
            session={
                **session,
                "status": status, "reason": reason,
                "periods_per_year": self.resume.periods_per_year,
                "last_bar_time": t.to_pydatetime(), "steps": number + 1, "equity": equity,
                "peak_equity": self.resume.peak_equity,
                "day_start_equity": self.resume.day_start_equity, "state": sim.to_bytes(),
            },
        )  # fmt: skip
        self.ledger.commit_bar(self.resume.session_id, write)
        self.resume.steps = number + 1
        self.resume.status, self.resume.reason = status, reason
        self.resume.last_equity, self.resume.last_step_time = equity, t
        self.metrics.observe_step(self, sim, outcomes, write, close_time)
        return status

    def _fractions(self, sim: PortfolioSimulator) -> dict[str, float]:
        equity = sim.equity
        if equity <= 0.0:
            return dict.fromkeys(self.symbols, 0.0)
        marks = sim.states[:, K.S_PREV_CLOSE]
        return {
            s: float(sim.units[j] * marks[j] / equity) if sim.units[j] != 0.0 else 0.0
            for j, s in enumerate(self.symbols)
        }

    def _kill_switch(
        self, sim: PortfolioSimulator, equity: float, close_time: pd.Timestamp
    ) -> tuple[str, str | None]:
        """The session's status after this bar: the kill switch's limits, halting until flat."""
        r = self.resume
        last = r.last_step_time
        if (
            last is None
            or (last + pd.Timedelta(seconds=self.timeframe.seconds)).date() != close_time.date()
        ):
            r.day_start_equity = (
                r.last_equity if r.last_equity is not None else self.config.sim.initial_cash
            )
        r.peak_equity = max(r.peak_equity or self.config.sim.initial_cash, equity)
        if r.status == "halting":
            flat = (
                not (sim.units != 0.0).any() and not (~np.isnan(sim.states[:, K.S_PENDING])).any()
            )
            return ("halted" if flat else "halting"), r.reason
        if sim.bust:
            return "halted", "the account is bust (equity <= 0 after a liquidation)"
        limits = self.config.kill_switch
        drawdown = 1.0 - equity / r.peak_equity
        daily = 1.0 - equity / r.day_start_equity if r.day_start_equity else 0.0
        reason = None
        if limits.max_drawdown is not None and drawdown >= limits.max_drawdown:
            reason = f"kill switch: drawdown {drawdown:.2%} reached max_drawdown {limits.max_drawdown:.2%}"
        elif limits.max_daily_loss is not None and daily >= limits.max_daily_loss:
            reason = (
                f"kill switch: loss since the day's start {daily:.2%} reached max_daily_loss "
                f"{limits.max_daily_loss:.2%}"
            )
        if reason is not None:
            sim.flatten()
            log.warning("paper session %s: %s; flattening", self.config.session, reason)
            return "halting", reason
        end = self.config.end
        if end is not None and close_time - pd.Timedelta(seconds=self.timeframe.seconds) >= end:
            return "finished", None
        return "running", None

    # -- ledger rows ------------------------------------------------------------------------------
    def _step_row(
        self, sim: PortfolioSimulator, number: int, t: pd.Timestamp, close_time: pd.Timestamp,
        equity: float,
    ) -> dict[str, Any]:  # fmt: skip
        marks = sim.states[:, K.S_PREV_CLOSE]
        gross = float(np.nansum(np.abs(sim.units * marks)))
        peak = self.resume.peak_equity or equity  # the kill switch has just updated it
        return {
            "number": number, "time": t.to_pydatetime(), "equity": equity, "cash": sim.cash,
            "drawdown": equity / peak - 1.0 if peak > 0 else 0.0,
            "gross_exposure": gross / equity if equity > 0 else 0.0,
            "lag_s": (pd.Timestamp.now(tz="UTC") - close_time).total_seconds(),
        }  # fmt: skip

    @staticmethod
    def _decision_row(number: int, symbol: str, o: Outcome) -> dict[str, Any]:
        return {
            "number": number, "symbol": symbol, "target": o.target, "action": o.action,
            "reason": o.reason, "model": o.model, "model_version": o.model_version,
            "explanation": o.explanation,
            "feature_time": None if o.feature_time is None else o.feature_time.to_pydatetime(),
            "latency_ms": o.latency_ms,
        }  # fmt: skip

    def _order_rows(
        self, sim: PortfolioSimulator, number: int, before: np.ndarray
    ) -> list[dict[str, Any]]:
        after = sim.states[:, K.S_DESIRED]
        pending = sim.states[:, K.S_PENDING]
        rows = []
        for j, s in enumerate(self.symbols):
            if after[j] != before[j]:
                fraction = None if np.isnan(pending[j]) else float(pending[j])
                rows.append({
                    "number": number, "symbol": s, "previous": float(before[j]),
                    "target": float(after[j]), "fraction": fraction,
                })  # fmt: skip
        return rows

    def _fill_rows(self, sim: PortfolioSimulator, number: int) -> list[dict[str, Any]]:
        return [
            {
                "number": number,
                "seq": i,
                "symbol": self.symbols[int(f[F_COL])],
                "units": float(f[F_UNITS]),
                "price": float(f[F_PRICE]),
                "commission": float(f[F_COMMISSION]),
                "reason": K.REASONS[int(f[F_REASON])],
            }
            for i, f in enumerate(sim.fills)
        ]

    def _position_rows(self, sim: PortfolioSimulator, number: int) -> list[dict[str, Any]]:
        marks = sim.states[:, K.S_PREV_CLOSE]
        return [
            {
                "number": number,
                "symbol": s,
                "units": float(sim.units[j]),
                "price": float(marks[j]),
                "value": float(sim.units[j] * marks[j]),
            }
            for j, s in enumerate(self.symbols)
        ]
