"""The reads the experiment API serves: filtered listings in cursor pages, and single rows.

Every listing is keyset-paginated: a page holds at most ``limit`` rows and, unless it is the last,
an opaque ``next_cursor`` (URL-safe base64 of the sort key of its last row, tagged with the
listing and the direction) that the next request passes back as ``cursor``. A row written
between two requests never shifts a page, and no row is seen twice. The sort keys are unique:

==============================  =================================  ============================
listing                         sort key (cursor)                  default order
==============================  =================================  ============================
runs, backtests, optimizations  ``(created_at, id)`` — the         newest first (``desc``)
evaluations                     ``(created_at, id)`` indexes
a run's episodes                ``id``                             oldest first (``asc``)
an episode's steps              ``t``                              ``asc``
trades, operations              ``number``                         ``asc``
an evaluation's rows            ``id``                             ``asc``
an optimization's trials        ``score`` (best first for its      best first, null scores last
                                ``mode``) then ``id``; or ``key``
==============================  =================================  ============================

A cursor that is not one of ours, or belongs to another listing or direction, is a
:class:`BadCursor`; a filter value the store cannot take (a naive time) a :class:`BadParameter`.
Everything here only reads: the caller's session is never committed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, case, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from raytrader.db.models import (
    Backtest,
    Episode,
    Evaluation,
    EvaluationRow,
    Operation,
    Optimization,
    PaperDecision,
    PaperFill,
    PaperPosition,
    PaperSession,
    PaperStep,
    Run,
    Step,
    Trade,
    Trial,
)
from raytrader.db.types import UTC
from raytrader.errors import RaytraderError

#: rows per page unless asked; the most a page may hold (steps: :data:`MAX_STEPS_LIMIT`)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
DEFAULT_STEPS_LIMIT = 1000
MAX_STEPS_LIMIT = 5000
#: the longest cursor taken (ours are well under 200 characters)
MAX_CURSOR_CHARS = 512

Order = Literal["asc", "desc"]
TrialSort = Literal["score", "key"]
M = TypeVar("M")

_INT64 = 2**63 - 1


class QueryError(RaytraderError):
    """A query parameter the store cannot answer; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


class BadCursor(QueryError):
    """A ``cursor`` that is not one this listing handed out."""

    def __init__(self, message: str) -> None:
        super().__init__("cursor", message)


class BadParameter(QueryError):
    """A filter value the store cannot take."""


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a listing: its rows and the cursor of the next page (``None``: the last)."""

    items: list[M]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------- cursors
def _check_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _INT64:
        raise ValueError(f"{value!r} is not a 64-bit integer")
    return value


def _check_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not finite")
    return float(value)


def _check_str(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 400:
        raise ValueError(f"{value!r} is not a key")
    return value


def _check_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


def _key_value(value: Any) -> Any:
    """A sort-key value as JSON (times as ISO 8601 in UTC)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).isoformat()
    return value


