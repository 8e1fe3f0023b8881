"""``raytrader meta regimes|evaluate``: JSON shapes, the files written, errors named (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytrader.meta.regimes import REGIMES
from tests.support.cli import run_cli

SYN = "synthetic:n_bars=1300,timeframe=1d,seed=5"


def study_file(tmp_path: Path, extra: str) -> Path:
    """A small StudyConfig file: three rule members, 300 member bars, the test from bar 700."""
    config = tmp_path / "study.yaml"
    config.write_text(
        "members:\n"
        "  ma_cross: {strategy: ma_cross, params: {fast: 10, slow: 50}}\n"
        "  rsi: {strategy: rsi}\n"
        "  momentum: {strategy: momentum}\n"
        "member_bars: 300\ntest_start: 700\n" + extra
    )
    return config


def test_regimes_json_scores_synthetic_data_against_its_truth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "meta", "regimes", "--data", SYN, "--last", "2", "--json")
    assert code == 0
    got = json.loads(out)
    assert set(got["shares"]) <= set(REGIMES)
    assert len(got["last"]) == 2
    assert got["last"][-1]["rule"]
    assert 0.25 < got["score"]["balanced_accuracy"] <= 1.0


def test_evaluate_writes_every_table_and_the_claims(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = study_file(
        tmp_path,
        "presets: [research]\npredictors: [table]\ncost_multiples: [1.0]\nreps: 100\n"
        "trials: 5\n",  # one run here, four more tried elsewhere: the deflated Sharpe counts 5
    )
    out_file = tmp_path / "eval.json"
    code, out, err = run_cli(
        capsys, "meta", "evaluate", "--data", SYN, "--config", str(config), "--out", str(out_file),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    table = got[SYN]["1.0"]
    assert table["trials"] == 5
    assert {"meta[research,table]", "equal", "inverse_vol", "best_single", "fixed_share"} <= set(
        table["rows"]
    )
    rows = table["rows"]
    assert rows["oracle_per_window"]["investable"] is False
    assert rows["oracle_per_window"]["closed_gap"] == 1.0
    # one member a bar: one active, all the weight on it; the oracle is outside the confidence set
    assert rows["oracle_per_window"]["active_members"] == 1.0
    assert rows["oracle_per_window"]["weight_concentration"] == 1.0
    assert rows["oracle_per_window"]["in_mcs"] is None
    assert rows["equal"]["weight_concentration"] == pytest.approx(1 / 3)
    assert rows["equal"]["active_members"] == pytest.approx(3.0)
    assert rows["buy_and_hold_asset"]["active_members"] is None  # no members
    meta = rows["meta[research,table]"]
    assert 1.0 <= meta["active_members"] <= 3.0
    assert 1 / 3 <= meta["weight_concentration"] <= 1.0
    assert any(row["in_mcs"] is True for row in rows.values())
    # the asset never trades after its first fill: its costs are one entry's
    assert 0 <= rows["buy_and_hold_asset"]["cost_drag"] < 0.001
    assert rows["equal"]["cost_drag"] > 0
    assert table["claims"][0].startswith("meta[research,table] ")
    by_regime = table["sharpe_by_regime"]
    assert abs(sum(row["share"] for row in by_regime.values()) - 1.0) < 1e-9
    assert {"meta[research,table]", "equal"} <= set(next(iter(by_regime.values())))
    assert json.loads(out_file.read_text()) == got
    # the experiment store holds the same table, one row per candidate with its role
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from raytrader.db.engine import make_engine
    from raytrader.db.models import Evaluation, EvaluationRow

    engine = make_engine()
    with Session(engine) as s:
        evaluation = s.get(Evaluation, got["store_evaluation_id"])
        assert evaluation is not None
        assert evaluation.summary["claims"][f"{SYN} x1.0"] == table["claims"]
        stored = {
            r.candidate: r
            for r in s.scalars(
                select(EvaluationRow).where(EvaluationRow.evaluation_id == evaluation.id)
            )
        }
    engine.dispose()
    assert {name: r.metrics for name, r in stored.items()} == rows
    assert stored["meta[research,table]"].role == "candidate"
    assert stored["oracle_per_window"].role == "oracle"
    assert stored["equal"].role == "baseline"


def test_a_bad_study_config_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("presets: [bold]\n")
    code, _, err = run_cli(capsys, "meta", "evaluate", "--data", SYN, "--config", str(config))
    assert code == 2
    assert "unknown presets ['bold']" in err
    config.write_text("member_bars: 900\ntest_start: 800\n")
    code, _, err = run_cli(capsys, "meta", "evaluate", "--data", SYN, "--config", str(config))
    assert code == 2
    assert "test_start (800) must come after member_bars (900)" in err


def test_the_window_oracle_holds_each_blocks_best_member() -> None:
    import numpy as np
    import pandas as pd

    from raytrader.meta.study import single, window_oracle

    index = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    # member a earns on bars 1-3, member b on bars 4-5; a block's targets earn from its next bar
    returns = pd.DataFrame(
        {"a": [0.0, 0.1, 0.1, 0.1, -0.1, -0.1], "b": [0.0, -0.1, -0.1, 0.0, 0.2, 0.2]}, index=index
    )
    targets = pd.DataFrame({"a": [1.0] * 6, "b": [-1.0] * 6}, index=index)
    weights = window_oracle(returns, 3)
    np.testing.assert_array_equal(weights["a"].to_numpy(), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert (weights.sum(axis=1) == 1.0).all()
    oracle = single(weights, targets)
    np.testing.assert_array_equal(oracle.to_numpy(), [1.0, 1.0, 1.0, -1.0, -1.0, -1.0])


def test_evaluate_over_seeds_pools_them_with_paired_t_and_the_true_regime_oracle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = study_file(
        tmp_path,
        "presets: [research]\npredictors: [table]\nwithout_regimes: [ridge]\n"
        "cost_multiples: [1.0]\nreps: 100\n",
    )
    other = SYN.replace("seed=5", "seed=6")
    code, out, err = run_cli(
        capsys, "meta", "evaluate", "--data", SYN, "--data", other, "--config", str(config),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    rows = got[SYN]["1.0"]["rows"]
    assert got[SYN]["1.0"]["trials"] == 2
    assert "meta[research,ridge,no regimes]" in rows
    assert rows["oracle_true_regime"]["investable"] is False
    pooled = got["pooled"]["1.0"]
    sharpes = [got[s]["1.0"]["rows"]["equal"]["sharpe"] for s in (SYN, other)]
    assert pooled["equal"]["sharpe_mean"] == pytest.approx(sum(sharpes) / 2)
    assert pooled["equal"]["datasets"] == 2
    assert pooled["equal"]["mcs_share"] in (0.0, 0.5, 1.0)
    assert pooled["oracle_true_regime"]["mcs_share"] is None
    drags = [got[s]["1.0"]["rows"]["equal"]["cost_drag"] for s in (SYN, other)]
    assert pooled["equal"]["cost_drag_mean"] == pytest.approx(sum(drags) / 2)
    diffs = [
        got[s]["1.0"]["rows"]["meta[research,table]"]["sharpe"]
        - got[s]["1.0"]["rows"]["best_single"]["sharpe"]
        for s in (SYN, other)
    ]
    mean = sum(diffs) / 2
    spread = abs(diffs[0] - diffs[1]) / 2**0.5  # the sample std of two values
    assert pooled["meta[research,table]"]["vs_best_single"] == pytest.approx(mean)
    assert pooled["meta[research,table]"]["t_vs_best_single"] == pytest.approx(
        mean / (spread / 2**0.5)
    )
    assert "best_in_hindsight" in pooled  # one row across datasets, whichever member it was
    config.write_text("without_regimes: [table]\n")
    code, _, err = run_cli(capsys, "meta", "evaluate", "--data", SYN, "--config", str(config))
    assert code == 2
    assert "the table predictor is nothing but the regime" in err
