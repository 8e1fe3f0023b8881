"""The training pipelines: example configs parse, the CLI maps bad input to exit 2, and a job
runs on the stack's Ray head through ``ray job submit`` exactly as on a cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raytrader.training.configfile import load_config
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
def test_supervised_pipeline_trains_and_registers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raytrader.models.supervised import ClassifierConfig
    from raytrader.registry import list_models
    from raytrader.training.supervised import run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = ClassifierConfig(name="a1h", importance="none", params={"n_estimators": 20})
    cfg = SupervisedRunConfig(models=(model,), to_registry=True, output_dir=str(tmp_path))
    (row,) = run(cfg)
    assert row["model"] == "a1h"
    assert row["folds"] == 5
    assert 0.0 <= row["accuracy_mean"] <= 1.0
    assert row["registered_version"] == "1"
    assert list_models(root=tmp_path)[0]["name"] == "supervised-a1h"
