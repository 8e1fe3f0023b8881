"""The training pipelines: example configs parse, the CLI maps bad input to exit 2, and a job
runs on the stack's Ray head through ``ray job submit`` exactly as on a cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raytrader.config import load_config
from raytrader.ensemble import EnsembleConfig
from raytrader.meta.model import MetaEnsembleConfig
from raytrader.meta.study import StudyConfig
from raytrader.meta.update import MetaUpdateConfig
from raytrader.training.rl import RLConfig
from raytrader.training.supervised import SupervisedRunConfig
from raytrader.training.tune import SearchConfig
from tests.support.cli import run_cli
from tests.support.stack_fixture import stack  # noqa: F401  (pytest fixture)

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("train_rl.yaml", RLConfig),
        ("train_supervised.yaml", SupervisedRunConfig),
        ("hyperopt.yaml", SearchConfig),
        ("hyperopt_supervised.yaml", SearchConfig),
        ("hyperopt_rl.yaml", SearchConfig),
        ("ensemble.yaml", EnsembleConfig),
        ("meta_evaluate.yaml", StudyConfig),
        ("meta_evaluate_synthetic.yaml", StudyConfig),
        ("meta_evaluate_mlp.yaml", StudyConfig),
        ("meta_build.yaml", MetaEnsembleConfig),
        ("meta_update.yaml", MetaUpdateConfig),
    ],
)
def test_example_configs_parse(name: str, schema: type) -> None:
    assert isinstance(load_config(CONFIGS / name, schema), schema)


def test_bad_config_files_exit_2_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "rl.yaml"
    bad.write_text("algo: ppo\niterations: 0\n")
    code, _, err = run_cli(capsys, "train", "rl", "--config", str(bad))
    assert code == 2
    assert err.startswith("error: rl.yaml.iterations:")
    code, _, err = run_cli(capsys, "tune", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "missing.yaml: cannot read the config file" in err
    broken = tmp_path / "s.yaml"
    broken.write_text("models: [\n")
    code, _, err = run_cli(capsys, "train", "supervised", "--config", str(broken))
    assert code == 2
    assert "s.yaml: not valid YAML" in err


def test_models_list_and_promote_on_the_embedded_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    assert code == 0
    assert json.loads(out) == []
    code, _, err = run_cli(capsys, "models", "promote", "nope", "1", "--alias", "champion")
    assert code == 2
    assert "model 'nope' version 1" in err
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    client = MlflowClient(uri, uri)
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path))
    assert run_cli(capsys, "models", "promote", "m", "1")[1].strip() == "m@champion -> version 1"
    assert run_cli(capsys, "models", "promote", "m", "2")[1].strip() == (
        "m@champion -> version 2 (was 1)"
    )
    assert run_cli(capsys, "models", "rollback", "m")[1].strip() == (
        "m@champion -> version 1 (was 2)"
    )
    code, _, err = run_cli(capsys, "models", "rollback", "m")
    assert code == 2
    assert "no earlier version to roll back to" in err


@pytest.mark.integration
@pytest.mark.slow
def test_rl_pipeline_runs_as_a_ray_job_on_the_stack(stack, tmp_path: Path) -> None:  # noqa: F811
    cfg = RLConfig(
        iterations=1,
        checkpoint_every=1,
        train_batch_size=256,
        minibatch_size=64,
        num_epochs=1,
        output_dir=str(tmp_path / "run"),
    )
    config_file = tmp_path / "rl.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, **stack.config.client_env()}
    env.pop("RAY_ADDRESS", None)  # the job API goes to the dashboard
    proc = subprocess.run(
        [
            ray,
            "job",
            "submit",
            "--address",
            stack.config.ray_dashboard_url,
            "--",
            sys.executable,
            "-m",
            "raytrader.training.rl",
            "--config",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "succeeded" in proc.stdout
    summary = json.loads(
        next(line for line in proc.stdout.splitlines() if line.startswith('{"iterations"'))
    )
    assert summary["iterations"] == 1
    assert (Path(summary["checkpoint"]) / "DONE").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_supervised_pipeline_tracks_each_model_and_registers_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from raytrader.registry import list_models

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"""
models:
  - {{name: a1h, importance: impurity, params: {{n_estimators: 20}}}}
  - {{name: a1h_hgb, estimator: hist_gradient_boosting, importance: none,
     params: {{max_iter: 20}}}}
to_registry: true
output_dir: {tmp_path}
"""
    )
    code, out, err = run_cli(capsys, "train", "supervised", "--config", str(config))
    assert code == 0, err
    assert "a1h_hgb" in out  # the table (after Rich's progress)
    models = {m["name"]: m for m in list_models(root=tmp_path)}
    assert set(models) == {"supervised-a1h", "supervised-a1h_hgb"}

    client = MlflowClient(f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    version = client.get_model_version("supervised-a1h", "1")
    run = client.get_run(version.run_id)  # the model was logged into its training run
    assert run.info.status == "FINISHED"
    assert run.data.tags["raytrader.feature_service"] == "ensemble_v1"
    assert run.data.tags["raytrader.data"].startswith("eurusd 20")
    assert run.data.params["params.n_estimators"] == "20"
    accuracy = client.get_metric_history(run.info.run_id, "accuracy")
    assert sorted(m.step for m in accuracy) == [0, 1, 2, 3, 4]  # one value per fold
    assert run.data.metrics["accuracy_mean"] == pytest.approx(
        sum(m.value for m in accuracy) / 5, abs=1e-12
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "folds.json", "importance.json", "oos_report"} <= artifacts
    report = {a.path for a in client.list_artifacts(run.info.run_id, "oos_report")}
    assert {"oos_report/equity_drawdown.png", "oos_report/trades.csv"} <= report


@pytest.mark.integration
def test_tune_cli_prints_the_best_parameters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(
        f"""
name: cli
space: {{fast: {{kind: int, low: 5, high: 20}}, slow: {{kind: int, low: 40, high: 100}}}}
folds: 2
num_samples: 2
search: random
mlflow: false
output_dir: {tmp_path}
"""
    )
    code, out, err = run_cli(capsys, "tune", "--config", str(config))
    assert code == 0, err
    flat = " ".join(re.sub("[│┃]", " ", out).split())  # Rich wraps long cells
    assert "best validation Sharpe" in flat
    assert "biased upward" in flat
    assert "deflated Sharpe ratio" in flat
    assert "fast=" in flat
    # the holdout, scored once, next to buy-and-hold
    assert "holdout, scored once" in flat
    assert "buy and hold" in flat
    code, _, err = run_cli(capsys, "tune", "--config", str(config))
    assert code == 2  # the search exists: resume it or rename it
    assert "--restore" in err
