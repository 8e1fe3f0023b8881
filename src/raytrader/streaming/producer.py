"""Kafka producers: replay stored/bundled bars, or poll an exchange for closed candles.

Both use one idempotent producer (``enable.idempotence=true``, ``acks=all``), key messages by symbol
and validate every message against :mod:`raytrader.streaming.messages` before sending.

Replay pacing (``speed``): ``"max"`` sends as fast as the broker accepts; ``"<k>x"`` compresses
market time k-fold (a 1m bar every 60/k s; ``500x`` of 1d bars is one bar per 172.8 s);
``"<n>/s"`` sends n bars per second whatever the timeframe.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from raytrader.data.bars import Bars
from raytrader.errors import ConfigError, DataSourceError
from raytrader.streaming.messages import BarMessage, encode, topic_for

_SPEED_RE = re.compile(r"^(?:(max)|(\d+(?:\.\d+)?)x|(\d+(?:\.\d+)?)/s)$")


def parse_speed(speed: str, bar_seconds: float) -> float:
    """Seconds to wait between two messages for ``speed`` (0 = as fast as possible)."""
    m = _SPEED_RE.match(speed.strip().lower())
    if not m:
        raise ConfigError(
            f"invalid --speed {speed!r}: use max, <k>x (e.g. 500x) or <n>/s (e.g. 1000/s)"
        )
    if m.group(1):
        return 0.0
    if m.group(2):
        k = float(m.group(2))
        if k <= 0:
            raise ConfigError("--speed multiplier must be > 0")
        return bar_seconds / k
    rate = float(m.group(3))
    if rate <= 0:
        raise ConfigError("--speed rate must be > 0")
    return 1.0 / rate


def bar_messages(bars: Bars, source: str) -> Iterator[BarMessage]:
    """One validated message per bar, oldest first."""
    values = bars.frame.to_numpy(dtype=np.float64)
    for ts, (o, h, lo, c, v) in zip(bars.index, values, strict=True):
        yield BarMessage(
            symbol=bars.symbol,
            timeframe=bars.timeframe.name,
            open_time=ts.to_pydatetime(),
            open=float(o),
            high=float(h),
            low=float(lo),
            close=float(c),
            volume=float(v),
            source=source,
            calendar=bars.calendar,
        )


def interleave(streams: list[Iterator[BarMessage]]) -> Iterator[BarMessage]:
    """Merge several symbols' streams by open time (ties: the order given)."""
    heads: list[tuple[BarMessage, int]] = []
    for i, s in enumerate(streams):
        first = next(s, None)
        if first is not None:
            heads.append((first, i))
    while heads:
        k = min(range(len(heads)), key=lambda j: (heads[j][0].open_time, heads[j][1]))
        msg, i = heads[k]
        yield msg
        nxt = next(streams[i], None)
        if nxt is None:
            heads.pop(k)
        else:
            heads[k] = (nxt, i)


class BarProducer:
    """An idempotent Kafka producer of bar messages."""

    def __init__(self, bootstrap: str, *, extra: dict[str, Any] | None = None) -> None:
        """``extra``: more librdkafka settings, e.g. the security of
        :meth:`raytrader.settings.KafkaSettings.security_config`."""
        from confluent_kafka import Producer

        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": 30_000,
        }
        conf.update(extra or {})
        self._producer = Producer(conf)
        self.sent = 0
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, msg: BarMessage) -> None:
        payload = encode(msg)
        while True:
            try:
                self._producer.produce(
                    topic_for(msg.timeframe),
                    key=msg.symbol.encode(),
                    value=payload,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._producer.poll(0)
        self.sent += 1

    def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Send bytes as they are (tests use it for malformed input; the DLQ for rejects)."""
        self._producer.produce(
            topic, key=key, value=value, headers=headers, on_delivery=self._on_delivery
        )
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        if left or self._errors:
            raise DataSourceError(
                f"kafka delivery failed: {left} message(s) undelivered; {'; '.join(self._errors[:5])}"
            )

    def replay(
        self,
        messages: Iterable[BarMessage],
        *,
        interval_s: float = 0.0,
        on_progress: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Send ``messages`` paced ``interval_s`` apart; returns how many were sent."""
        n = 0
        next_at = time.monotonic()
        for msg in messages:
            if interval_s > 0:
                wait = next_at - time.monotonic()
                if wait > 0:
                    sleep(wait)
                next_at += interval_s
            self.send(msg)
            n += 1
            if on_progress is not None and n % 1000 == 0:
                on_progress(n)
        self.flush()
        return n