def encode_cursor(tag: str, values: Sequence[Any]) -> str:
    """The opaque cursor for the row with sort key ``values`` in the listing ``tag``."""
    doc = json.dumps([tag, [_key_value(v) for v in values]], separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str, kinds: Sequence[Callable[[Any], Any]]) -> tuple[Any, ...]:
    """The sort key in ``cursor``, each value checked by its ``kinds`` entry; a
    :class:`BadCursor` for anything else (another listing's or direction's cursor included)."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursor(f"longer than {MAX_CURSOR_CHARS} characters: not a cursor of this API")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("not a cursor of this API (pass back a next_cursor unchanged)") from None
    if (
        not isinstance(doc, list)
        or len(doc) != 2
        or not isinstance(doc[1], list)
        or len(doc[1]) != len(kinds)
    ):
        raise BadCursor("not a cursor of this API (pass back a next_cursor unchanged)")
    if doc[0] != tag:
        raise BadCursor(
            "the cursor belongs to another listing or sort order: start again without it"
        )
    try:
        return tuple(kind(v) for kind, v in zip(kinds, doc[1], strict=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadCursor(f"not a cursor of this API ({exc})") from None


@dataclass(frozen=True)
class _Keyset:
    """How one listing sorts: its sort-key columns (a unique key, all in one direction), the
    kinds of their values in a cursor, and how to read them off a row."""

    name: str
    columns: tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...]
    kinds: tuple[Callable[[Any], Any], ...]
    of: Callable[[Any], tuple[Any, ...]]


def _paged(
    session: Session,
    stmt: Select[Any],
    keyset: _Keyset,
    *,
    order: Order,
    limit: int,
    cursor: str | None,
) -> Page[Any]:
    if order not in ("asc", "desc"):
        raise BadParameter("order", f"{order!r} is neither asc nor desc")
    if limit < 1:
        raise BadParameter("limit", f"{limit} is not a positive number of rows")
    tag = f"{keyset.name}:{order}"
    cols = keyset.columns
    if cursor is not None:
        after = decode_cursor(cursor, tag, keyset.kinds)
        if len(cols) == 1:
            cond = cols[0] > after[0] if order == "asc" else cols[0] < after[0]
        else:  # a row-value comparison, so that the (created_at, id) index serves it
            row, at = tuple_(*cols), tuple_(*after)
            cond = row > at if order == "asc" else row < at
        stmt = stmt.where(cond)
    stmt = stmt.order_by(*(c.asc() if order == "asc" else c.desc() for c in cols))
    rows = list(session.scalars(stmt.limit(limit + 1)))
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor(tag, keyset.of(rows[-1])))


def _newest(model: Any, name: str) -> _Keyset:
    return _Keyset(
        name, (model.created_at, model.id), (_check_time, _check_int),
        lambda r: (r.created_at, r.id),
    )  # fmt: skip


def _utc(param: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BadParameter(param, f"{value.isoformat()} has no time zone (the store keeps UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise BadParameter(param, f"{value.isoformat()} is out of range") from None


# ------------------------------------------------------------------------------------------- runs
def list_runs(
    session: Session,
    *,
    kind: str | None = None,
    status: str | None = None,
    symbol: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    order: Order = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Run]:
    """Runs, newest first, filtered by kind, status, symbol and creation time (``created_after``
    inclusive, ``created_before`` exclusive)."""
    stmt = select(Run)
    if kind is not None:
        stmt = stmt.where(Run.kind == kind)
    if status is not None:
        stmt = stmt.where(Run.status == status)
    if symbol is not None:
        stmt = stmt.where(Run.symbol == symbol)
    after = _utc("created_after", created_after)
    before = _utc("created_before", created_before)
    if after is not None:
        stmt = stmt.where(Run.created_at >= after)
    if before is not None:
        stmt = stmt.where(Run.created_at < before)
    return _paged(session, stmt, _newest(Run, "runs"), order=order, limit=limit, cursor=cursor)


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


_EPISODES = _Keyset("episodes", (Episode.id,), (_check_int,), lambda r: (r.id,))


def list_episodes(
    session: Session,
    run_id: int,
    *,
    split: str | None = None,
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Episode]:
    """A run's episodes in the order they were written (``order="desc"``: latest first)."""
    stmt = select(Episode).where(Episode.run_id == run_id)
    if split is not None:
        stmt = stmt.where(Episode.split == split)
    return _paged(session, stmt, _EPISODES, order=order, limit=limit, cursor=cursor)


def get_episode(session: Session, episode_id: int) -> Episode | None:
    return session.get(Episode, episode_id)


_STEPS = _Keyset("steps", (Step.t,), (_check_int,), lambda r: (r.t,))


def list_steps(
    session: Session,
    episode_id: int,
    *,
    order: Order = "asc",
    limit: int = DEFAULT_STEPS_LIMIT,
    cursor: str | None = None,
) -> Page[Step]:
    """An episode's (sampled) steps by ``t``."""
    stmt = select(Step).where(Step.episode_id == episode_id)
    return _paged(session, stmt, _STEPS, order=order, limit=limit, cursor=cursor)


_TRADES = _Keyset("trades", (Trade.number,), (_check_int,), lambda r: (r.number,))
_OPERATIONS = _Keyset("operations", (Operation.number,), (_check_int,), lambda r: (r.number,))


def _owner(model: Any, backtest_id: int | None, episode_id: int | None) -> ColumnElement[bool]:
    if (backtest_id is None) == (episode_id is None):
        raise ValueError("pass exactly one of backtest_id and episode_id")
    if backtest_id is not None:
        return model.backtest_id == backtest_id  # type: ignore[no-any-return]
    return model.episode_id == episode_id  # type: ignore[no-any-return]


