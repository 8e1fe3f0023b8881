"""The ensemble: combining rules, a registered ensemble pinning its members, the build CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars
from raytrader.ensemble import ACTIONS, Ensemble, EnsembleConfig, Member, actions, combine
from raytrader.errors import ConfigError
from tests.conftest import random_targets
from tests.support.cli import run_cli

T = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -1.0], [0.0, 0.0, 0.0], [0.5, -0.5, 1.0]])
C = np.array([[0.9, 0.6, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.5, 1.0]])
W = np.array([2.0, 1.0, 1.0])


def test_weighted_and_average() -> None:
    got = combine(T, "weighted", weights=W, confidences=C)
    assert got.target.tolist() == [0.25, 0.5, 0.0, 0.375]
    assert got.confidence.tolist() == [0.6, 1.0, 0.0, 0.625]
    got = combine(T, "average", weights=W, confidences=C)
    assert got.target.tolist() == pytest.approx([0.0, 1 / 3, 0.0, 1 / 3])


def test_voting_takes_the_heaviest_side_and_ties_hold() -> None:
    got = combine(T, "voting", weights=W, confidences=C)
    # row 0: long 2 vs short 1 vs flat 1; row 1: long 3; row 2: all flat; row 3: long 3 vs short 1
    assert got.target.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert got.confidence.tolist() == [0.5, 0.75, 1.0, 0.75]
    tie = combine(np.array([[1.0, -1.0]]), "voting", weights=np.ones(2))
    assert tie.target.tolist() == [0.0]
    assert tie.confidence.tolist() == [0.0]


def test_actions_respect_the_hold_band_and_keep_without_a_decision() -> None:
    got = actions(np.array([-1.0, -0.2, -0.19, 0.0, 0.2, 0.21, np.nan]), 0.2)
    assert got.tolist() == ["sell", "hold", "hold", "hold", "hold", "buy", "keep"]
    assert set(got) == set(ACTIONS)


class _Member:
    """A stand-in member pyfunc: fixed targets (NaN: no decision), confidence 1 where a position
    is held, NaN where the target is (as :func:`raytrader.registry._output` reports it)."""

    def __init__(self, targets: np.ndarray) -> None:
        self.targets = targets

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        t = self.targets[: len(frame)]
        c = np.where(np.isnan(t), np.nan, (t != 0).astype(np.float64))
        return pd.DataFrame({"target": t, "confidence": c}, index=frame.index)


def _ensemble(targets: np.ndarray, weights: list[float], how: str) -> Ensemble:
    members = tuple(Member(name=f"m{i}", version=1, weight=w) for i, w in enumerate(weights))
    config = EnsembleConfig(members=members, combine=how)
    return Ensemble(config, [_Member(targets[:, i]) for i in range(targets.shape[1])])


def test_the_ensemble_masks_a_missing_member_and_reports_it() -> None:
    nan = np.nan
    t = np.array([[1.0, -1.0, nan], [nan, nan, nan], [0.5, 0.0, 1.0]])
    out = _ensemble(t, [2.0, 1.0, 1.0], "weighted").predict(pd.DataFrame(index=range(3)))
    # row 0: (2*1 - 1) / 3, m2 missing (not (2 - 1 + 0) / 4); row 1: nobody, no decision
    # row 2: (2*0.5 + 0 + 1) / 4
    np.testing.assert_allclose(out["target"], [1 / 3, nan, 0.5], rtol=1e-15)
    assert out["confidence"].tolist() == [1.0, 0.0, 0.75]
    assert out["action"].tolist() == ["buy", "keep", "buy"]
    assert out["members_missing"].tolist() == [1, 3, 0]
    np.testing.assert_array_equal(out["m2.target"], [nan, nan, 1.0])
    np.testing.assert_array_equal(out["m2.confidence"], [nan, nan, 1.0])
    np.testing.assert_array_equal(out["m1.confidence"], [1.0, nan, 0.0])


@pytest.mark.parametrize("how", ["weighted", "average", "voting"])
def test_runner_and_registered_ensembles_agree_on_the_same_members(goog: Bars, how: str) -> None:
    """One semantics: the parallel runner's ensemble and the registered ensemble give identical
    targets for the same member targets (with missing bars) and weights."""
    from raytrader.strategies.runner import RunnerConfig, StrategyEntry, StrategyRunner

    t = random_targets(len(goog), seed=4, k=3, p_nan=0.1)
    t[100:120] = np.nan  # bars with every member missing
    weights = [3.0, 1.0, 0.5]
    entries = [
        StrategyEntry(label=f"m{i}", strategy="x", success=True, params={}, targets=t[:, i])
        for i in range(3)
    ]
    cfg = RunnerConfig(ensemble=how, weights={f"m{i}": w for i, w in enumerate(weights)})
    ran = StrategyRunner(cfg)._ensemble(entries, goog)
    assert ran is not None
    assert ran.success
    assert ran.targets is not None
    served = _ensemble(t, weights, how).predict(pd.DataFrame(index=goog.index))
    assert np.array_equal(ran.targets, served["target"].to_numpy(), equal_nan=True)
    assert np.isnan(ran.targets[100:120]).all()
    assert ran.members_missing == {f"m{i}": int(np.isnan(t[:, i]).sum()) for i in range(3)}


def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="members"):
        EnsembleConfig.parse({"members": []})
    with pytest.raises(ConfigError, match="repeat"):
        EnsembleConfig.parse(
            {"members": [{"name": "a", "version": 1}, {"name": "a", "version": 2}]}
        )
    with pytest.raises(ConfigError, match="weight"):
        EnsembleConfig.parse({"members": [{"name": "a", "version": 1, "weight": 0}]})


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    from raytrader.tracking import using_uri

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with using_uri(uri):
        yield uri


@pytest.mark.integration
def test_build_registers_an_ensemble_that_pins_its_members(
    tracking: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from raytrader.data.sources import load_bars
    from raytrader.ensemble import decision_frame
    from raytrader.registry import RuleStrategyModel, register_model, serving_example

    bars = load_bars("goog")
    example = serving_example(bars)
    for name, params in (
        ("fast-cross", {"fast": 10, "slow": 20}),
        ("slow-cross", {"fast": 20, "slow": 50}),
    ):
        register_model(
            RuleStrategyModel("ma_cross", params),
            name=name,
            kind="rule",
            input_example=example,
            tracking_uri=tracking,
            root=tmp_path,
        )
    config = tmp_path / "ensemble.yaml"
    config.write_text(
        f"""
