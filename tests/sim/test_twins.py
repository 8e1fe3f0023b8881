"""Serial and parallel compilations of one kernel must not share numba's on-disk cache entry."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.backtest import metrics
from raytrader.sim import kernel
from raytrader.strategies import rules

TWINS = {
    "simulate": kernel._SIMULATE,
    "capacity": kernel._CAPACITY,
    "curve_metrics": metrics._CURVE,
    "cross_rows": rules._CROSS_ROWS,
}


@pytest.mark.parametrize("name", list(TWINS))
def test_serial_and_parallel_twins_have_distinct_cache_entries(name: str) -> None:
    twins = TWINS[name]
    assert twins.serial.py_func.__qualname__ != twins.parallel.py_func.__qualname__
    assert twins.serial.targetoptions.get("parallel") in (None, False)
    assert twins.parallel.targetoptions.get("parallel") is True
    serial_index = twins.serial._cache._cache_file._index_path
    parallel_index = twins.parallel._cache._cache_file._index_path
    assert serial_index != parallel_index


def test_twins_compute_the_same_result() -> None:
    rng = np.random.default_rng(0)
    targets = np.where(rng.random((3, 500)) < 0.05, rng.choice([-1.0, 0.0, 1.0], (3, 500)), np.nan)
    cap = kernel._CAPACITY
    assert np.array_equal(cap.serial(targets), cap.parallel(targets))
