"""Training data: Feast historical retrieval and the batch engine give identical matrices."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.data import load_bars
from raytrader.errors import ConfigError
from raytrader.features import compute_features
from raytrader.features import feast_repo as fr
from raytrader.training.data import feature_matrix


@pytest.mark.slow
def test_feast_and_batch_matrices_are_identical(tmp_path: Path) -> None:
    bars = load_bars("goog").head(700)
    repo = tmp_path / "repo"
    shutil.copytree(fr.DEFAULT_REPO_DIR, repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
    data = tmp_path / "data"
    fr.append_offline(fr.feature_rows(bars, compute_features(bars)), data)
    fs = fr.store("sqlite", repo=repo, data=data)
    fr.apply(fs, repo=repo)
    batch = feature_matrix(bars)
    feast = feature_matrix(bars, source="feast", fs=fs)
    pd.testing.assert_index_equal(feast.index, batch.index)
    assert list(feast.columns) == list(batch.columns)
    values = [c for c in batch.columns if c != "warm"]
    assert np.array_equal(feast[values].to_numpy(), batch[values].to_numpy(), equal_nan=True)
    assert np.array_equal(feast["warm"].to_numpy(), batch["warm"].to_numpy())

    # a bar the offline store does not hold is an error naming it, not a silent NaN row
    more = load_bars("goog").head(701)
    with pytest.raises(ConfigError, match="no feature row for GOOG bar 2007"):
        feature_matrix(more, source="feast", fs=fs)


def test_bad_source() -> None:
    bars = load_bars("goog").head(100)
    with pytest.raises(ConfigError, match="'batch' or 'feast'"):
        feature_matrix(bars, source="parquet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a FeatureStore"):
        feature_matrix(bars, source="feast")
