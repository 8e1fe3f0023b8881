"""A paper session's ledger in the experiment store's database (:mod:`raytrader.db.models`).

Everything one bar changes — the bars consumed, the account's step, decisions, orders, fills,
positions, the simulator's state and the Kafka offsets to read next — is written in **one
transaction** (:meth:`Ledger.commit_bar`). A trader killed at any point restarts from the last
committed bar: its bars, its state and its offsets, so no bar is lost or applied twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import delete, select

from raytrader.db.models import (
    PaperBar,
    PaperDecision,
    PaperFill,
    PaperOffset,
    PaperOrder,
    PaperPosition,
    PaperSession,
    PaperStep,
)
from raytrader.db.store import ExperimentStore, code_version
from raytrader.db.types import utcnow
from raytrader.errors import ConfigError
from raytrader.paper.config import PaperConfig

BAR_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass
class Resume:
    """Where a session stands at its last committed bar."""

    session_id: int
    status: str
    reason: str | None
    periods_per_year: float | None
    start_time: pd.Timestamp | None
    steps: int
    peak_equity: float | None
    day_start_equity: float | None
    last_equity: float | None
    last_step_time: pd.Timestamp | None
    state: bytes | None
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: each symbol's bars so far, oldest first (open time index, ``BAR_FIELDS`` columns)
    bars: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class BarWrite:
    """What one processed bar time adds to the ledger (``step`` is None before the session's
    start: the bars are history only)."""

    time: pd.Timestamp
    bars: dict[str, dict[str, float]]
    offsets: dict[tuple[str, int], int]
    step: dict[str, Any] | None = None
    decisions: Sequence[dict[str, Any]] = ()
    orders: Sequence[dict[str, Any]] = ()
    fills: Sequence[dict[str, Any]] = ()
    positions: Sequence[dict[str, Any]] = ()
    session: dict[str, Any] = field(default_factory=dict)


class Ledger:
    def __init__(self, store: ExperimentStore) -> None:
        self.store = store

    def open(self, config: PaperConfig) -> Resume:
        """The session named ``config.session``: created, or resumed when it exists with the same
        config (another config under the same name is refused: sessions are not edited)."""
        document = config.model_dump(mode="json")
        with self.store.session() as s:
            row = s.scalars(
                select(PaperSession).where(PaperSession.name == config.session)
            ).one_or_none()
            if row is None:
                row = PaperSession(
                    name=config.session, config=document, status="running",
                    code_version=code_version(), steps=0,
                )  # fmt: skip
                s.add(row)
                s.flush()
            elif row.config != document:
                raise ConfigError(
                    f"paper session {config.session!r} exists with another config: a session's "
                    "config does not change (name a new session, or `raytrader paper delete` it)"
                )
            resume = Resume(
                session_id=int(row.id), status=row.status, reason=row.reason,
                periods_per_year=row.periods_per_year,
                start_time=_ts(row.start_time), steps=row.steps, peak_equity=row.peak_equity,
                day_start_equity=row.day_start_equity, last_equity=row.equity,
                last_step_time=_ts(row.last_bar_time), state=row.state,
            )  # fmt: skip
            for o in s.scalars(select(PaperOffset).where(PaperOffset.session_id == row.id)):
                resume.offsets[(o.topic, o.partition)] = int(o.next_offset)
            bars = s.execute(
                select(
                    PaperBar.symbol, PaperBar.open_time, *(getattr(PaperBar, f) for f in BAR_FIELDS)
                )
                .where(PaperBar.session_id == row.id)
                .order_by(PaperBar.symbol, PaperBar.open_time)
            ).all()
        frame = pd.DataFrame(bars, columns=["symbol", "timestamp", *BAR_FIELDS])
        for symbol, rows in frame.groupby("symbol", sort=False):
            resume.bars[str(symbol)] = bar_frame(rows)
        return resume

    def commit_bar(self, session_id: int, write: BarWrite) -> None:
        """Everything ``write`` holds, in one transaction."""
        owner = {"session_id": session_id}
        with self.store.session() as s:
            s.add_all(
                PaperBar(**owner, symbol=symbol, open_time=write.time.to_pydatetime(), **bar)
                for symbol, bar in write.bars.items()
            )
            if write.step is not None:
                s.add(PaperStep(**owner, **write.step))
                s.add_all(PaperDecision(**owner, **d) for d in write.decisions)
                s.add_all(PaperOrder(**owner, **o) for o in write.orders)
                s.add_all(PaperFill(**owner, **f) for f in write.fills)
                s.add_all(PaperPosition(**owner, **p) for p in write.positions)
            for (topic, partition), offset in write.offsets.items():
                found = s.get(PaperOffset, (session_id, topic, partition))
                if found is None:
                    s.add(
                        PaperOffset(**owner, topic=topic, partition=partition, next_offset=offset)
                    )
                else:
                    found.next_offset = offset
            row = s.get(PaperSession, session_id)
            assert row is not None  # noqa: S101 - opened by this trader, deleted only by `paper delete`
            for key, value in write.session.items():
                if key == "status" and row.status == "stopped" and value == "running":
                    continue  # `paper stop` asked the trader to stop: it will, after this bar
                setattr(row, key, value)
            row.updated_at = utcnow()

    def set_status(self, session_id: int, status: str, reason: str | None) -> None:
        with self.store.session() as s:
            row = s.get(PaperSession, session_id)
            if row is not None:
                row.status, row.reason, row.updated_at = status, reason, utcnow()

    def status_of(self, session_id: int) -> str | None:
        with self.store.session() as s:
            row = s.get(PaperSession, session_id)
            return None if row is None else row.status

    def delete(self, name: str) -> bool:
        with self.store.session() as s:
            found = s.execute(delete(PaperSession).where(PaperSession.name == name))
            return bool(found.rowcount)  # type: ignore[attr-defined] # a CursorResult


def bar_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Bars as strategies read them: an aware-UTC ``timestamp`` index, float64 ``BAR_FIELDS``."""
    index = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"], utc=True), name="timestamp").as_unit(
        "ns"
    )
    return pd.DataFrame({f: rows[f].to_numpy(dtype="float64") for f in BAR_FIELDS}, index=index)


def _ts(value: dt.datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")


def open_ledger(url: str | None = None) -> Ledger:
    """The ledger in the configured store (``RAYTRADER_DB_URL``; migrated first in local mode)."""
    return Ledger(ExperimentStore.open(url))  # checked to be at the code's revision
