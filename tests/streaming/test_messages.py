"""Bar messages: round trip, and every rejection names its reason."""

from __future__ import annotations

import json

import pytest

from raytrader.data import load_bars
from raytrader.streaming.messages import (
    BarMessage,
    MessageError,
    decode,
    encode,
    json_schema,
    topic_for,
)
from raytrader.streaming.producer import bar_messages, interleave, parse_speed

GOOD = {
    "schema_version": 1,
    "symbol": "GOOG",
    "timeframe": "1d",
    "open_time": "2013-03-01T00:00:00+00:00",
    "open": 799.46,
    "high": 806.78,
    "low": 796.27,
    "close": 806.19,
    "volume": 2016900.0,
    "source": "test",
}


def test_round_trip_is_exact() -> None:
    msg = BarMessage.model_validate(GOOD)
    assert decode(encode(msg)) == msg
    assert json.loads(encode(msg))["open_time"] == "2013-03-01T00:00:00Z"


def test_offsets_are_normalized_to_utc() -> None:
    msg = decode(json.dumps({**GOOD, "open_time": "2013-03-01T01:00:00+01:00"}).encode())
    assert msg.open_time.isoformat() == "2013-03-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({**GOOD, "schema_version": 2}).encode(), "unsupported schema_version 2"),
        (
            json.dumps({**GOOD, "open": float("nan")}).replace("NaN", "NaN").encode(),
            "open is not finite",
        ),
        (json.dumps({**GOOD, "high": 700.0}).encode(), "high 700.0 < max(open, close)"),
        (json.dumps({**GOOD, "low": 900.0}).encode(), "low 900.0 > min(open, close)"),
        (json.dumps({**GOOD, "close": -1.0}).encode(), "close must be > 0"),
        (json.dumps({**GOOD, "volume": -5}).encode(), "volume must be >= 0"),
        (json.dumps({**GOOD, "open_time": "2013-03-01T00:00:00"}).encode(), "bar.open_time"),
        (json.dumps({**GOOD, "timeframe": "7q"}).encode(), "invalid timeframe"),
        (json.dumps({**GOOD, "extra": 1}).encode(), "bar.extra"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "symbol"}).encode(), "bar.symbol"),
        (None, "empty message"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        decode(raw)
    assert reason in info.value.reason


def test_producer_side_validation_refuses_bad_bars() -> None:
    with pytest.raises(ValueError, match="high"):
        BarMessage.model_validate({**GOOD, "high": 1.0})


def test_topic_names_follow_the_timeframe() -> None:
    assert topic_for("1m") == "bars.1m"
    assert topic_for("1d") == "bars.1d"


def test_json_schema_is_exported() -> None:
    schema = json_schema()
    assert schema["properties"]["schema_version"]["const"] == 1
    assert set(schema["required"]) >= {"symbol", "timeframe", "open_time", "open", "close"}


def test_bar_messages_cover_every_bar_in_order() -> None:
    goog = load_bars("goog").head(50)
    msgs = list(bar_messages(goog, "bundled:goog"))
    assert len(msgs) == 50
    assert [m.open_time for m in msgs] == [t.to_pydatetime() for t in goog.index]
    assert msgs[0].close == goog.frame["close"].iloc[0]


def test_interleave_merges_symbols_by_time() -> None:
    a = load_bars("synthetic:n_bars=5,timeframe=1m,seed=1,symbol=A")
    b = load_bars("synthetic:n_bars=5,timeframe=1m,seed=2,symbol=B")
    merged = list(interleave([bar_messages(a, "s"), bar_messages(b, "s")]))
    assert [m.symbol for m in merged] == ["A", "B"] * 5


@pytest.mark.parametrize(
    ("speed", "bar_s", "interval"),
    [("max", 60, 0.0), ("500x", 86400, 172.8), ("1000/s", 60, 0.001)],
)
def test_replay_speed(speed: str, bar_s: float, interval: float) -> None:
    assert parse_speed(speed, bar_s) == pytest.approx(interval)


def test_bad_speed_is_refused() -> None:
    from raytrader.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid --speed"):
        parse_speed("fast", 60)


def test_messages_carry_the_calendar_of_their_bars_and_it_stays_optional() -> None:
    msgs = list(bar_messages(load_bars("eurusd").head(3), "bundled:eurusd"))
    assert {m.calendar for m in msgs} == {"fx"}
    assert json.loads(encode(msgs[0]))["calendar"] == "fx"
    assert decode(json.dumps(GOOD).encode()).calendar is None  # producers that do not know it
    with pytest.raises(MessageError, match="calendar"):
        decode(json.dumps({**GOOD, "calendar": "nyse"}).encode())


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ("goog", ["goog"]),
        ("goog, sp500", ["goog", "sp500"]),
        ("synthetic:n_bars=30,timeframe=1d,seed=3", ["synthetic:n_bars=30,timeframe=1d,seed=3"]),
        (
            "goog,synthetic:n_bars=30,timeframe=1d,eurusd",
            ["goog", "synthetic:n_bars=30,timeframe=1d", "eurusd"],
        ),
        ("my.csv,synthetic:seed=1,other.csv", ["my.csv", "synthetic:seed=1", "other.csv"]),
    ],
)
def test_replay_splits_datasets_but_not_a_specs_own_parameters(data: str, names: list[str]) -> None:
    from raytrader.streaming.cli import dataset_names

    assert dataset_names(data) == names
