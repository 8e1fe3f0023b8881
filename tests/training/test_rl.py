"""RL training with RLlib on the trading environment: learning on an exploitable market, honest
evaluation, determinism, DQN with the Rainbow parts, and a killed run resuming from its checkpoint.

Budgets are seconds; the market is synthetic with a pattern a policy can exploit (fixed-length
up and down runs), so "learning" is a measurable claim, not a smoke test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raytrader.envs import EnvConfig
from raytrader.errors import ConfigError
from raytrader.models.rl_policy import greedy_policy
from raytrader.training.rl import DQNOptions, RLConfig, evaluate, train_rl
from tests.support.markets import pattern_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def small(tmp_path: Path, **overrides: object) -> RLConfig:
    fields: dict[str, object] = {
        "data": pattern_csv(tmp_path / "pattern.csv"),
        "iterations": 8,
        "checkpoint_every": 4,
        "train_batch_size": 1024,
        "minibatch_size": 128,
        "num_epochs": 4,
        "lr": 1e-3,
        "env": EnvConfig(episode_length=128),
        "output_dir": str(tmp_path / "run"),
    }
    fields.update(overrides)
    return RLConfig.parse(fields)


def test_ppo_learns_the_pattern_and_is_evaluated_against_baselines(tmp_path: Path) -> None:
    cfg = small(tmp_path)
    result = train_rl(cfg)
    returns = [row["episode_return_mean"] for row in result.history]
    assert result.iterations == 8
    assert returns[-1] > returns[0] + 0.1, returns
    table = evaluate(cfg, greedy_policy(result.checkpoint), mlflow_run=result.mlflow_run)
    assert set(table) == {"policy", "buy_and_hold", "ma_cross"}
    assert table["policy"]["total_return"] > 0.5
    assert table["policy"]["total_return"] > table["buy_and_hold"]["total_return"] + 0.5

    # the MLflow run: per-iteration metrics, the config, the evaluation and its report
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{(Path(cfg.output_dir) / 'mlflow.db').resolve()}")
    run = client.get_run(result.mlflow_run)
    assert run.info.status == "FINISHED"
    assert run.data.params["algo"] == "ppo"
    assert run.data.tags["raytrader.checkpoint"] == result.checkpoint
    history = client.get_metric_history(result.mlflow_run, "episode_return_mean")
    assert [m.step for m in history] == list(range(1, 9))
    assert run.data.metrics["eval.total_return"] == pytest.approx(table["policy"]["total_return"])
    files = {a.path for a in client.list_artifacts(result.mlflow_run, "evaluation/report")}
    assert "evaluation/report/trades.csv" in files


def test_training_episodes_and_the_evaluation_are_in_the_experiment_store(tmp_path: Path) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from raytrader.db.engine import make_engine
    from raytrader.db.models import Backtest, Episode, Run, Step, Trade
    from raytrader.training.rl import run_key

    cfg = small(tmp_path, iterations=2, checkpoint_every=2, mlflow=False)
    cfg = cfg.model_copy(update={"record_steps": cfg.record_steps.model_copy(
        update={"every": 2, "max_per_episode": 40})})  # fmt: skip
    result = train_rl(cfg)
    evaluate(cfg, greedy_policy(result.checkpoint))
    engine = make_engine()
    with Session(engine) as s:
        run = s.scalars(select(Run).where(Run.key == run_key(cfg))).one()
        assert (run.kind, run.status, run.id) == ("rl", "finished", result.store_run)
        assert run.metrics["iterations"] == 2
        episodes = s.scalars(select(Episode).where(Episode.run_id == run.id)).all()
        # 2 iterations of 1024 steps in 128-step episodes: every finished one is written
        assert len(episodes) >= 14
        for ep in episodes[:3]:
            steps = s.scalars(select(Step).where(Step.episode_id == ep.id).order_by(Step.t)).all()
            assert 2 <= len(steps) <= 40
            assert steps[-1].t == ep.length  # the last step is always kept
            assert all(len(x.features_digest or "") == 16 for x in steps)
            assert ep.total_return == pytest.approx(steps[-1].equity / steps[0].equity - 1.0)
            trades = s.scalars(select(Trade).where(Trade.episode_id == ep.id)).all()
            assert len(trades) == ep.trades
            # the kernel's identity: the trades' P&L (open one closed at the last close) is
            # the episode's change in equity
            assert sum(t.pnl for t in trades) == pytest.approx(
                steps[-1].equity - steps[0].equity, rel=1e-9, abs=1e-6
            )
        held_out = s.scalars(select(Backtest).where(Backtest.run_id == run.id)).one()
        assert held_out.strategy == "rl:ppo"
        n = s.scalar(
            select(func.count()).select_from(Trade).where(Trade.backtest_id == held_out.id)
        )
        assert n == held_out.metrics["num_trades"]
    engine.dispose()


def test_same_seed_same_training(tmp_path: Path) -> None:
    a = train_rl(small(tmp_path / "a", iterations=2, checkpoint_every=2))
    b = train_rl(small(tmp_path / "b", iterations=2, checkpoint_every=2))
    assert [r["episode_return_mean"] for r in a.history] == [
        r["episode_return_mean"] for r in b.history
    ]


def test_dqn_with_the_rainbow_parts_trains_and_checkpoints(tmp_path: Path) -> None:
    opts = DQNOptions(n_step=3, num_atoms=11, v_min=-0.5, v_max=0.5, epsilon_timesteps=500)
    cfg = small(tmp_path, algo="dqn", iterations=1, checkpoint_every=1, dqn=opts)
    result = train_rl(cfg)
    assert result.iterations == 1
    assert (Path(result.checkpoint) / "DONE").is_file()
    table = evaluate(cfg, greedy_policy(result.checkpoint))
    assert np.isfinite(table["policy"]["sharpe"])


def test_register_as_logs_the_policy_into_its_training_run(tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from raytrader.data.sources import load_bars
    from raytrader.registry import serving_example
    from raytrader.tracking import using_uri
    from raytrader.training.rl import register_policy

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    cfg = small(
        tmp_path,
        algo="dqn",
        env=EnvConfig(episode_length=128, action="grid"),
        iterations=1,
        checkpoint_every=1,
        tracking_uri=uri,
        register_as="dqn-pattern",
    )
    result = train_rl(cfg)
    assert register_policy(cfg, result) == "1"
    client = MlflowClient(uri)
    version = client.get_model_version("dqn-pattern", "1")
    assert version.run_id == result.mlflow_run
    assert version.tags["raytrader.kind"] == "rl"
    assert client.get_run(result.mlflow_run).info.status == "FINISHED"  # left as training left it
    example = serving_example(load_bars(cfg.data))
    with using_uri(uri):
        out = mlflow.pyfunc.load_model("models:/dqn-pattern/1").predict(example)
    assert set(np.unique(out["target"])) <= set(np.linspace(-1.0, 1.0, 5))
    with pytest.raises(ConfigError, match="register_as needs mlflow"):
        small(tmp_path, mlflow=False, register_as="x")


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    cfg = small(tmp_path, iterations=6, checkpoint_every=2, train_batch_size=512)
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "raytrader.training.rl", "--config", str(config_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    checkpoints = Path(cfg.output_dir) / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "iter_000002" / "DONE").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (checkpoints / "iter_000006").exists()

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] in (2, 4)
    # the resumed run kept logging to the MLflow run the killed one had started
    from mlflow.tracking import MlflowClient

    run_id = (Path(cfg.output_dir) / "mlflow_run").read_text().strip()
    client = MlflowClient(f"sqlite:///{(Path(cfg.output_dir) / 'mlflow.db').resolve()}")
    steps = [m.step for m in client.get_metric_history(run_id, "episode_return_mean")]
    assert steps[-1] == 6
    assert client.get_run(run_id).info.status == "FINISHED"
    assert summary["iterations"] == 6
    iterations = [json.loads(line)["iteration"] for line in done.stdout.splitlines()[:-1]]
    assert iterations == list(range(summary["resumed_from"] + 1, 7))


def test_bad_configs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dqn needs a discrete action space"):
        RLConfig.parse({"algo": "dqn", "env": {"action": "continuous"}})
    cfg = small(tmp_path, iterations=1, checkpoint_every=1, train_batch_size=256, minibatch_size=64)
    train_rl(cfg)
    with pytest.raises(ConfigError, match=r"another config \(lr differ"):
        train_rl(cfg.model_copy(update={"lr": 0.1}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: sac\n")
    from raytrader.config import load_config

    with pytest.raises(ConfigError, match=r"bad.yaml.algo"):
        load_config(bad, RLConfig)


def test_a_policy_on_a_v2_subset_records_its_features_and_serving_refuses_it(
    tmp_path: Path,
) -> None:
    """The run and the registered version name the feature set and subset; the pyfunc rebuilds
    the observation from that set's columns; the version's feature-service tag is not the served
    one, so the decision service (bar_features_v1 rows) refuses it instead of feeding it the
    wrong features."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from raytrader.contract import FEATURE_SERVICE
    from raytrader.data.sources import load_bars
    from raytrader.features import BAR_FEATURES_V2, compute_features
    from raytrader.tracking import using_uri
    from raytrader.training.rl import register_policy

    subset = ("logret_1", "logret_1_lag1", "close_to_sma_10", "rsi_7")
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    env = EnvConfig(episode_length=128, feature_set="bar_features_v2", features=subset)
    cfg = small(
        tmp_path, env=env, iterations=1, checkpoint_every=1, tracking_uri=uri, register_as="ppo-v2"
    )
    result = train_rl(cfg)
    table = evaluate(cfg, greedy_policy(result.checkpoint))
    assert np.isfinite(table["policy"]["total_return"])
    client = MlflowClient(uri)
    expected = {
        "raytrader.feature_set": "bar_features_v2",
        "raytrader.features": ",".join(subset),
        "raytrader.feature_service": "none",
    }
    run_tags = client.get_run(result.mlflow_run).data.tags
    assert {k: run_tags[k] for k in expected} == expected
    assert run_tags["raytrader.feature_source"] == "batch"

    assert register_policy(cfg, result) == "1"
    version = client.get_model_version("ppo-v2", "1")
    assert {k: version.tags[k] for k in expected} == expected
    with using_uri(uri):
        model = mlflow.pyfunc.load_model("models:/ppo-v2/1")
    inner = model.unwrap_python_model()
    assert inner.env.feature_set == "bar_features_v2"
    assert inner.env.features == inner.normalizer.names == subset
    bars = load_bars(cfg.data)
    rows = compute_features(bars, BAR_FEATURES_V2).tail(20)
    out = inner.predict(None, rows)
    assert len(out) == 20
    assert set(np.unique(out["target"])) <= {-1.0, 0.0, 1.0}
    # the decision service's first check: a version whose feature service is not the one it
    # serves (the online store's bar_features_v1 rows) is refused, named
    assert version.tags["raytrader.feature_service"] != FEATURE_SERVICE

    with pytest.raises(ConfigError, match="feature_source feast serves bar_features_v1 only"):
        RLConfig.parse({"feature_source": "feast", "env": {"feature_set": "bar_features_v2"}})


def test_a_run_saved_before_the_feature_fields_existed_resumes(tmp_path: Path) -> None:
    cfg = small(tmp_path, iterations=1, checkpoint_every=1, train_batch_size=256, minibatch_size=64)
    train_rl(cfg)
    saved = Path(cfg.output_dir) / "config.json"
    old = json.loads(saved.read_text())
    del old["env"]["feature_set"], old["env"]["features"]  # what an earlier version wrote
    saved.write_text(json.dumps(old))
    again = train_rl(cfg)
    assert again.resumed_from == 1