def list_trades(
    session: Session,
    *,
    backtest_id: int | None = None,
    episode_id: int | None = None,
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Trade]:
    """A backtest's or an episode's round trips by number (the order they were opened)."""
    stmt = select(Trade).where(_owner(Trade, backtest_id, episode_id))
    return _paged(session, stmt, _TRADES, order=order, limit=limit, cursor=cursor)


def list_operations(
    session: Session,
    *,
    backtest_id: int | None = None,
    episode_id: int | None = None,
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Operation]:
    """A backtest's or an episode's entries and exits by number (trade ``i``: ``2i`` and
    ``2i + 1``)."""
    stmt = select(Operation).where(_owner(Operation, backtest_id, episode_id))
    return _paged(session, stmt, _OPERATIONS, order=order, limit=limit, cursor=cursor)


# -------------------------------------------------------------------------------------- backtests
def list_backtests(
    session: Session,
    *,
    strategy: str | None = None,
    symbol: str | None = None,
    run_id: int | None = None,
    order: Order = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Backtest]:
    """Backtests, newest first, by strategy, symbol and the run that wrote them."""
    stmt = select(Backtest)
    if strategy is not None:
        stmt = stmt.where(Backtest.strategy == strategy)
    if symbol is not None:
        stmt = stmt.where(Backtest.symbol == symbol)
    if run_id is not None:
        stmt = stmt.where(Backtest.run_id == run_id)
    keyset = _newest(Backtest, "backtests")
    return _paged(session, stmt, keyset, order=order, limit=limit, cursor=cursor)


def get_backtest(session: Session, backtest_id: int) -> Backtest | None:
    return session.get(Backtest, backtest_id)


# ---------------------------------------------------------------------------------- optimizations
def list_optimizations(
    session: Session,
    *,
    target: str | None = None,
    status: str | None = None,
    order: Order = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Optimization]:
    """Searches, newest first, by target and status."""
    stmt = select(Optimization)
    if target is not None:
        stmt = stmt.where(Optimization.target == target)
    if status is not None:
        stmt = stmt.where(Optimization.status == status)
    keyset = _newest(Optimization, "optimizations")
    return _paged(session, stmt, keyset, order=order, limit=limit, cursor=cursor)


def get_optimization(session: Session, optimization_id: int) -> Optimization | None:
    return session.get(Optimization, optimization_id)


def best_order(mode: str) -> Order:
    """The score order that puts an optimization's best trial first (``mode`` max or min)."""
    return "asc" if mode == "min" else "desc"


def list_trials(
    session: Session,
    optimization: Optimization,
    *,
    sort: TrialSort = "score",
    order: Order | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Trial]:
    """A search's trials: by score, best first for its mode unless ``order`` says otherwise,
    trials without a score last (ties by id); or by key (``asc`` unless ``order``)."""
    stmt = select(Trial).where(Trial.optimization_id == optimization.id)
    if sort == "key":
        keyset = _Keyset("trials:key", (Trial.key,), (_check_str,), lambda r: (r.key,))
        return _paged(session, stmt, keyset, order=order or "asc", limit=limit, cursor=cursor)
    if sort != "score":
        raise BadParameter("sort", f"{sort!r} is neither score nor key")
    direction = order or best_order(optimization.mode)
    if direction not in ("asc", "desc"):
        raise BadParameter("order", f"{direction!r} is neither asc nor desc")
    # one ascending key: (no score?, score signed so that ascending is the order asked, id)
    missing = case((Trial.score.is_(None), 1), else_=0)
    score = func.coalesce(Trial.score, 0.0)
    signed = score if direction == "asc" else -score

    def of(r: Trial) -> tuple[Any, ...]:
        if r.score is None:
            return (1, 0.0, r.id)
        return (0, r.score if direction == "asc" else -r.score, r.id)

    keyset = _Keyset(
        f"trials:score:{direction}", (missing, signed, Trial.id),
        (_check_int, _check_float, _check_int), of,
    )  # fmt: skip
    return _paged(session, stmt, keyset, order="asc", limit=limit, cursor=cursor)


# ------------------------------------------------------------------------------------ evaluations
def list_evaluations(
    session: Session,
    *,
    kind: str | None = None,
    order: Order = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Evaluation]:
    """Evaluations, newest first, by kind."""
    stmt = select(Evaluation)
    if kind is not None:
        stmt = stmt.where(Evaluation.kind == kind)
    keyset = _newest(Evaluation, "evaluations")
    return _paged(session, stmt, keyset, order=order, limit=limit, cursor=cursor)


