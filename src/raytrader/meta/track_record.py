"""Which bars may make a member's track record: only those after the member's training (or
parameter selection) ended, purged by the label horizon.

Stacking's main leak is a meta-learner that learns from a member's in-sample performance — every
member looks good on the bars it was fitted to. A registered version's ``raytrader.data`` tag
records the last bar its training saw (:func:`raytrader.registry.data_range`); the last training
labels looked ``horizon`` bars past it, so the first bar a track record may use is the
``horizon + 1``-th bar after it. The rule is about time, whatever the dataset: a member fitted on
one market through 2010 has seen 2008 on every market.

:func:`check_track_record` raises :class:`TrackRecordLeakError` naming the member and the first
offending bar; the meta-learner's training calls it on every member's rows, the way
``check_folds`` guards the supervised folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from raytrader.errors import ConfigError, RaytraderError


class TrackRecordLeakError(RaytraderError, AssertionError):
    """A member's track record includes bars its training saw (or its labels looked at)."""


@dataclass(frozen=True)
class MemberTraining:
    """A member (``name``, e.g. ``tuned-ma-cross/3``) and the last bar its training saw."""

    name: str
    trained_until: pd.Timestamp

    @classmethod
    def from_data_tag(cls, name: str, tag: str) -> MemberTraining:
        """From a registered version's ``raytrader.data`` tag: ``<spec> <first>..<last>``."""
        _, _, span = tag.rpartition(" ")
        first, sep, last = span.partition("..")
        try:
            if not sep:
                raise ValueError("no '..' between the first and the last bar")
            until = pd.Timestamp(last)
            pd.Timestamp(first)
        except ValueError as exc:
            raise ConfigError(
                f"member {name}: raytrader.data tag {tag!r} is not '<spec> <first>..<last>' ({exc})"
            ) from exc
        if until.tzinfo is None:
            raise ConfigError(
                f"member {name}: the last bar {last!r} of its data tag has no timezone"
            )
        return cls(name=name, trained_until=until)


def first_out_of_sample_bar(
    member: MemberTraining, bars: pd.DatetimeIndex, horizon: int
) -> pd.Timestamp | None:
    """The first of ``bars`` a track record of ``member`` may use (None: none of them)."""
    if horizon < 0:
        raise ConfigError(f"the label horizon must be >= 0 bars, got {horizon}")
    after = bars[bars > member.trained_until]
    return after[horizon] if len(after) > horizon else None


def check_track_record(
    member: MemberTraining, record: pd.DatetimeIndex, bars: pd.DatetimeIndex, horizon: int
) -> None:
    """Raise :class:`TrackRecordLeakError` when a time in ``record`` (the bars of ``member``'s
    track record) comes before :func:`first_out_of_sample_bar` on ``bars``."""
    if len(record) == 0:
        return
    first = first_out_of_sample_bar(member, bars, horizon)
    early = record[record < first] if first is not None else record
    if len(early):
        allowed = f"from {first}" if first is not None else "none of these bars"
        raise TrackRecordLeakError(
            f"member {member.name}: its track record uses {len(early)} bar(s) from {early[0]} that "
            f"its training saw (trained until {member.trained_until}, labels {horizon} bar(s) "
            f"ahead); out of sample is {allowed}"
        )