name: goog-ensemble
members:
  - {{name: fast-cross, version: 1, weight: 2}}
  - {{name: slow-cross, version: 1}}
combine: weighted
tracking_uri: {tracking}
output_dir: {tmp_path}
"""
    )
    code, out, err = run_cli(capsys, "ensemble", "build", "--config", str(config), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["version"] == "1"
    assert set(summary["backtest"]) == {"ensemble", "fast-cross", "slow-cross"}

    window = decision_frame(serving_example(bars, n=300))  # what the service sends
    model = mlflow.pyfunc.load_model("models:/goog-ensemble@challenger")
    got = model.predict(window)
    fast = mlflow.pyfunc.load_model("models:/fast-cross/1").predict(window)
    slow = mlflow.pyfunc.load_model("models:/slow-cross/1").predict(window)
    want = (2 * fast["target"].to_numpy() + slow["target"].to_numpy()) / 3
    assert np.array_equal(got["target"].to_numpy(), want)
    assert np.array_equal(got["fast-cross.target"].to_numpy(), fast["target"].to_numpy())
    assert set(got["action"]) <= {"buy", "hold", "sell"}  # the last 300 bars are warm
    assert (got["members_missing"] == 0).all()

    code, out, err = run_cli(capsys, "ensemble", "build", "--config", str(config))
    assert code == 0, err
    assert "fast-cross" in out  # the backtest table
    assert "alias challenger -> version 2" in out

    # the members' files are inside the ensemble: deleting a member version does not break it
    client = MlflowClient(tracking)
    client.delete_model_version("slow-cross", "1")
    again = mlflow.pyfunc.load_model("models:/goog-ensemble/1").predict(window)
    assert np.array_equal(again["target"].to_numpy(), want)
    version = client.get_model_version("goog-ensemble", "1")
    assert version.tags["raytrader.members"] == "fast-cross:1,slow-cross:1"
    assert version.tags["raytrader.kind"] == "ensemble"

    # a member version that does not exist is named, and nothing is registered
    code, _, err = run_cli(capsys, "ensemble", "build", "--config", str(config))
    assert code == 2
    assert "member slow-cross version 1" in err
    assert len(client.search_model_versions("name='goog-ensemble'")) == 2


@pytest.mark.integration
def test_a_member_that_needs_a_price_window_is_refused(tracking: str, tmp_path: Path) -> None:
    """The service sends one feature row per symbol: a rule whose state is not in the features
    (ma_cross 5/20: no SMA 5 feature) cannot be a member, and nothing is registered."""
    from mlflow.tracking import MlflowClient

    from raytrader.data.sources import load_bars
    from raytrader.ensemble import EnsembleConfig, Member, build_ensemble
    from raytrader.registry import RuleStrategyModel, register_model, serving_example

    register_model(
        RuleStrategyModel("ma_cross", {"fast": 5, "slow": 20}),
        name="windowed",
        kind="rule",
        input_example=serving_example(load_bars("goog")),
        tracking_uri=tracking,
        root=tmp_path,
    )
    cfg = EnsembleConfig(
        name="refused",
        members=(Member(name="windowed", version=1),),
        tracking_uri=tracking,
        output_dir=str(tmp_path),
    )
    with pytest.raises(ConfigError, match=r"member windowed v1: .*needs a price window"):
        build_ensemble(cfg)
    assert MlflowClient(tracking).search_model_versions("name='refused'") == []


def test_rules_read_from_one_feature_row_equal_the_windowed_rule() -> None:
    """ma_cross (SMA 10/20/50 pairs) and macd 12/26/9 read from each row's features alone equal
    the rule run over the whole window once it has crossed/warmed up."""
    from raytrader.data.sources import load_bars
    from raytrader.features.engine import compute_features
    from raytrader.strategies.base import make_strategy

    bars = load_bars("goog")
    feats = compute_features(bars)
    for name, params in (
        ("ma_cross", {"fast": 10, "slow": 50}),
        ("ma_cross", {"fast": 20, "slow": 50, "short": False}),
        ("macd", {}),
        ("buy_and_hold", {}),
    ):
        strategy = make_strategy(name, params)
        windowed = strategy.target_positions(bars.frame).to_numpy()
        read = strategy.feature_targets(feats)
        assert read is not None, name
        start = int(np.flatnonzero(windowed != 0)[0])  # the first cross / warm bar
        assert np.array_equal(read[start:], windowed[start:]), (name, params)
    assert make_strategy("rsi", {}).feature_targets(feats) is None
    assert make_strategy("ma_cross", {"fast": 5, "slow": 20}).feature_targets(feats) is None


@pytest.mark.parametrize(
    ("name", "params", "columns"),
    [
        ("ma_cross", {"fast": 10, "slow": 50}, ["sma_10", "sma_50"]),
        ("ma_cross", {"fast": 10, "slow": 50, "short": False}, ["sma_10", "sma_50"]),
        ("macd", {}, ["macd_hist"]),
    ],
)
def test_a_rule_read_from_nan_features_is_missing_not_flat(
    goog: Bars, name: str, params: dict[str, object], columns: list[str]
) -> None:
    """Where a feature the rule reads is NaN (warm-up, or a gap mid-series) the rule has no
    decision: NaN, never 0 (flat)."""
    from raytrader.features.engine import compute_features
    from raytrader.strategies.base import make_strategy

    feats = compute_features(goog)
    feats.iloc[1000, feats.columns.get_loc(columns[0])] = np.nan  # a gap mid-series
    read = make_strategy(name, params).feature_targets(feats)
    assert read is not None
    unknown = feats[columns].isna().any(axis=1).to_numpy()
    assert unknown[:20].all()
    assert unknown[1000]
    assert np.array_equal(np.isnan(read), unknown)
    assert set(np.unique(read[~unknown])) <= {-1.0, 0.0, 1.0}
