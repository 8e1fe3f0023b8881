"""The experiment API's reads (raytrader.db.queries): cursors, keyset order with ties, errors."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from raytrader.db import queries as q
from raytrader.db.engine import make_engine, upgrade
from raytrader.db.models import Run
from raytrader.db.store import ExperimentStore, OptimizationRecord, RunSpec, TrialRecord
from raytrader.errors import RaytraderError

UTC = dt.UTC
SAME = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path}/q.db")
    upgrade(eng)
    yield eng
    eng.dispose()


def _runs(engine: Engine, n: int, kind: str = "rl") -> list[int]:
    store = ExperimentStore(engine)
    return [store.start_run(RunSpec(key=f"{kind}-{i}", kind=kind, name=str(i))) for i in range(n)]


def _walk(fetch: Any, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    cursor = None
    while True:
        page = fetch(cursor=cursor, **kwargs)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def test_cursor_round_trip() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    cursor = q.encode_cursor("runs:desc", [when, 42])
    assert "=" not in cursor
    assert base64.urlsafe_b64decode(cursor + "==")  # URL-safe, unpadded
    decoded = q.decode_cursor(cursor, "runs:desc", (q._check_time, q._check_int))
    assert decoded == (when.astimezone(UTC), 42)
    assert decoded[0].tzinfo is not None
    score = q.encode_cursor("trials", [0, -0.1 + 0.2, 7])
    assert q.decode_cursor(score, "trials", (q._check_int, q._check_float, q._check_int)) == (
        0,
        -0.1 + 0.2,  # floats come back to the bit
        7,
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "%%%",
        "x" * 600,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["runs:desc", ["2024-01-01T00:00:00", 1]]').decode(),  # naive
        base64.urlsafe_b64encode(b'["runs:desc", ["2024-01-01T00:00:00+00:00", true]]').decode(),
        base64.urlsafe_b64encode(b'["runs:desc", ["2024-01-01T00:00:00+00:00", 1e400]]').decode(),
        base64.urlsafe_b64encode(
            b'["runs:desc", ["2024-01-01T00:00:00+00:00", 9223372036854775808]]'
        ).decode(),
        base64.urlsafe_b64encode(b'["runs:desc", ["2024-01-01T00:00:00+00:00"]]').decode(),
        base64.urlsafe_b64encode(b'["runs:desc", [3, 1]]').decode(),
        q.encode_cursor("runs:asc", [SAME, 1]),  # the other direction
        q.encode_cursor("backtests:desc", [SAME, 1]),  # another listing
    ],
)
def test_bad_cursors(cursor: str) -> None:
    with pytest.raises(q.BadCursor) as info:
        q.decode_cursor(cursor, "runs:desc", (q._check_time, q._check_int))
    assert isinstance(info.value, RaytraderError)
    assert info.value.param == "cursor"
    assert str(info.value).startswith("cursor: ")


def test_ties_on_created_at_are_broken_by_id(engine: Engine) -> None:
    ids = _runs(engine, 7)
    with Session(engine) as s, s.begin():  # every run at the same instant
        s.execute(update(Run).values(created_at=SAME))
    with Session(engine) as s:
        for limit in (1, 2, 3, 7, 8):
            newest = _walk(lambda **kw: q.list_runs(s, limit=limit, **kw))  # noqa: B023 - used now
            assert [r.id for r in newest] == sorted(ids, reverse=True)
            oldest = _walk(lambda **kw: q.list_runs(s, limit=limit, order="asc", **kw))  # noqa: B023
            assert [r.id for r in oldest] == sorted(ids)
        page = q.list_runs(s, limit=3)
        assert page.next_cursor is not None
        assert q.decode_cursor(page.next_cursor, "runs:desc", (q._check_time, q._check_int)) == (
            SAME,
            page.items[-1].id,
        )
        assert q.list_runs(s, limit=7).next_cursor is None


def test_rows_added_between_pages_do_not_shift_them(engine: Engine) -> None:
    ids = _runs(engine, 4)
    with Session(engine) as s:
        first = q.list_runs(s, limit=2)
        assert [r.id for r in first.items] == ids[:1:-1]
        _runs(engine, 2, kind="late")  # newer than everything listed so far
        rest = q.list_runs(s, limit=10, cursor=first.next_cursor)
        assert [r.id for r in rest.items] == ids[1::-1]


def test_filters_and_times(engine: Engine) -> None:
    rl = _runs(engine, 3)
    sup = _runs(engine, 2, kind="supervised")
    with Session(engine) as s, s.begin():
        for i, run_id in enumerate(rl + sup):
            s.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(created_at=SAME + dt.timedelta(hours=i), symbol="GOOG" if i % 2 else None)
            )
    with Session(engine) as s:
        assert [r.id for r in q.list_runs(s, kind="supervised").items] == sup[::-1]
        assert {r.id for r in q.list_runs(s, symbol="GOOG").items} == {rl[1], sup[0]}
        assert q.list_runs(s, status="finished").items == []
        cut = SAME + dt.timedelta(hours=2)
        later = q.list_runs(s, created_after=cut.astimezone(dt.timezone(dt.timedelta(hours=-5))))
        assert [r.id for r in later.items] == [sup[1], sup[0], rl[2]]
        earlier = q.list_runs(s, created_before=cut, order="asc")
        assert [r.id for r in earlier.items] == rl[:2]
        with pytest.raises(q.BadParameter, match="created_after"):
            q.list_runs(s, created_after=dt.datetime(2024, 1, 1))  # noqa: DTZ001 - naive on purpose
        with pytest.raises(q.BadParameter, match="order"):
            q.list_runs(s, order="up")  # type: ignore[arg-type]


def test_trials_best_first_for_each_mode_with_null_scores_last(engine: Engine) -> None:
    store = ExperimentStore(engine)
    trials = [
        TrialRecord(key, {}, score, "finished")
        for key, score in (
            ("a", 0.3),
            ("b", None),
            ("c", 2.0),
            ("d", -1.0),
            ("e", None),
            ("f", 0.3),
        )
    ]
    ids = {}
    for mode in ("max", "min"):
        ids[mode] = store.record_optimization(
            OptimizationRecord(
                key=f"opt-{mode}", name=mode, target="rules", metric="sharpe", mode=mode,
                config={}, trials=trials,
            )
        )  # fmt: skip
    with Session(engine) as s:
        for mode, expected in (("max", "cafdbe"), ("min", "dafcbe")):
            opt = q.get_optimization(s, ids[mode])
            assert opt is not None
            for limit in (1, 2, 6):
                got = _walk(lambda **kw: q.list_trials(s, opt, limit=limit, **kw))  # noqa: B023
                assert "".join(t.key for t in got) == expected
        opt = q.get_optimization(s, ids["max"])
        assert opt is not None
        asc = _walk(lambda **kw: q.list_trials(s, opt, order="asc", limit=2, **kw))
        assert "".join(t.key for t in asc) == "dafcbe"
        by_key = _walk(lambda **kw: q.list_trials(s, opt, sort="key", limit=4, **kw))
        assert "".join(t.key for t in by_key) == "abcdef"
        best = q.list_trials(s, opt, limit=1)
        with pytest.raises(q.BadCursor):  # a best-first cursor is no cursor for sort=key
            q.list_trials(s, opt, sort="key", cursor=best.next_cursor)
