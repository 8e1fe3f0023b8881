"""The registered meta ensemble: built on rule members, served by the decision service with the
same endpoint, explained, and equal bar for bar to its own backtest — whether a replica saw
every bar, skipped some, or starts cold and catches up from the offline store."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import API, AUTH

pytestmark = pytest.mark.integration  # a real MLflow store and a real Feast store, on disk

DATA = "synthetic:n_bars=600,timeframe=1d,seed=5,symbol=METAT"
RULES = (
    ("mt-ma", "ma_cross", {"fast": 10, "slow": 50}),
    ("mt-ma-long", "ma_cross", {"fast": 20, "slow": 50, "short": False}),
    ("mt-macd", "macd", {}),
    ("mt-macd-long", "macd", {"short": False}),
    ("mt-hold", "buy_and_hold", {}),
)


@dataclass
class Built:
    root: Path
    uri: str
    bars: Any
    result: dict[str, Any]

    @property
    def decisions(self) -> pd.DataFrame:
        return self.result["decisions"]


def build(root: Path, uri: str, **overrides: Any) -> dict[str, Any]:
    from raytrader.ensemble import Member, register_rules
    from raytrader.meta.model import MetaEnsembleConfig, build_meta

    versions = register_rules(RULES, tracking_uri=uri, root=root, data=DATA)
    config = MetaEnsembleConfig(
        members=tuple(Member(name=n, version=versions[n]) for n, _, _ in RULES),
        data=DATA,
        alias="champion",
        output_dir=str(root),
        tracking_uri=uri,
        **overrides,
    )
    return build_meta(config)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from raytrader.data.sources import load_bars
    from raytrader.features import feast_repo as fr
    from raytrader.features.engine import compute_features
    from raytrader.tracking import embedded_uri

    root = tmp_path_factory.mktemp("meta-model")
    uri = embedded_uri(root)
    bars = load_bars(DATA)
    result = build(root, uri)
    fs = fr.store("sqlite", data=root / "feast")
    fr.apply(fs)
    rows = fr.feature_rows(bars, compute_features(bars))
    fr.append_offline(rows, root / "feast")  # the stream job's offline rows
    return Built(root=root, uri=uri, bars=bars, result=result)


def service(built: Built) -> Any:
    from fastapi.testclient import TestClient

    from raytrader.serving.config import ServiceConfig, Tokens
    from raytrader.serving.model import ModelHolder
    from raytrader.serving.service import DecisionService, LocalModel, create_app

    config = ServiceConfig(
        model_uri="models:/raytrader-meta@champion",
        tracking_uri=built.uri,
        feast_profile="sqlite",
        feast_data=str(built.root / "feast"),
        poll_interval_s=0,
        stale="flag",
        unwarm="flag",
    )
    holder = ModelHolder(config)
    assert holder.check().startswith("swapped to"), holder.record.last_failure
    return TestClient(
        create_app(DecisionService(config, LocalModel(holder), tokens=Tokens(api=API, admin=None)))
    )


def row(built: Built, i: int) -> dict[str, Any]:
    from raytrader.features.engine import compute_features

    feats = compute_features(built.bars).iloc[i]
    close = built.bars.index[i] + built.bars.timeframe.delta
    return {
        "symbol": "METAT",
        "features": {
            n: (None if pd.isna(v) else float(v)) for n, v in feats.items() if n != "warm"
        },
        "warm": bool(feats["warm"]),
        "feature_time": close.isoformat(),
    }


def ask(client: Any, built: Built, i: int) -> dict[str, Any]:
    r = client.post("/v1/decisions:with-features", json={"rows": [row(built, i)]}, headers=AUTH)
    assert r.status_code == 200, r.text
    (d,) = r.json()["decisions"]
    return dict(d)


def same_as_backtest(built: Built, i: int, d: dict[str, Any]) -> None:
    want = built.decisions.iloc[i]
    target = float(want["target"])
    assert (d["target"] is None and math.isnan(target)) or d["target"] == target, i
    assert d["action"] == want["action"], i
    expected = json.loads(want["explanation"])
    got = dict(d["explanation"])
    got.pop("caught_up"), expected.pop("caught_up")
    assert got == expected, i


def test_build_registers_a_meta_version_with_its_out_of_sample_backtest(built: Built) -> None:
    from raytrader import wiring

    version = built.result["version"]
    mv = wiring.mlflow_client(built.uri).get_model_version("raytrader-meta", str(version))
    assert mv.tags["raytrader.kind"] == "meta"
    assert mv.tags["raytrader.meta.predictor"].startswith("table@")
    run = wiring.mlflow_client(built.uri).get_run(mv.run_id)
    for key in ("backtest.sharpe", "backtest_all.sharpe", "equal_weight.sharpe"):
        assert math.isfinite(run.data.metrics[key]), key
    logged = {a.path for a in wiring.mlflow_client(built.uri).list_artifacts(mv.run_id, "plots")}
    assert logged == {"plots/weights.png", "plots/equity.png"}
    assert all(Path(path).stat().st_size > 10_000 for path in built.result["plots"].values())
    decided = built.decisions["target"].to_numpy(float)
    assert np.isfinite(decided[-400:]).all()  # members out of sample: a decision every bar


def test_served_decisions_equal_the_backtest_bar_for_bar(built: Built) -> None:
    client = service(built)
    n = len(built.bars)
    first = ask(client, built, n - 40)  # a cold replica: its state comes from the offline store
    assert first["explanation"]["caught_up"] == n - 40
    same_as_backtest(built, n - 40, first)
    for i in range(n - 39, n):
        d = ask(client, built, i)
        assert d["explanation"]["caught_up"] == 0
        same_as_backtest(built, i, d)
        assert [m["name"] for m in d["members"]] == [name for name, _, _ in RULES]
        assert {m["weight"] for m in d["members"]} == {None}  # by bar, in the explanation


def test_a_replica_that_missed_bars_catches_up_and_agrees(built: Built) -> None:
    client = service(built)
    n = len(built.bars)
    ask(client, built, n - 30)
    d = ask(client, built, n - 25)  # four bars went to another replica
    assert d["explanation"]["caught_up"] == 4
    same_as_backtest(built, n - 25, d)
    again = ask(client, built, n - 25)  # the same bar again: the same decision
    assert again["target"] == d["target"]
    assert again["explanation"]["caught_up"] == 0


def test_a_row_in_a_symbols_past_is_refused_naming_it(built: Built) -> None:
    client = service(built)
    n = len(built.bars)
    ask(client, built, n - 5)
    r = client.post(
        "/v1/decisions:with-features", json={"rows": [row(built, n - 10)]}, headers=AUTH
    )
    assert r.status_code == 422
    assert "METAT" in r.json()["detail"]
    assert "in its past" in r.json()["detail"]


def test_the_same_config_builds_the_same_decisions(built: Built, tmp_path: Path) -> None:
    from raytrader.tracking import embedded_uri

    again = build(tmp_path, embedded_uri(tmp_path))["decisions"]
    assert np.array_equal(
        again["target"].to_numpy(float), built.decisions["target"].to_numpy(float), equal_nan=True
    )
    assert list(again["explanation"]) == list(built.decisions["explanation"])


class Negated:
    """A predictor that ranks the members the other way round (the gate must refuse it)."""

    kind = "negated"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def fit(self, rows: pd.DataFrame) -> Negated:
        return self

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return -np.asarray(self.inner.predict(rows))


def test_the_refit_gate_refuses_a_worse_predictor_and_needs_bars_after_both_fits(
    built: Built,
) -> None:
    import dataclasses

    from raytrader.errors import ConfigError
    from raytrader.meta.model import compare, load_meta, meta_rows

    _, meta = load_meta("models:/raytrader-meta@champion", built.uri)
    spec = meta.spec
    targets = built.decisions[[f"{m}.target" for m in spec.members]]
    targets.columns = list(spec.members)
    targets.index = built.bars.index
    rows = meta_rows(meta.config, built.bars, targets, spec.trained_until)
    same = compare(spec, spec, rows, tolerance=0.0)
    assert same["accepted"]
    assert same["candidate_ic"] == same["current_ic"]
    worse = dataclasses.replace(spec, predictor=Negated(spec.predictor))
    gate = compare(spec, worse, rows, tolerance=0.0)
    assert gate["candidate_ic"] == pytest.approx(-gate["current_ic"])
    assert gate["accepted"] == (gate["current_ic"] <= 0.0)
    late = dataclasses.replace(spec, fitted_until=built.bars.index[-3])
    with pytest.raises(ConfigError, match="bar\\(s\\) with closed labels after"):
        compare(spec, late, rows, tolerance=0.0)


def test_update_registers_the_refit_under_challenger(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.support.cli import run_cli

    config = tmp_path / "update.yaml"
    config.write_text(
        f"model: models:/raytrader-meta@champion\ntracking_uri: {built.uri}\n"
        f"output_dir: {built.root}\n"
    )
    code, out, err = run_cli(capsys, "meta", "update", "--config", str(config), "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["gate"]["accepted"]
    assert result["replaces"] == str(built.result["version"])
    assert result["alias"] == "challenger"
    from raytrader import wiring

    client = wiring.mlflow_client(built.uri)
    challenger = client.get_model_version_by_alias("raytrader-meta", "challenger")
    assert str(challenger.version) == str(result["version"])
    assert json.loads(challenger.tags["raytrader.meta.gate"])["accepted"] is True


def test_explain_prints_the_decision_and_its_reasons(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.cli import run_cli

    args = ("meta", "explain", "--data", DATA, "--tracking-uri", built.uri)
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    got = json.loads(out)
    want = json.loads(built.decisions["explanation"].iloc[-1])
    assert got["explanation"] == want
    at = str(built.bars.index[-10].date())
    code, out, _ = run_cli(capsys, *args, "--at", at, "--json")
    assert json.loads(out)["explanation"] == json.loads(built.decisions["explanation"].iloc[-10])
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "regime" in out
    assert "mt-hold" in out
    code, _, err = run_cli(capsys, *args, "--model", "models:/mt-ma/1")
    assert code == 2
    assert "kind 'rule', not a meta ensemble" in err
