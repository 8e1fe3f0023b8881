"""The decision API on a local model holder: decisions, auth, client errors, metrics, swaps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import ADMIN_AUTH, AUTH, World, make_world
from tests.support.stack_fixture import stack  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.integration  # a real MLflow store and a real Feast store, on disk


def _features_row(world: World, position: float = 0.0) -> dict[str, Any]:
    from raytrader.features.engine import compute_features

    feats = compute_features(world.bars).iloc[-1]
    names = [c for c in feats.index if c != "warm"]
    close = world.bars.index[-1] + pd.Timedelta(days=1)
    return {
        "symbol": "GOOG",
        "position": position,
        "features": {n: (None if pd.isna(feats[n]) else float(feats[n])) for n in names},
        "warm": bool(feats["warm"]),
        "feature_time": close.isoformat(),
    }


def test_a_decision_is_the_ensemble_on_the_online_row(world: World) -> None:
    import mlflow

    from raytrader.ensemble import decision_frame
    from raytrader.registry import serving_example

    client = world.app()
    r = client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    (d,) = body["decisions"]
    assert body["model"] == {"name": "raytrader-ensemble", "version": "1"} == d["model"]
    assert [(m["name"], m["version"], m["weight"]) for m in d["members"]] == [
        ("t-ma-cross", 1, 2.0),
        ("t-macd", 1, 1.0),
    ]
    ma, macd = (m["target"] for m in d["members"])
    assert d["target"] == pytest.approx((2 * ma + macd) / 3, abs=1e-12)
    assert d["action"] in {"buy", "hold", "sell"}
    last_close = world.bars.index[-1] + pd.Timedelta(days=1)
    assert d["feature_time"] == last_close.strftime("%Y-%m-%dT%H:%M:%SZ")  # the last bar's close
    assert d["members_missing"] == []
    assert d["feature_age_s"] > 0
    assert d["warm"] is True
    assert d["stale"] is False

    # the same as the registered ensemble on the same row, loaded by MLflow
    from raytrader.tracking import using_uri

    with using_uri(world.uri):
        model = mlflow.pyfunc.load_model("models:/raytrader-ensemble/1")
    row = decision_frame(serving_example(world.bars, n=1))
    assert model.predict(row)["target"].iat[0] == d["target"]


def test_with_features_matches_the_feast_path(world: World) -> None:
    client = world.app()
    from_store = client.post(
        "/v1/decisions", json={"symbols": [{"symbol": "GOOG", "position": 0.5}]}, headers=AUTH
    ).json()["decisions"][0]
    inline = client.post(
        "/v1/decisions:with-features", json={"rows": [_features_row(world, 0.5)]}, headers=AUTH
    )
    assert inline.status_code == 200, inline.text
    d = inline.json()["decisions"][0]
    for key in ("target", "confidence", "action", "members", "feature_time", "position"):
        assert d[key] == from_store[key], key


def test_every_v1_route_needs_the_token(world: World) -> None:
    client = world.app()
    for method, path, body in (
        ("post", "/v1/decisions", {"symbols": ["GOOG"]}),
        ("post", "/v1/decisions:with-features", {"rows": [_features_row(world)]}),
        ("get", "/v1/model", None),
        ("post", "/v1/admin/reload", None),
    ):
        kw: dict[str, Any] = {} if body is None else {"json": body}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YTpi"}):
            r = getattr(client, method)(path, headers=headers, **kw)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    # the API token is not the admin token
    assert client.post("/v1/admin/reload", headers=AUTH).status_code == 401
    r = client.post("/v1/admin/reload", headers=ADMIN_AUTH)
    assert r.status_code == 200
    assert r.json()["outcome"] == "unchanged"
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path
    # without an admin token admin actions are off
    no_admin = world.app(admin=None)
    r = no_admin.post("/v1/admin/reload", headers=ADMIN_AUTH)
    assert r.status_code == 403
    assert "RAYTRADER_ADMIN_TOKEN" in r.json()["detail"]


def test_client_mistakes_are_4xx_naming_the_problem(world: World) -> None:
    client = world.app(max_symbols=2)

    def post(path: str, **kw: Any) -> tuple[int, str]:
        r = client.post(path, headers={**AUTH, "Content-Type": "application/json"}, **kw)
        return r.status_code, r.json()["detail"]

    assert post("/v1/decisions", content=b'{"symbols": [')[0] == 422
    code, detail = post("/v1/decisions", json={"symbols": []})
    assert code == 422
    assert "body.symbols" in detail
    code, detail = post("/v1/decisions", json={"symbols": ["GOOG"], "extra": 1})
    assert code == 422
    assert "body.extra" in detail
    code, detail = post("/v1/decisions", json={"symbols": [{"symbol": "GOOG", "position": 2}]})
    assert code == 422
    assert "position" in detail
    # a symbol twice (two accounts): one decision per entry, in order
    r = client.post(
        "/v1/decisions",
        json={"symbols": ["GOOG", {"symbol": "GOOG", "position": 0.5}]},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert [(d["symbol"], d["position"]) for d in r.json()["decisions"]] == [
        ("GOOG", 0.0),
        ("GOOG", 0.5),
    ]
    code, detail = post("/v1/decisions", json={"symbols": ["GOOG", "NOPE"]})
    assert code == 404
    assert "NOPE" in detail
    code, detail = post("/v1/decisions", json={"symbols": ["A", "B", "C"]})
    assert code == 413
    assert "limit is 2" in detail

    row = _features_row(world)
    del row["features"]["rsi_14"]
    code, detail = post("/v1/decisions:with-features", json={"rows": [row]})
    assert code == 422
    assert "body.rows.0.features.rsi_14: Field required" in detail
    row = _features_row(world)
    row["features"]["bogus"] = 1.0
    code, detail = post("/v1/decisions:with-features", json={"rows": [row]})
    assert code == 422
    assert "body.rows.0.features.bogus" in detail
    # numbers are JSON numbers: a boolean is not a count of bars
    code, detail = post(
        "/v1/decisions", json={"symbols": [{"symbol": "GOOG", "time_in_position": False}]}
    )
    assert code == 422
    assert "time_in_position" in detail
    row = _features_row(world)
    row["feature_time"] = "2024-01-02T21:00:00"
    code, detail = post("/v1/decisions:with-features", json={"rows": [row]})
    assert code == 422
    assert "timezone" in detail


def test_stale_features_are_refused_or_flagged(world: World) -> None:
    assert world.config().feature_age_limit_s == 2 * 86400  # two 1d bars by default
    reject = world.app(max_feature_age_s=3600)

    def refused() -> float:
        # Feast switches prometheus_client to multiprocess mode when imported: counters of one
        # name then share a value across registries in this process, so count the difference
        m = re.search(
            r'raytrader_decisions_refused_total\{reason="stale"\} ([0-9.]+)',
            reject.get("/metrics").text,
        )
        return float(m.group(1)) if m else 0.0

    before = refused()
    r = reject.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
    assert r.status_code == 503
    detail = r.json()["detail"]
    assert detail.startswith("no decision: stale features (GOOG ")
    assert "the limit is 3600 s for 1d bars" in detail
    assert refused() == before + 1
    flag = world.app(max_feature_age_s=3600, stale="flag")
    r = flag.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["decisions"][0]["stale"] is True
    # fresh inline features pass
    row = _features_row(world)
    row["feature_time"] = pd.Timestamp.now(tz="UTC").isoformat()
    r = reject.post("/v1/decisions:with-features", json={"rows": [row]}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["decisions"][0]["stale"] is False


def test_no_model_is_503_and_not_ready(world: World) -> None:
    client = world.app(check=False)
    r = client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
    assert r.status_code == 503
    assert "no model" in r.json()["detail"]
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "no model loaded" in r.json()["detail"]
    missing = world.app(model_uri="models:/nope@champion")
    r = missing.get("/readyz")
    assert r.status_code == 503
    assert "nope" in r.json()["detail"]


def test_metrics_follow_prometheus_conventions(world: World) -> None:
    client = world.app()
    client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
    client.post("/v1/decisions", json={"symbols": ["NOPE"]}, headers=AUTH)
    text = client.get("/metrics").text
    for line in (
        'raytrader_http_requests_total{method="POST",route="/v1/decisions",status="200"} ',
        'raytrader_http_requests_total{method="POST",route="/v1/decisions",status="404"} ',
        'raytrader_model_info{name="raytrader-ensemble",version="1"} 1.0',
        'raytrader_model_swaps_total{replica="local",result="success"} 1.0',
        'raytrader_model_swaps_total{replica="local",result="failure"} 0.0',
        'raytrader_decisions_total{action="',
        'raytrader_http_request_duration_seconds_bucket{le="0.025",method="POST",route="/v1/decisions"}',
        "raytrader_decision_feature_age_seconds_count ",
        "raytrader_feast_fetch_duration_seconds_count ",
    ):
        assert line in text, line


@pytest.mark.slow
def test_alias_moves_swap_good_versions_and_never_a_broken_one(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    client = world.app()
    holder = client.holder  # type: ignore[attr-defined]

    def served() -> str:
        r = client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH)
        assert r.status_code == 200, r.text
        return str(r.json()["model"]["version"])

    assert served() == "1"
    assert world.ensemble(weights=(1.0, 3.0)) == "2"
    assert served() == "1"  # nothing moves until a check
    r = client.post("/v1/admin/reload", headers=ADMIN_AUTH)
    assert r.json()["outcome"] == "swapped to 2 from 1"
    assert served() == "2"

    assert world.broken() == "3"
    assert holder.check().startswith(
        "failed 3: ConfigError: smoke decision on its input example: the model has no decision"
    )
    assert served() == "2"  # the broken version never serves
    status = client.get("/v1/model", headers=AUTH).json()
    assert status["version"] == "2"
    assert status["swap_failures"] == 1
    assert status["failed_version"] == "3"
    assert "no decision (NaN) on 5 warm row(s)" in status["last_failure"]
    assert holder.check() == "skipped 3"  # not retried until the alias moves
    assert 'result="failure"} 1.0' in client.get("/metrics").text

    from raytrader.registry import promote

    promote("raytrader-ensemble", "1", "champion", tracking_uri=world.uri, root=world.root)
    assert holder.check() == "swapped to 1 from 2"  # rolling back = moving the alias back
    assert served() == "1"


def test_validation_names_each_failure(world: World) -> None:
    import mlflow

    from raytrader.errors import ConfigError
    from raytrader.serving.model import validate
    from raytrader.tracking import using_uri

    with using_uri(world.uri):
        model = mlflow.pyfunc.load_model("models:/raytrader-ensemble/1")
    good = {"raytrader.feature_service": "ensemble_v1", "raytrader.timeframe": "1d"}
    config = world.config(latency_budget_ms=1000)
    validate(model, good, config)
    with pytest.raises(ConfigError, match="feature service tag"):
        validate(model, {**good, "raytrader.feature_service": "other"}, config)
    with pytest.raises(ConfigError, match="budget"):
        validate(model, good, world.config(latency_budget_ms=1e-6))
    # a model of another bar length is never handed these rows
    with pytest.raises(ConfigError, match=r"reads '1h' bars .* serves '1d' features"):
        validate(model, {**good, "raytrader.timeframe": "1h"}, config)
    with pytest.raises(ConfigError, match="reads None bars"):
        validate(model, {"raytrader.feature_service": "ensemble_v1"}, config)
    with pytest.raises(ConfigError, match=r"reads '1d' bars .* serves '1h' features"):
        validate(model, good, world.config(timeframe="1h"))


def test_decisions_are_identical_across_calls(world: World) -> None:
    client = world.app()
    bodies = [
        client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH).json()
        for _ in range(3)
    ]
    strip = [{k: v for k, v in b["decisions"][0].items() if k != "feature_age_s"} for b in bodies]
    assert strip[0] == strip[1] == strip[2]
    assert np.isfinite(bodies[0]["latency_ms"])


def test_unwarm_rows_are_refused_or_flagged(world: World) -> None:
    from raytrader.data.bars import Bars
    from raytrader.features import feast_repo as fr
    from raytrader.features.engine import compute_features

    head = world.bars.frame.iloc[-10:]  # ten bars: far from the 60-bar warm-up
    cold = Bars.from_frame(head, symbol="COLD", timeframe="1d", calendar="equity")
    rows = fr.feature_rows(cold, compute_features(cold))
    fs = fr.store("sqlite", data=world.feast_data)
    fr.push(fs, rows.tail(1), to="online")
    client = world.app()
    r = client.post("/v1/decisions", json={"symbols": ["GOOG", "COLD"]}, headers=AUTH)
    assert r.status_code == 503
    assert r.json()["detail"] == (
        "no decision: features not warm yet (look-backs still filling) for ['COLD']"
    )
    flag = world.app(unwarm="flag")
    r = flag.post("/v1/decisions", json={"symbols": ["COLD"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    d = r.json()["decisions"][0]
    assert d["warm"] is False
    # the members cannot read a state from unwarmed features: no decision, not a silent flat
    assert d["target"] is None
    assert d["action"] == "keep"
    assert d["members_missing"] == ["t-ma-cross", "t-macd"]


def test_unknown_symbols_are_404_on_the_redis_store_too(stack, tmp_path: Path) -> None:  # noqa: F811
    """Redis answers a key it never stored with the epoch and no values: still a 404."""
    from raytrader.features import feast_repo as fr

    cfg = stack.config
    fs = fr.store("redis", redis=cfg.redis_connection, data=tmp_path / "feast")
    world = make_world(tmp_path, store=fs)
    client = world.app(
        feast_profile="redis", redis=cfg.redis_connection, feast_data=str(tmp_path / "feast")
    )
    r = client.post("/v1/decisions", json={"symbols": ["NO_SUCH"]}, headers=AUTH)
    assert r.status_code == 404, r.text
    assert "NO_SUCH" in r.json()["detail"]
    assert client.post("/v1/decisions", json={"symbols": ["GOOG"]}, headers=AUTH).status_code == 200


@pytest.mark.slow
def test_twenty_swaps_keep_the_frozen_heap_and_memory_bounded(tmp_path: Path) -> None:
    """Each swap freezes the heap (full collections stall requests); the replaced model must
    still be collectable, so the frozen set and the RSS stay flat over 20 swaps."""
    import gc

    import psutil

    from raytrader.registry import promote

    world = make_world(tmp_path)
    assert world.ensemble(weights=(1.0, 3.0)) == "2"
    holder = world.app().holder  # type: ignore[attr-defined]
    frozen, rss = [], []
    for i in range(20):
        version = "1" if i % 2 == 0 else "2"
        promote("raytrader-ensemble", version, "champion", tracking_uri=world.uri, root=world.root)
        assert holder.check().startswith(f"swapped to {version}")
        frozen.append(gc.get_freeze_count())
        rss.append(psutil.Process().memory_info().rss)
    assert max(frozen[10:]) <= frozen[4] * 1.05, frozen
    assert rss[-1] - rss[4] < 150 * 2**20, [r // 2**20 for r in rss]


def test_a_replaced_models_reference_cycles_are_collected_after_the_next_freeze() -> None:
    """The heap is frozen after every swap; frozen objects are never collected, so a replaced
    model caught in a reference cycle (a torch module, a closure over itself) would live on for
    good unless the next swap unfreezes before it collects."""
    import gc
    import weakref

    from raytrader.serving.model import _freeze

    class Model:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector can free it

    model = Model()
    _freeze()  # the swap that put it in service
    gone = weakref.ref(model)
    del model  # replaced: nothing refers to it any more
    _freeze()  # the next swap
    try:
        assert gone() is None
    finally:
        gc.unfreeze()


def test_an_unreachable_online_store_is_not_held_against_a_candidate(world: World) -> None:
    """Reading the probe symbols' rows fails when the store is down: the check fails, but the
    version is not marked failed, so the next check (store back) swaps it in."""
    config = world.config(probe_symbols=("GOOG",), feast_profile="redis", redis="127.0.0.1:1")
    client = world.app(check=False, **config.model_dump(exclude={"tracking_uri"}))
    holder = client.holder  # type: ignore[attr-defined]
    outcome = holder.check()
    assert outcome.startswith("failed None: the probe symbols' online rows")
    assert holder.record.failed_version is None
    holder.retarget(world.config(probe_symbols=("GOOG",)))  # the store answers again
    assert holder.check() == "swapped to 1"
