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
from raytrader.features.matrix import feature_matrix


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
    with pytest.raises(ConfigError, match="no 1d feature row for GOOG bar 2007"):
        feature_matrix(more, source="feast", fs=fs)


def test_bad_source() -> None:
    bars = load_bars("goog").head(100)
    with pytest.raises(ConfigError, match="'batch' or 'feast'"):
        feature_matrix(bars, source="parquet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a FeatureStore"):
        feature_matrix(bars, source="feast")


@pytest.mark.slow
def test_pipelines_read_feast_when_the_stack_env_is_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raytrader.features.matrix import resolve_source, training_features
    from raytrader.models.supervised import ClassifierConfig, train
    from raytrader.training.rl import RLConfig, full_market
    from tests.support.markets import momentum_csv

    data = momentum_csv(tmp_path / "momentum.csv", n=1500)
    bars = load_bars(data)
    repo = tmp_path / "repo"
    shutil.copytree(fr.DEFAULT_REPO_DIR, repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
    monkeypatch.setenv(fr.REPO_ENV, str(repo))
    monkeypatch.setenv(fr.DATA_ENV, str(tmp_path / "feast"))
    assert resolve_source("auto") == "feast"
    fs = fr.store("redis")  # the stack's profile; historical retrieval never touches Redis
    fr.apply(fs)
    with pytest.raises(ConfigError, match=r"no feature row for MOMENTUM bar .* feature_source"):
        training_features(bars)
    fr.append_offline(fr.feature_rows(bars, compute_features(bars)), fr.store_data_dir(fs))

    cfg = {"timeframe": "5m", "data": data, "importance": "none", "validation": {"n_folds": 3}}
    cfg["params"] = {"n_estimators": 20}
    feast = train(ClassifierConfig.parse(cfg))  # auto: Feast
    batch = train(ClassifierConfig.parse(cfg | {"feature_source": "batch"}))
    assert [f.metrics for f in feast.folds] == [f.metrics for f in batch.folds]
    assert np.array_equal(feast.oos_targets.to_numpy(), batch.oos_targets.to_numpy())

    rl = RLConfig(data=data)
    a = full_market(rl)
    b = full_market(rl.model_copy(update={"feature_source": "batch"}))
    assert np.array_equal(a.features, b.features, equal_nan=True)
    assert a.warm_from == b.warm_from

    monkeypatch.delenv(fr.REPO_ENV)
    assert resolve_source("auto") == "batch"
