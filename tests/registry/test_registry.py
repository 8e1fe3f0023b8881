"""Models as MLflow pyfuncs with one interface (features in, target + confidence out), registered,
promoted by alias, loaded by alias, and answered by ``mlflow models serve``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from raytrader.data import load_bars
from raytrader.errors import ConfigError
from raytrader.features import compute_features
from raytrader.registry import (
    RLPolicyModel,
    RuleStrategyModel,
    list_models,
    promote,
    register_model,
    rl_artifacts,
)
from raytrader.strategies.base import make_strategy

pytestmark = pytest.mark.slow


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """This test's SQLite store, for the fluent API too; the previous one is restored after."""
    from raytrader.tracking import using_uri

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    with using_uri(uri):
        yield uri


@pytest.fixture(scope="module")
def window() -> pd.DataFrame:
    """The serving input: the last 300 GOOG bars with their features."""
    bars = load_bars("goog")
    feats = compute_features(bars).drop(columns=["warm"])
    frame = pd.concat([bars.frame, feats], axis=1).iloc[-300:]
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    return frame


def test_rule_strategy_round_trip_by_alias(tracking: str, tmp_path: Path, window) -> None:
    v1 = register_model(
        RuleStrategyModel("ma_cross", {"fast": 10, "slow": 20}),
        name="ma-cross",
        kind="rule",
        input_example=window,
        tags={"raytrader.data": "goog 2012-2013"},
        root=tmp_path,
    )
    v2 = register_model(
        RuleStrategyModel("ma_cross", {"fast": 5, "slow": 50}),
        name="ma-cross",
        kind="rule",
        input_example=window,
        root=tmp_path,
    )
    assert (v1, v2) == ("1", "2")
    promote("ma-cross", v1, "champion", root=tmp_path)
    promote("ma-cross", v2, "challenger", root=tmp_path)
    listed = list_models(root=tmp_path)
    assert [{k: v for k, v in m.items() if k != "versions"} for m in listed] == [
        {
            "name": "ma-cross",
            "latest": 2,
            "aliases": {"champion": 1, "challenger": 2},
            "kind": "rule",
        }
    ]
    versions = listed[0]["versions"]
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[1]["tags"]["raytrader.data"] == "goog 2012-2013"
    assert all(v["created_at"].endswith("+00:00") for v in versions)
    out = mlflow.pyfunc.load_model("models:/ma-cross@champion").predict(window)
    want = make_strategy("ma_cross", {"fast": 10, "slow": 20}).target_positions(window)
    assert list(out.columns) == ["target", "confidence"]
    assert np.array_equal(out["target"].to_numpy(), want.to_numpy())
    version = mlflow.MlflowClient().get_model_version("ma-cross", "1")
    assert version.tags["raytrader.feature_service"] == "ensemble_v1"
    assert version.tags["raytrader.data"] == "goog 2012-2013"
    with pytest.raises(ConfigError, match="alias must be one of"):
        promote("ma-cross", v1, "production", root=tmp_path)
    with pytest.raises(ConfigError, match="version 9"):
        promote("ma-cross", 9, "champion", root=tmp_path)


def test_input_lacking_columns_is_refused(window) -> None:
    model = RuleStrategyModel("ma_cross", {"fast": 10, "slow": 20})
    with pytest.raises(ConfigError, match="lacks 1 column"):
        model.predict(None, window.drop(columns=["close"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_mlflow_models_serve_answers_a_request(tracking: str, tmp_path: Path, window) -> None:
    version = register_model(
        RuleStrategyModel("ma_cross", {"fast": 10, "slow": 20}),
        name="served",
        kind="rule",
        input_example=window,
        root=tmp_path,
    )
    promote("served", version, "champion", root=tmp_path)
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "models",
            "serve",
            "-m",
            "models:/served@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # mlflow execs `uvicorn` by name: the venv's bin must be on PATH, as when activated
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking,
            "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps({"dataframe_split": json.loads(window.to_json(orient="split"))}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
                    answer = json.loads(resp.read())
                break
            except OSError:
                assert proc.poll() is None, "mlflow models serve exited"
                assert time.monotonic() < deadline, "mlflow models serve did not answer"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows = answer["predictions"]
    assert len(rows) == len(window)
    want = make_strategy("ma_cross", {"fast": 10, "slow": 20}).target_positions(window)
    assert [r["target"] for r in rows] == want.tolist()


@pytest.mark.integration
def test_rl_policy_pyfunc_acts_like_the_policy(tracking: str, tmp_path: Path, window) -> None:
    from raytrader.envs import EnvConfig, TradingEnv
    from raytrader.models.rl_policy import greedy_policy
    from raytrader.training.rl import RLConfig, load_market, train_rl

    cfg = RLConfig(
        iterations=1,
        checkpoint_every=1,
        train_batch_size=256,
        minibatch_size=64,
        num_epochs=1,
        env=EnvConfig(episode_length=64),
        output_dir=str(tmp_path / "rl"),
    )
    result = train_rl(cfg)
    train, _ = load_market(cfg)
    normalizer = TradingEnv(train, cfg.env).normalizer
    version = register_model(
        RLPolicyModel(),
        name="ppo-goog",
        kind="rl",
        input_example=window,
        artifacts=rl_artifacts(result.checkpoint, normalizer, cfg.env),
        root=tmp_path,
    )
    promote("ppo-goog", version, "champion", root=tmp_path)
    out = mlflow.pyfunc.load_model("models:/ppo-goog@champion").predict(window)
    act = greedy_policy(result.checkpoint)
    names = list(normalizer.names)
    z = normalizer.transform(window[names].to_numpy(dtype=np.float64))
    obs = np.concatenate([z, np.zeros((len(window), 3))], axis=1).astype(np.float32)
    want = np.array([np.linspace(-1, 1, 3)[act(o)] for o in obs])
    assert np.array_equal(out["target"].to_numpy(), want)
    assert ((out["confidence"] >= 1 / 3 - 1e-9) & (out["confidence"] <= 1)).all()


@pytest.mark.integration
def test_supervised_pyfunc_equals_the_trained_pipeline(tracking: str, tmp_path: Path) -> None:
    from raytrader.models.supervised import ClassifierConfig, train
    from raytrader.registry import SupervisedModel, supervised_artifacts

    cfg = ClassifierConfig(timeframe="1h", importance="none", params={"n_estimators": 20})
    result = train(cfg)
    bars = load_bars("eurusd")
    direct = compute_features(bars).iloc[-500:]
    feats = direct.copy()
    feats.index = feats.index.strftime("%Y-%m-%dT%H:%M:%SZ")  # as a JSON request carries it
    version = register_model(
        SupervisedModel(),
        name="analyst-1h",
        kind="supervised",
        input_example=feats,
        artifacts=supervised_artifacts(result.model),
        root=tmp_path,
    )
    promote("analyst-1h", version, "challenger", root=tmp_path)
    out = mlflow.pyfunc.load_model("models:/analyst-1h@challenger").predict(feats)
    assert np.array_equal(out["target"].to_numpy(), result.model.predict_targets(direct))
    assert np.array_equal(out["confidence"].to_numpy(), result.model.confidence(direct))
