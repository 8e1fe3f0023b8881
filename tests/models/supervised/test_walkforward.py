"""Walk-forward and purged K-fold splits: geometry, purging, embargo, and leak detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from raytrader.errors import ConfigError
from raytrader.models.supervised import (
    Fold,
    FoldLeakError,
    WalkForwardConfig,
    check_folds,
    walk_forward_folds,
)


def fixed_ends(n: int, h: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) + h


def test_expanding_walk_forward_hand_example() -> None:
    cfg = WalkForwardConfig(n_folds=4, min_train=1)
    folds = list(walk_forward_folds(fixed_ends(100, 5), cfg))
    # T = 100 // 5 = 20: test windows [20, 40), [40, 60), [60, 80), [80, 100)
    assert [(f.test_start, f.test_stop) for f in folds] == [(20, 40), (40, 60), (60, 80), (80, 100)]
    # a label at i ends at i + 5, so training stops at s - 6 (ends[i] < s)
    for f in folds:
        np.testing.assert_array_equal(f.train, np.arange(0, f.test_start - 5))
    assert [f.index for f in folds] == [0, 1, 2, 3]


def test_rolling_window_purge_gap_and_test_size() -> None:
    cfg = WalkForwardConfig(n_folds=3, test_size=10, train_size=30, purge=4, min_train=1)
    folds = list(walk_forward_folds(fixed_ends(100, 2), cfg))
    assert [(f.test_start, f.test_stop) for f in folds] == [(70, 80), (80, 90), (90, 100)]
    # the purge gap (4) is wider than the label purge (2): training is [s - 4 - 30, s - 4)
    for f in folds:
        np.testing.assert_array_equal(f.train, np.arange(f.test_start - 34, f.test_start - 4))


def test_label_ends_of_varying_length_are_purged_individually() -> None:
    ends = np.arange(30, dtype=np.int64)
    ends[15] = 25  # one long label reaching into the test window
    cfg = WalkForwardConfig(n_folds=1, test_size=10, min_train=1)
    (fold,) = walk_forward_folds(ends, cfg)
    assert fold.test_start == 20
    np.testing.assert_array_equal(fold.train, [*range(15), *range(16, 20)])


def test_purged_kfold_embargo_hand_example() -> None:
    cfg = WalkForwardConfig(scheme="purged_kfold", n_folds=5, embargo=4, min_train=1)
    folds = list(walk_forward_folds(fixed_ends(100, 3), cfg))
    assert [(f.test_start, f.test_stop) for f in folds] == [
        (0, 20),
        (20, 40),
        (40, 60),
        (60, 80),
        (80, 100),
    ]
    # fold 1: before = i + 3 < 20 -> i <= 16; after: i >= 40 + 4 and i > max(ends[test]) = 42
    np.testing.assert_array_equal(folds[1].train, [*range(17), *range(44, 100)])
    np.testing.assert_array_equal(folds[0].train, np.arange(24, 100))
    np.testing.assert_array_equal(folds[4].train, np.arange(77))


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(20, 400),
    n_folds=st.integers(1, 6),
    purge=st.integers(0, 10),
    embargo=st.integers(0, 10),
    max_h=st.integers(0, 15),
    scheme=st.sampled_from(["walk_forward", "purged_kfold"]),
    rolling=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_folds_never_leak(
    n: int,
    n_folds: int,
    purge: int,
    embargo: int,
    max_h: int,
    scheme: str,
    rolling: bool,
    seed: int,
) -> None:
    assume(scheme == "walk_forward" or n_folds >= 2)
    ends = np.arange(n) + np.random.default_rng(seed).integers(0, max_h + 1, n)
    cfg = WalkForwardConfig(
        scheme=scheme,
        n_folds=n_folds,
        purge=purge,
        embargo=embargo,
        train_size=n // 3 if rolling and scheme == "walk_forward" else None,
        min_train=1,
    )
    try:
        folds = list(walk_forward_folds(ends, cfg))
    except ConfigError:
        event("refused: too few samples")
        return  # too few samples for this geometry: refused, not silently leaky
    assert len(folds) == n_folds
    tested = np.zeros(n, dtype=int)
    for k, f in enumerate(folds):
        s, e = f.test_start, f.test_stop
        assert f.index == k
        np.testing.assert_array_equal(f.test, np.arange(s, e))
        tested[f.test] += 1
        assert len(np.intersect1d(f.train, f.test)) == 0
        early, late = f.train[f.train < s], f.train[f.train >= e]
        # every training label's horizon ends before the test window; the purge gap holds
        assert (ends[early] < s).all()
        assert (early < s - purge).all()
        # the embargo after the test window, and no overlap with the test labels' horizons
        assert (late >= e + embargo).all()
        assert (late > ends[f.test].max()).all()
        if scheme == "walk_forward":
            assert len(late) == 0
            if k:
                assert s == folds[k - 1].test_stop  # consecutive windows, later in time
    assert tested.max() == 1  # test windows never overlap
    if scheme == "purged_kfold":
        assert (tested == 1).all()


def test_check_folds_names_the_leak() -> None:
    ends = fixed_ends(50, 3)
    test = np.arange(30, 40)
    ok = Fold(0, np.arange(27), test)
    check_folds([ok], ends)
    with pytest.raises(FoldLeakError, match=r"training sample 27 .* not purged"):
        check_folds([Fold(0, np.arange(28), test)], ends)
    with pytest.raises(FoldLeakError, match="not purged"):
        check_folds([ok], ends, purge=5)
    with pytest.raises(FoldLeakError, match="embargo"):
        check_folds([Fold(0, np.array([44]), test)], ends, embargo=5)
    with pytest.raises(FoldLeakError, match="horizon"):
        check_folds([Fold(0, np.array([42]), test)], ends)  # ends[39] = 42
    check_folds([Fold(0, np.array([43]), test)], ends)
    with pytest.raises(FoldLeakError, match="in the test window"):
        check_folds([Fold(0, np.array([35]), test)], ends)
    with pytest.raises(FoldLeakError, match="overlaps an earlier fold"):
        check_folds([ok, Fold(1, np.arange(10), np.arange(35, 45))], ends)
    with pytest.raises(FoldLeakError, match="contiguous"):
        check_folds([Fold(0, np.arange(10), np.array([30, 32]))], ends)


def test_too_few_samples_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="too few for 5 walk-forward folds"):
        list(walk_forward_folds(fixed_ends(5, 1), WalkForwardConfig(n_folds=5)))
    with pytest.raises(ConfigError, match="fewer than min_train=50"):
        list(walk_forward_folds(fixed_ends(60, 1), WalkForwardConfig(n_folds=2)))
    with pytest.raises(ConfigError, match="before the sample itself"):
        list(walk_forward_folds(np.array([0, 0, 1]), WalkForwardConfig(n_folds=1)))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"scheme": "purged_kfold", "n_folds": 1}, "purged_kfold needs n_folds >= 2"),
        ({"scheme": "purged_kfold", "test_size": 5}, "test_size applies to scheme 'walk_forward'"),
        ({"n_folds": 0}, r"WalkForwardConfig\.n_folds"),
        ({"embargo": -1}, r"WalkForwardConfig\.embargo"),
        ({"gap": 3}, r"WalkForwardConfig\.gap: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_a_config_error(data: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WalkForwardConfig.parse(data)
