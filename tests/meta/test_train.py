"""``raytrader meta train``: every predictor walked forward as Ray tasks, the choice by the rule,
a parent MLflow run with a child per task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raytrader.meta.train import KindScore, choose
from tests.meta.test_cli import SYN, study_file
from tests.support.cli import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_scores_every_predictor_chooses_and_records_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import ray
    from mlflow.tracking import MlflowClient

    config = study_file(
        tmp_path,
        "training: {predictors: [ewma, table, ridge, mlp], seeds: 2, refit_bars: 200, min_rows: 200}\n",
    )
    try:
        code, out, err = run_cli(
            capsys, "meta", "train", "--data", SYN, "--config", str(config),
            "--root", str(tmp_path / "runs"), "--json",
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert code == 0, err
    got = json.loads(out)
    kinds = {s["kind"]: s for s in got["scores"]}
    assert set(kinds) == {"ewma", "table", "ridge", "mlp"}
    assert kinds["mlp"]["seeds"] == 2
    assert kinds["mlp"]["ic_std"] > 0  # two seeds, two different fits
    assert kinds["table"]["seeds"] == 1
    best_baseline = max(kinds[k]["ic"] for k in ("ewma", "table", "ridge"))
    expected = "mlp" if kinds["mlp"]["ic"] >= best_baseline else None
    assert got["predictor"] == (
        expected or max(("ewma", "table", "ridge"), key=lambda k: kinds[k]["ic"])
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parent = client.get_run(got["mlflow_run_id"])
    assert parent.data.tags["raytrader.meta.predictor"] == got["predictor"]
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 1 + 1 + 1 + 2


def test_the_mlp_is_the_default_only_when_it_ranks_at_least_as_well() -> None:
    def score(kind: str, ic: float) -> KindScore:
        return KindScore(kind, ic, 0.0, 1.0, 0.5, 1)

    assert choose([score("table", 0.05), score("mlp", 0.05)])[0] == "mlp"
    kind, reason = choose([score("table", 0.05), score("ridge", 0.02), score("mlp", 0.04)])
    assert kind == "table"
    assert "beats mlp's" in reason
