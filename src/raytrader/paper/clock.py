"""Which bar time a paper session can process next.

Bars of several symbols arrive on Kafka in any interleaving (each symbol in order: its key keeps it
on one partition). A bar time ``t`` is **complete** once every symbol of the universe has sent a bar
opening at or after ``t``: a symbol whose next bar opens later has no bar at ``t`` (its market was
closed). Times are processed oldest first, so the result does not depend on how the symbols'
messages interleaved — a replay gives the portfolio backtest's bars, bar for bar.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Pending:
    time: pd.Timestamp
    bar: dict[str, float]
    partition: tuple[str, int]
    offset: int


@dataclass
class BarClock:
    symbols: list[str]
    #: the last bar time processed (bars at or before it are duplicates)
    done: pd.Timestamp | None = None
    #: each symbol's newest bar time seen (processed or pending)
    latest: dict[str, pd.Timestamp] = field(default_factory=dict)
    pending: dict[str, deque[Pending]] = field(default_factory=dict)
    #: the offset after the last message read from each partition
    read: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.symbols:
            self.pending.setdefault(s, deque())

    def consumed(self, partition: tuple[str, int], offset: int) -> None:
        """A message was read (whatever became of it)."""
        self.read[partition] = max(self.read.get(partition, 0), offset + 1)

    def add(self, symbol: str, item: Pending) -> str | None:
        """Queue a bar; returns why it was skipped (a duplicate, out of order), else None."""
        if self.done is not None and item.time <= self.done:
            return "already processed"
        newest = self.latest.get(symbol)
        if newest is not None and item.time <= newest:
            return f"not after the symbol's last bar ({newest.isoformat()})"
        self.latest[symbol] = item.time
        self.pending[symbol].append(item)
        return None

    def first_times(self) -> dict[str, pd.Timestamp]:
        return {s: self.pending[s][0].time for s in self.symbols if self.pending[s]}

    def next_complete(self) -> pd.Timestamp | None:
        """The oldest pending bar time every symbol has reached, if any."""
        heads = [q[0].time for q in self.pending.values() if q]
        if not heads or len(self.latest) < len(self.symbols):
            return None
        t = min(heads)
        return t if all(self.latest[s] >= t for s in self.symbols) else None

    def pop(self, t: pd.Timestamp) -> dict[str, Pending]:
        """The bars at ``t`` (symbols without one are absent), now processed."""
        out = {}
        for s in self.symbols:
            q = self.pending[s]
            if q and q[0].time == t:
                out[s] = q.popleft()
        self.done = t
        return out

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        """Where a restarted trader reads each partition from: its oldest bar not processed, or
        past everything read."""
        offsets = dict(self.read)
        for q in self.pending.values():
            for item in q:
                offsets[item.partition] = min(offsets.get(item.partition, item.offset), item.offset)
        return offsets
