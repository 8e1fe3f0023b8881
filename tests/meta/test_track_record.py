"""A member's track record starts after its training and the label horizon, checked."""

from __future__ import annotations

import pandas as pd
import pytest

from raytrader.errors import ConfigError
from raytrader.meta.track_record import (
    MemberTraining,
    TrackRecordLeakError,
    check_track_record,
    first_out_of_sample_bar,
)
from raytrader.registry import data_range

BARS = pd.date_range("2020-01-01", periods=100, freq="D", tz="UTC")


def _member(last: int) -> MemberTraining:
    tag = data_range("goog", pd.DataFrame(index=BARS[: last + 1]))
    return MemberTraining.from_data_tag("tuned-ma-cross/3", tag)


def test_the_record_starts_horizon_bars_after_the_training_ended() -> None:
    member = _member(59)
    assert member.trained_until == BARS[59]
    assert first_out_of_sample_bar(member, BARS, 0) == BARS[60]
    assert first_out_of_sample_bar(member, BARS, 5) == BARS[65]
    assert first_out_of_sample_bar(member, BARS, 40) is None
    check_track_record(member, BARS[65:], BARS, 5)
    check_track_record(member, BARS[:0], BARS, 5)


def test_a_record_reaching_into_the_training_or_its_labels_is_refused_and_named() -> None:
    member = _member(59)
    with pytest.raises(
        TrackRecordLeakError, match=r"tuned-ma-cross/3: .* 1 bar\(s\) from 2020-03-05"
    ):
        check_track_record(member, BARS[64:], BARS, 5)  # the purge: label of bar 59 sees bar 64
    with pytest.raises(TrackRecordLeakError, match="60 bar"):
        check_track_record(member, BARS, BARS, 0)  # in sample
    with pytest.raises(TrackRecordLeakError, match="none of these bars"):
        check_track_record(_member(98), BARS[99:], BARS, 5)


def test_a_bad_data_tag_or_horizon_is_named() -> None:
    with pytest.raises(ConfigError, match=r"member m/1: raytrader\.data tag 'goog'"):
        MemberTraining.from_data_tag("m/1", "goog")
    with pytest.raises(ConfigError, match="no timezone"):
        MemberTraining.from_data_tag("m/1", "goog 2020-01-01..2020-02-01")
    with pytest.raises(ConfigError, match="horizon"):
        first_out_of_sample_bar(_member(10), BARS, -1)
