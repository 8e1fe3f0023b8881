"""The bars contract: every rule, the error's content, and repair's report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.contract import OHLCV
from raytrader.data.bars import Bars, make_frame, validate
from raytrader.errors import DataValidationError


def frame(n: int = 5, **overrides: list[float]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    base = np.arange(1.0, n + 1.0) + 100.0
    cols = {
        "open": base,
        "high": base + 1.0,
        "low": base - 1.0,
        "close": base + 0.5,
        "volume": np.full(n, 10.0),
    }
    for k, v in overrides.items():
        cols[k] = np.asarray(v, dtype=np.float64)
    return make_frame(idx, cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"])


def rule_of(df: pd.DataFrame) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate(df, symbol="TEST", source="file.csv")
    return info.value


def test_valid_frame_builds_bars_with_metadata() -> None:
    bars = Bars.from_frame(frame(), symbol="TEST", timeframe="1h")
    assert len(bars) == 5
    assert bars.timeframe.name == "1h"
    assert tuple(bars.frame.columns) == OHLCV
    assert bars.frame.attrs == {"symbol": "TEST", "timeframe": "1h"}


def test_high_below_close_names_symbol_rule_source_and_row() -> None:
    err = rule_of(frame(high=[102.0, 103.0, 100.0, 105.0, 106.0]))
    assert err.rule == "high_ge_open_close"
    assert err.symbol == "TEST"
    assert err.count == 1
    msg = str(err)
    assert "TEST in file.csv" in msg
    assert "row 2 at 2024-01-01T02:00:00+00:00" in msg
    assert "high=100.0" in msg


def test_error_shows_at_most_five_rows_and_the_count() -> None:
    err = rule_of(frame(n=12, volume=[-1.0] * 12))
    assert err.rule == "volume_nonnegative"
    assert err.count == 12
    assert len(err.rows) == 5
    assert "(and 7 more)" in str(err)


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda d: d.tz_convert(None), "index_utc"),
        (lambda d: d.tz_convert("Europe/Berlin"), "index_utc"),
        (lambda d: d.reset_index(drop=True), "index_type"),
        (lambda d: d.drop(columns="volume"), "columns"),
        (lambda d: d.assign(extra=1.0), "columns"),
        (lambda d: d.astype({"volume": "int64"}), "dtype"),
        (lambda d: d.iloc[[0, 1, 1, 2]], "index_unique"),
        (lambda d: d.iloc[[0, 2, 1]], "index_increasing"),
        (lambda d: d.iloc[:0], "non_empty"),
    ],
)
def test_each_structural_rule_is_named(mutate, rule: str) -> None:
    assert rule_of(mutate(frame())).rule == rule


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", np.nan, "finite"),
        ("volume", np.inf, "finite"),
        ("open", 0.0, "positive_prices"),
        ("low", -1.0, "positive_prices"),
        ("low", 200.0, "low_le_open_close"),
        ("volume", -5.0, "volume_nonnegative"),
    ],
)
def test_each_value_rule_is_named(column: str, value: float, rule: str) -> None:
    df = frame()
    df.iloc[3, df.columns.get_loc(column)] = value
    err = rule_of(df)
    assert err.rule == rule
    assert "row 3" in str(err)


def test_repair_sorts_and_drops_duplicates_and_reports_exactly() -> None:
    df = frame()
    messy = pd.concat([df.iloc[[3]], df, df.iloc[[1]].assign(close=101.9)])
    bars = Bars.from_frame(messy, symbol="TEST", timeframe="1h", repair=True)
    assert bars.frame.equals(df.rename_axis("timestamp"))
    rep = bars.repair_report
    assert rep.sorted_rows
    assert rep.dropped_duplicates == ("2024-01-01T01:00:00+00:00", "2024-01-01T03:00:00+00:00")
    assert rep.conflicting_duplicates == ("2024-01-01T01:00:00+00:00",)
    assert "dropped 2 duplicate timestamp row(s)" in rep.describe()


def test_repair_does_not_fix_bad_prices() -> None:
    df = frame(low=[200.0] * 5)
    with pytest.raises(DataValidationError, match="low_le_open_close"):
        Bars.from_frame(df, symbol="TEST", timeframe="1h", repair=True)


def test_without_repair_unsorted_input_is_refused() -> None:
    with pytest.raises(DataValidationError, match="index_increasing"):
        Bars.from_frame(frame().iloc[::-1], symbol="TEST", timeframe="1h")


def test_slice_and_head_keep_the_contract() -> None:
    bars = Bars.from_frame(frame(n=10), symbol="TEST", timeframe="1h")
    part = bars.slice(pd.Timestamp("2024-01-01T02:00Z"), pd.Timestamp("2024-01-01T05:00Z"))
    assert list(part.index.hour) == [2, 3, 4]
    assert len(bars.head(4)) == 4
    validate(part.frame, symbol="TEST")


def test_column_arrays_are_read_only_views() -> None:
    bars = Bars.from_frame(frame(), symbol="TEST", timeframe="1h")
    arr = bars.column("close")
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0] = 1.0