def get_evaluation(session: Session, evaluation_id: int) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id)


_EVALUATION_ROWS = _Keyset("evaluation_rows", (EvaluationRow.id,), (_check_int,), lambda r: (r.id,))


def list_evaluation_rows(
    session: Session,
    evaluation_id: int,
    *,
    dataset: str | None = None,
    role: str | None = None,
    order: Order = "asc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[EvaluationRow]:
    """An evaluation's rows (one per dataset and candidate) in the order written."""
    stmt = select(EvaluationRow).where(EvaluationRow.evaluation_id == evaluation_id)
    if dataset is not None:
        stmt = stmt.where(EvaluationRow.dataset == dataset)
    if role is not None:
        stmt = stmt.where(EvaluationRow.role == role)
    return _paged(session, stmt, _EVALUATION_ROWS, order=order, limit=limit, cursor=cursor)


__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_STEPS_LIMIT",
    "MAX_LIMIT",
    "MAX_STEPS_LIMIT",
    "BadCursor",
    "BadParameter",
    "Order",
    "Page",
    "QueryError",
    "TrialSort",
    "best_order",
    "decode_cursor",
    "encode_cursor",
    "get_backtest",
    "get_episode",
    "get_evaluation",
    "get_optimization",
    "get_run",
    "list_backtests",
    "list_episodes",
    "list_evaluation_rows",
    "list_evaluations",
    "list_operations",
    "list_optimizations",
    "list_runs",
    "list_steps",
    "list_trades",
    "list_trials",
]


# --------------------------------------------------------------------------------- paper trading
def list_paper_sessions(
    session: Session,
    *,
    status: str | None = None,
    order: Order = "desc",
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[PaperSession]:
    """Paper sessions, newest first, by status."""
    stmt = select(PaperSession)
    if status is not None:
        stmt = stmt.where(PaperSession.status == status)
    keyset = _newest(PaperSession, "paper_sessions")
    return _paged(session, stmt, keyset, order=order, limit=limit, cursor=cursor)


def get_paper_session(session: Session, session_id: int) -> PaperSession | None:
    return session.get(PaperSession, session_id)


def paper_positions(session: Session, session_id: int, number: int) -> list[PaperPosition]:
    """Every symbol's position at step ``number``."""
    stmt = select(PaperPosition).where(
        PaperPosition.session_id == session_id, PaperPosition.number == number
    )
    return list(session.scalars(stmt.order_by(PaperPosition.symbol)))


_PAPER_STEPS = _Keyset("paper_steps", (PaperStep.number,), (_check_int,), lambda r: (r.number,))
_PAPER_DECISIONS = _Keyset(
    "paper_decisions", (PaperDecision.number, PaperDecision.symbol), (_check_int, _check_str),
    lambda r: (r.number, r.symbol),
)  # fmt: skip
_PAPER_FILLS = _Keyset(
    "paper_fills", (PaperFill.number, PaperFill.seq), (_check_int, _check_int),
    lambda r: (r.number, r.seq),
)  # fmt: skip


def list_paper_steps(
    session: Session, session_id: int, *, order: Order = "asc", limit: int = DEFAULT_STEPS_LIMIT,
    cursor: str | None = None,
) -> Page[PaperStep]:  # fmt: skip
    """A session's account at each close, by step."""
    stmt = select(PaperStep).where(PaperStep.session_id == session_id)
    return _paged(session, stmt, _PAPER_STEPS, order=order, limit=limit, cursor=cursor)


def list_paper_decisions(
    session: Session, session_id: int, *, symbol: str | None = None, order: Order = "desc",
    limit: int = DEFAULT_LIMIT, cursor: str | None = None,
) -> Page[PaperDecision]:  # fmt: skip
    """A session's decisions, newest first (with their explanations and reasons)."""
    stmt = select(PaperDecision).where(PaperDecision.session_id == session_id)
    if symbol is not None:
        stmt = stmt.where(PaperDecision.symbol == symbol)
    return _paged(session, stmt, _PAPER_DECISIONS, order=order, limit=limit, cursor=cursor)


def list_paper_fills(
    session: Session, session_id: int, *, order: Order = "desc", limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[PaperFill]:  # fmt: skip
    """A session's executions, newest first."""
    stmt = select(PaperFill).where(PaperFill.session_id == session_id)
    return _paged(session, stmt, _PAPER_FILLS, order=order, limit=limit, cursor=cursor)
