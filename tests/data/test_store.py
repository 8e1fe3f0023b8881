"""ParquetStore: round trips, append rules, range reads, layout and atomic writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raytrader.data.bars import Bars
from raytrader.data.store import ParquetStore
from raytrader.data.synthetic import synthetic_bars
from raytrader.data.timeframe import Calendar
from raytrader.errors import ConfigError, StoreError

UTC = "UTC"


def bars(n: int = 600, *, symbol: str = "SYN", seed: int = 1, timeframe: str = "1m") -> Bars:
    return synthetic_bars(n_bars=n, symbol=symbol, seed=seed, timeframe=timeframe)


def with_calendar(b: Bars, calendar: Calendar) -> Bars:
    return Bars.from_frame(
        b.frame, symbol=b.symbol, timeframe=b.timeframe, calendar=calendar, source=b.source
    )


def assert_same_frame(got: Bars, want: Bars) -> None:
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True, check_freq=False)


def at(b: Bars, i: int) -> pd.Timestamp:
    return pd.Timestamp(b.index[i])


def test_round_trip_preserves_values_index_and_calendar(tmp_path: Path) -> None:
    src = with_calendar(bars(symbol="AAPL"), Calendar.EQUITY)
    store = ParquetStore(tmp_path)
    store.append(src)
    got = store.read("AAPL", "1m")
    assert_same_frame(got, src)
    assert got.index.dtype == pd.DatetimeTZDtype("ns", UTC)  # the Bars convention
    assert got.calendar is Calendar.EQUITY
    assert got.symbol == "AAPL"
    assert got.timeframe == src.timeframe


def test_parts_store_utc_microsecond_timestamps_and_float64_ohlcv(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    part = store.append(bars())
    schema = pq.read_schema(part)
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert [schema.field(c).type for c in ("open", "high", "low", "close", "volume")] == [
        pa.float64()
    ] * 5
    assert part.parent == tmp_path / "symbol=SYN" / "timeframe=1m"


def test_part_file_names_carry_first_and_last_open_time_in_ns(tmp_path: Path) -> None:
    src = bars(10)
    part = ParquetStore(tmp_path).append(src)
    first_ns = at(src, 0).as_unit("ns").value
    last_ns = at(src, -1).as_unit("ns").value
    assert part.name == f"part-{first_ns:019d}-{last_ns:019d}.parquet"


def test_append_next_chunk_then_read_returns_all_bars(tmp_path: Path) -> None:
    src = bars(900)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    store.append(src.slice(at(src, 300), at(src, 700)))
    store.append(src.slice(at(src, 700)))
    assert len(store.parts("SYN", "1m")) == 3
    assert_same_frame(store.read("SYN", "1m"), src)
    assert store.last_timestamp("SYN", "1m") == at(src, -1)


def test_append_after_a_gap_is_allowed(tmp_path: Path) -> None:
    src = bars(900)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    store.append(src.slice(at(src, 500)))
    got = store.read("SYN", "1m")
    assert len(got) == 300 + 400
    assert at(got, 300) == at(src, 500)


def test_overlapping_append_is_refused_naming_both_timestamps_and_writes_nothing(
    tmp_path: Path,
) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(400))
    before = sorted(p.name for p in store.parts("SYN", "1m"))
    overlapping = src.slice(at(src, 350))
    with pytest.raises(StoreError) as info:
        store.append(overlapping)
    msg = str(info.value)
    assert "SYN" in msg
    assert "1m" in msg
    assert at(src, 399).isoformat() in msg  # the stored last timestamp
    assert at(src, 350).isoformat() in msg  # the new first timestamp
    assert sorted(p.name for p in store.parts("SYN", "1m")) == before
    assert sorted(p.name for p in store.key_dir("SYN", "1m").iterdir()) == before
    assert_same_frame(store.read("SYN", "1m"), src.head(400))


def test_append_starting_at_the_stored_last_timestamp_is_refused(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(400))
    with pytest.raises(StoreError, match=re.escape(at(src, 399).isoformat())):
        store.append(src.slice(at(src, 399)))
    assert len(store.parts("SYN", "1m")) == 1


def test_out_of_order_append_is_refused(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.slice(at(src, 300)))
    with pytest.raises(StoreError, match="out of order") as info:
        store.append(src.head(100))
    assert at(src, 0).isoformat() in str(info.value)
    assert at(src, -1).isoformat() in str(info.value)
    assert len(store.parts("SYN", "1m")) == 1


def test_append_with_a_different_calendar_is_refused(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    with pytest.raises(StoreError, match="calendar 'equity' differs"):
        store.append(with_calendar(src.slice(at(src, 300)), Calendar.EQUITY))
    assert len(store.parts("SYN", "1m")) == 1


def test_read_by_range_is_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src)
    got = store.read("SYN", "1m", start=at(src, 100), end=at(src, 250))
    assert_same_frame(got, src.slice(at(src, 100), at(src, 250)))
    assert at(got, 0) == at(src, 100)
    assert at(got, -1) == at(src, 249)


def test_read_range_spanning_several_parts(tmp_path: Path) -> None:
    src = bars(900)
    store = ParquetStore(tmp_path)
    for lo, hi in ((0, 300), (300, 600), (600, 900)):
        store.append(src.slice(at(src, lo), at(src, hi - 1) + pd.Timedelta(seconds=1)))
    got = store.read("SYN", "1m", start=at(src, 250), end=at(src, 650))
    assert_same_frame(got, src.slice(at(src, 250), at(src, 650)))
    assert_same_frame(store.read("SYN", "1m", end=at(src, 10)), src.head(10))
    assert_same_frame(store.read("SYN", "1m", start=at(src, 890)), src.slice(at(src, 890)))


def test_read_range_accepts_iso_strings_and_other_timezones(tmp_path: Path) -> None:
    src = bars(600)  # starts 2024-01-01 00:00 UTC
    store = ParquetStore(tmp_path)
    store.append(src)
    got = store.read("SYN", "1m", start="2024-01-01T02:00:00+02:00", end="2024-01-01T00:10Z")
    assert list(got.index) == list(src.index[:10])


def test_read_rejects_naive_range_bounds(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.append(bars())
    with pytest.raises(ConfigError, match="timezone-naive"):
        store.read("SYN", "1m", start=pd.Timestamp("2024-01-01"))


def test_read_rejects_end_not_after_start(tmp_path: Path) -> None:
    src = bars()
    store = ParquetStore(tmp_path)
    store.append(src)
    with pytest.raises(ConfigError, match="not after"):
        store.read("SYN", "1m", start=at(src, 5), end=at(src, 5))


def test_read_range_without_bars_raises_no_bars_in_range(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src)
    later = at(src, -1) + pd.Timedelta(days=1)
    with pytest.raises(StoreError, match="no bars in range"):
        store.read("SYN", "1m", start=later)
    # a range inside a gap between two parts: pruned parts would be non-empty, rows are not
    store2 = ParquetStore(tmp_path / "gap")
    store2.append(src.head(100))
    store2.append(src.slice(at(src, 500)))
    with pytest.raises(StoreError, match="no bars in range"):
        store2.read("SYN", "1m", start=at(src, 200), end=at(src, 300))


def test_read_of_unknown_key_raises(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    with pytest.raises(StoreError, match="nothing stored for NOPE 1m"):
        store.read("NOPE", "1m")
    store.append(bars())
    with pytest.raises(StoreError, match="nothing stored for SYN 5m"):
        store.read("SYN", "5m")


def test_symbol_with_a_slash_round_trips(tmp_path: Path) -> None:
    src = bars(symbol="BTC/USDT")
    store = ParquetStore(tmp_path)
    part = store.append(src)
    assert part.parent == tmp_path / "symbol=BTC%2FUSDT" / "timeframe=1m"
    assert [p.name for p in tmp_path.iterdir()] == ["symbol=BTC%2FUSDT"]
    got = store.read("BTC/USDT", "1m")
    assert got.symbol == "BTC/USDT"
    assert_same_frame(got, src)
    assert store.symbols() == [("BTC/USDT", "1m")]


def test_symbols_lists_every_key_with_parts(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    assert store.symbols() == []
    store.append(bars(symbol="ETH/USDT"))
    store.append(bars(symbol="AAPL", timeframe="1d"))
    store.append(bars(symbol="AAPL"))
    store.key_dir("EMPTY", "1h").mkdir(parents=True)  # a directory without parts is not a key
    assert store.symbols() == [("AAPL", "1d"), ("AAPL", "1m"), ("ETH/USDT", "1m")]


def test_last_timestamp_is_none_until_something_is_stored(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    assert store.last_timestamp("SYN", "1m") is None
    store.append(src.head(100))
    assert store.last_timestamp("SYN", "1m") == at(src, 99)
    store.append(src.slice(at(src, 100)))
    last = store.last_timestamp("SYN", "1m")
    assert last == at(src, -1)
    assert last is not None
    assert str(last.tz) == UTC


def test_append_leaves_no_temporary_files_and_readable_parts(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    store.append(src.slice(at(src, 300)))
    files = list(tmp_path.rglob("*"))
    assert not [p for p in files if p.name.endswith(".tmp")]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in store.parts("SYN", "1m"))


def test_stray_temporary_file_from_a_crashed_write_is_ignored(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    directory = store.key_dir("SYN", "1m")
    (directory / ".part-crashed.tmp").write_bytes(b"PAR1 half written")
    assert len(store.parts("SYN", "1m")) == 1
    assert store.last_timestamp("SYN", "1m") == at(src, 299)
    assert_same_frame(store.read("SYN", "1m"), src.head(300))
    store.append(src.slice(at(src, 300)))
    assert_same_frame(store.read("SYN", "1m"), src)


CRASHING_APPEND = textwrap.dedent(
    """
    import resource, signal, sys
    import pandas as pd
    from raytrader.data.store import ParquetStore
    from raytrader.data.synthetic import synthetic_bars

    root, mode = sys.argv[1], sys.argv[2]
    if mode == "kill":  # Python ignores SIGXFSZ; restore the default so the write kills us
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    new = synthetic_bars(n_bars=300_000, seed=1).slice(pd.Timestamp("2024-01-01 00:10", tz="UTC"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (32_768, 32_768))  # the part cannot be written
    ParquetStore(root).append(new)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
@pytest.mark.parametrize("mode", ["error", "kill"])
def test_failed_or_killed_write_never_leaves_a_visible_part(tmp_path: Path, mode: str) -> None:
    # a real failure, no mocking: a child process appends with a file-size limit far below the
    # part's size; "error" sees EFBIG as an exception, "kill" dies of SIGXFSZ mid-write
    src = synthetic_bars(n_bars=10, seed=1)
    store = ParquetStore(tmp_path)
    store.append(src)
    before = store.parts("SYN", "1m")
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_APPEND, str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    directory = store.key_dir("SYN", "1m")
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    if mode == "error":
        assert proc.returncode == 1
        assert "StoreError: cannot write SYN 1m" in proc.stderr
        assert leftovers == []  # the temporary file was removed
    else:
        assert proc.returncode == -signal.SIGXFSZ, proc.stderr
        assert len(leftovers) == 1  # the half-written temporary file stays hidden
    assert store.parts("SYN", "1m") == before
    assert store.last_timestamp("SYN", "1m") == at(src, -1)
    assert_same_frame(store.read("SYN", "1m"), src)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_append_into_read_only_directory_fails_cleanly(tmp_path: Path) -> None:
    src = bars(600)
    store = ParquetStore(tmp_path)
    store.append(src.head(300))
    directory = store.key_dir("SYN", "1m")
    directory.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            store.append(src.slice(at(src, 300)))
    finally:
        directory.chmod(0o755)
    assert len(store.parts("SYN", "1m")) == 1
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_store_refuses_sub_microsecond_timestamps(tmp_path: Path) -> None:
    src = bars(3)
    frame = src.frame.copy()
    frame.index = frame.index.as_unit("ns") + pd.Timedelta(nanoseconds=1)
    odd = Bars.from_frame(frame, symbol="SYN", timeframe="1m")
    with pytest.raises(StoreError, match="sub-microsecond"):
        ParquetStore(tmp_path).append(odd)
    assert not tmp_path.exists() or not list(tmp_path.rglob("*.parquet"))


def test_nanosecond_index_round_trips_through_microsecond_storage(tmp_path: Path) -> None:
    src = bars(50)
    frame = src.frame.copy()
    frame.index = frame.index.as_unit("ns")
    store = ParquetStore(tmp_path)
    store.append(Bars.from_frame(frame, symbol="SYN", timeframe="1m"))
    got = store.read("SYN", "1m")
    assert got.index.unit == "ns"
    assert got.index.equals(frame.index)
