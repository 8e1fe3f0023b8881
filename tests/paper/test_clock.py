"""The bar clock: which bar time a paper session can process, whatever the interleaving."""

from __future__ import annotations

import random

import pandas as pd

from raytrader.paper.clock import BarClock, Pending

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def item(day: int, partition: int, offset: int) -> Pending:
    return Pending(T0 + day * DAY, {"close": float(day)}, ("bars.1d", partition), offset)


def streams() -> dict[str, list[Pending]]:
    """A trades days 0-9; B trades days 2-9 but not 5 (a holiday); C trades days 0-7."""
    a = [item(d, 0, i) for i, d in enumerate(range(10))]
    b = [item(d, 1, i) for i, d in enumerate([2, 3, 4, 6, 7, 8, 9])]
    c = [item(d, 2, i) for i, d in enumerate(range(8))]
    return {"A": a, "B": b, "C": c}


def drain(clock: BarClock) -> list[tuple[pd.Timestamp, list[str]]]:
    out = []
    while (t := clock.next_complete()) is not None:
        out.append((t, sorted(clock.pop(t))))
    return out


def test_any_interleaving_gives_the_same_bar_times_in_order() -> None:
    expected = None
    for seed in range(20):
        rng = random.Random(seed)
        queues = {s: list(items) for s, items in streams().items()}
        clock = BarClock(["A", "B", "C"])
        done = []
        while any(queues.values()):
            symbol = rng.choice([s for s, q in queues.items() if q])
            x = queues[symbol].pop(0)
            clock.consumed(x.partition, x.offset)
            assert clock.add(symbol, x) is None
            done += drain(clock)
        if expected is None:
            expected = done
        assert done == expected
    assert expected is not None
    days = [int((t - T0) / DAY) for t, _ in expected]
    assert days == list(range(8))  # day 8 and 9: C never gets there
    by_day = dict(((t - T0) // DAY, symbols) for t, symbols in expected)
    assert by_day[0] == ["A", "C"]  # B has not started: no bar
    assert by_day[5] == ["A", "C"]  # B's holiday
    assert by_day[6] == ["A", "B", "C"]


def test_duplicates_and_late_bars_are_skipped_with_a_reason() -> None:
    clock = BarClock(["A"])
    assert clock.add("A", item(1, 0, 0)) is None
    assert "not after" in (clock.add("A", item(1, 0, 1)) or "")
    assert "not after" in (clock.add("A", item(0, 0, 2)) or "")
    clock.pop(T0 + DAY)
    assert clock.add("A", item(1, 0, 3)) == "already processed"


def test_a_restart_reads_each_partition_from_its_oldest_unprocessed_bar() -> None:
    clock = BarClock(["A", "B"])
    for symbol, x in (("A", item(0, 0, 10)), ("A", item(1, 0, 11)), ("B", item(0, 1, 4))):
        clock.consumed(x.partition, x.offset)
        clock.add(symbol, x)
    clock.consumed(("bars.1d", 2), 99)  # a partition with nothing of ours on it
    assert drain(clock) == [(T0, ["A", "B"])]
    # A's day-1 bar waits for B: partition 0 is read again from it; the rest from past the end
    assert clock.resume_offsets() == {("bars.1d", 0): 11, ("bars.1d", 1): 5, ("bars.1d", 2): 100}
