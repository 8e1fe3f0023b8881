"""The experiment API over a seeded store: every route returns what was written, listings page
through every row once, filters, auth, and every error a client can cause is a 4xx naming the
problem (a store that cannot answer: 503)."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import MetaData

from raytrader.api.app import create_app
from raytrader.api.auth import ADMIN_TOKEN_ENV, READ_TOKEN_ENV, ApiTokens
from raytrader.db.engine import make_engine, upgrade
from raytrader.errors import ConfigError
from tests.api.conftest import (
    ADMIN_AUTH,
    AUTH,
    EPISODE_TRADES,
    EVAL_ROWS,
    EXTRA_RUNS,
    PAPER_STEPS,
    READ,
    STEPS,
    TOKENS,
    Seeded,
    migrated_sqlite,
    seed,
)
from tests.support.stack_fixture import stack  # noqa: F401 - the session's local stack

V1 = "/api/v1"


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def walk(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page = get(client, path, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the listing never ended")


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- the reads, shared
def check_reads(client: TestClient, s: Seeded) -> None:
    """Every route against what :func:`seed` wrote (also run on PostgreSQL)."""
    result = s.result
    # the backtest: metrics to the bit, the equity curve, every trade and operation
    bt = get(client, f"{V1}/backtests/{s.backtest_id}")
    assert bt["metrics"]["sharpe"] == result.metrics["sharpe"]
    assert bt["metrics"] == {k: _json_number(v) for k, v in result.metrics.items()}
    assert bt["strategy"] == "ma_cross"
    assert bt["params"] == result.params
    assert bt["symbol"] == "GOOG"
    assert bt["bars"] == len(result.equity)
    assert bt["run_id"] is None
    assert bt["sim"] == result.config.model_dump(mode="json")
    assert len(bt["equity"]) == min(len(result.equity), 2000)
    assert bt["equity"][0]["equity"] == result.equity.iloc[0]
    assert bt["equity"][-1]["equity"] == result.equity.iloc[-1]
    assert bt["equity"][-1]["time"].startswith(result.equity.index[-1].strftime("%Y-%m-%d"))
    trades = walk(client, f"{V1}/backtests/{s.backtest_id}/trades", limit=7)
    assert len(trades) == len(result.trades) == int(result.metrics["num_trades"])
    assert [t["number"] for t in trades] == list(range(len(result.trades)))
    assert [t["pnl"] for t in trades] == result.trades["pnl"].tolist()
    assert [t["exit_reason"] for t in trades] == result.trades["exit_reason"].tolist()
    operations = walk(client, f"{V1}/backtests/{s.backtest_id}/operations", limit=50)
    assert len(operations) == 2 * len(result.trades)
    assert [o["kind"] for o in operations[::2]] == ["entry"] * len(result.trades)

    # listings of backtests: filters and the run that wrote one
    all_bts = walk(client, f"{V1}/backtests", limit=1)
    assert {b["id"] for b in all_bts} == {s.backtest_id, s.rules_backtest_id}
    assert "equity" not in all_bts[0]
    assert get(client, f"{V1}/backtests", strategy="macd")["items"] == []
    assert len(get(client, f"{V1}/backtests", symbol="GOOG", strategy="ma_cross")["items"]) == 2
    by_run = get(client, f"{V1}/runs/{s.rules_run_id}/backtests")
    assert [b["id"] for b in by_run["items"]] == [s.rules_backtest_id]
    assert by_run["items"][0]["params"] == {"short": True, "fast": 5, "slow": 30}
    assert get(client, f"{V1}/runs/{s.rl_run_id}/backtests")["items"] == []

    # runs: newest first, every one exactly once in pages of two, filters
    runs = walk(client, f"{V1}/runs", limit=2)
    assert len(runs) == 2 + EXTRA_RUNS
    assert sorted(r["id"] for r in runs) == sorted(s.run_ids)
    keys = [(r["created_at"], r["id"]) for r in runs]
    assert keys == sorted(keys, reverse=True)
    ascending = walk(client, f"{V1}/runs", limit=3, order="asc")
    assert [r["id"] for r in ascending] == [r["id"] for r in reversed(runs)]
    rl = walk(client, f"{V1}/runs", kind="rl", limit=2)
    assert {r["kind"] for r in rl} == {"rl"}
    assert len(rl) == 1 + (EXTRA_RUNS + 1) // 2
    finished = get(client, f"{V1}/runs", status="finished")["items"]
    assert {r["id"] for r in finished} == {s.rl_run_id, s.rules_run_id}
    assert len(get(client, f"{V1}/runs", symbol="EURUSD")["items"]) == EXTRA_RUNS
    newest = runs[0]["created_at"]
    after = get(client, f"{V1}/runs", created_after=newest)["items"]
    assert newest in {r["created_at"] for r in after}
    assert all(r["created_at"] >= newest for r in after)
    before = get(client, f"{V1}/runs", created_before=newest)["items"]
    assert all(r["created_at"] < newest for r in before)
    assert len(after) + len(before) == len(runs)

    run = get(client, f"{V1}/runs/{s.rl_run_id}")
    assert run["key"] == "rl-goog-1"
    assert run["status"] == "finished"
    assert run["config"] == {"algo": "PPO", "lr": 3e-4}
    assert run["finished_at"] is not None
    assert run["duration_s"] >= 0
    model = get(client, f"{V1}/runs/{s.rl_run_id}/model")
    assert model["mlflow_run_id"] == "0123456789abcdef"
    assert (model["run_id"], model["kind"], model["config"]) == (s.rl_run_id, "rl", run["config"])
    no_model = client.get(f"{V1}/runs/{s.rules_run_id}/model", headers=AUTH)
    assert no_model.status_code == 404
    assert "no MLflow run" in no_model.json()["detail"]

    # episodes, their steps (every t once, to the bit), trades and operations
    episodes = walk(client, f"{V1}/runs/{s.rl_run_id}/episodes", limit=1)
    assert [e["id"] for e in episodes] == s.episode_ids
    assert [e["key"] for e in episodes] == ["ep-0", "ep-1"]
    latest = get(client, f"{V1}/runs/{s.rl_run_id}/episodes", order="desc")["items"]
    assert [e["id"] for e in latest] == s.episode_ids[::-1]
    for episode_id, frame in s.episode_steps.items():
        ep = get(client, f"{V1}/episodes/{episode_id}")
        assert ep["length"] == STEPS
        assert ep["reward_sum"] == float(frame["reward"].sum())
        steps = walk(client, f"{V1}/episodes/{episode_id}/steps", limit=10)
        assert [st["t"] for st in steps] == list(range(STEPS))
        assert [st["equity"] for st in steps] == frame["equity"].tolist()
        back = walk(client, f"{V1}/episodes/{episode_id}/steps", limit=4, order="desc")
        assert [st["t"] for st in back] == list(range(STEPS))[::-1]
        ep_trades = get(client, f"{V1}/episodes/{episode_id}/trades")["items"]
        assert len(ep_trades) == EPISODE_TRADES
        ops = get(client, f"{V1}/episodes/{episode_id}/operations")["items"]
        assert len(ops) == 2 * EPISODE_TRADES
    first = s.episode_ids[0]
    assert (
        get(client, f"{V1}/episodes/{first}/trades")["items"][0]["pnl"]
        == (result.trades["pnl"].iloc[0])
    )

    # the search: best first for mode max, no score last; by key; pages of one
    opts = get(client, f"{V1}/optimization/runs")["items"]
    assert [o["id"] for o in opts] == [s.optimization_id]
    assert get(client, f"{V1}/optimization/runs", status="running")["items"] == []
    assert len(get(client, f"{V1}/optimization/runs", target="rules")["items"]) == 1
    opt = get(client, f"{V1}/optimization/runs/{s.optimization_id}")
    assert (opt["best_trial"], opt["best_score"], opt["mode"]) == ("trial_2", 1.25, "max")
    results = f"{V1}/optimization/runs/{s.optimization_id}/results"
    best = get(client, results)["items"]
    assert [t["key"] for t in best] == ["trial_2", "trial_0", "trial_1"]
    assert [t["score"] for t in best] == [1.25, 0.5, None]
    assert [t["early_stopped"] for t in best] == [False, True, False]
    assert best[0]["window_scores"] == [1.0, 1.5]
    assert best[2]["window_scores"] == [None]
    assert [t["key"] for t in walk(client, results, limit=1)] == [t["key"] for t in best]
    worst = walk(client, results, limit=1, order="asc")
    assert [t["key"] for t in worst] == ["trial_0", "trial_2", "trial_1"]
    by_key = walk(client, results, sort="key", limit=2)
    assert [t["key"] for t in by_key] == ["trial_0", "trial_1", "trial_2"]

    # the evaluation and its rows
    evals = get(client, f"{V1}/evaluation/runs", kind="meta")["items"]
    assert [e["id"] for e in evals] == [s.evaluation_id]
    assert get(client, f"{V1}/evaluation/runs", kind="other")["items"] == []
    ev = get(client, f"{V1}/evaluation/runs/{s.evaluation_id}")
    assert ev["summary"] == {"ensemble": "claim holds on 1 of 2"}
    metrics = f"{V1}/evaluation/runs/{s.evaluation_id}/metrics"
    rows = walk(client, metrics, limit=3)
    assert [(r["dataset"], r["candidate"], r["role"], r["metrics"]) for r in rows] == [
        (d, c, role, m) for d, c, role, m in EVAL_ROWS
    ]
    goog = get(client, metrics, dataset="goog")["items"]
    assert {r["candidate"] for r in goog} == {"ensemble", "buy_hold"}
    assert {r["dataset"] for r in goog} == {"goog"}

    # a paper session: its positions at the last step, steps, decisions (newest first), fills
    sessions = get(client, f"{V1}/paper/sessions")["items"]
    assert [p["name"] for p in sessions] == ["paper-seed"]
    assert get(client, f"{V1}/paper/sessions", status="halted")["items"] == []
    paper = f"{V1}/paper/sessions/{s.paper_session_id}"
    one = get(client, paper)
    assert (one["status"], one["steps"], one["equity"]) == ("running", PAPER_STEPS, 10_002.0)
    assert [(p["symbol"], p["units"]) for p in one["positions"]] == [("AAA", 49.0), ("BBB", 0.0)]
    steps = walk(client, f"{paper}/steps", limit=2)
    assert [st["number"] for st in steps] == list(range(PAPER_STEPS))
    decisions = walk(client, f"{paper}/decisions", limit=3)
    assert [(d["number"], d["symbol"]) for d in decisions[:2]] == [(2, "BBB"), (2, "AAA")]
    assert len(decisions) == 2 * PAPER_STEPS
    held = [d for d in decisions if d["target"] is None]
    assert {d["reason"] for d in held} == {"stale features"}
    assert decisions[1]["explanation"] == {"regime": "calm"}
    assert len(get(client, f"{paper}/decisions", symbol="AAA")["items"]) == PAPER_STEPS
    fills = get(client, f"{paper}/fills")["items"]
    assert [(f["number"], f["symbol"], f["units"]) for f in fills] == [(1, "AAA", 49.0)]


def test_every_route_returns_what_was_written(client: TestClient, seeded: Seeded) -> None:
    check_reads(client, seeded)


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------------------------------ auth
def test_tokens(client: TestClient, seeded: Seeded) -> None:
    path = f"{V1}/runs/{seeded.rl_run_id}"
    missing = client.get(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in missing.json()["detail"]
    wrong = client.get(path, headers={"Authorization": f"Bearer {'x' * 20}"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    basic = client.get(path, headers={"Authorization": f"Basic {READ}"})
    assert basic.status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200
    assert client.get(path, headers=ADMIN_AUTH).status_code == 200  # admin may read


def _with_admin_route(app: Any) -> TestClient:
    @app.post("/api/v1/test-only/admin", dependencies=[Depends(app.state.auth.require_admin)])
    def admin_only() -> dict[str, str]:
        return {"status": "done"}

    return TestClient(app)


def test_admin_dependency(seeded: Seeded) -> None:
    client = _with_admin_route(create_app(seeded.engine, TOKENS))
    path = "/api/v1/test-only/admin"
    assert client.post(path, headers=ADMIN_AUTH).json() == {"status": "done"}
    forbidden = client.post(path, headers=AUTH)
    assert forbidden.status_code == 403
    assert "admin token" in forbidden.json()["detail"]
    unauthorized = client.post(path)
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    no_admin = _with_admin_route(create_app(seeded.engine, ApiTokens(read=READ)))
    disabled = no_admin.post(path, headers=AUTH)
    assert disabled.status_code == 403
    assert ADMIN_TOKEN_ENV in disabled.json()["detail"]


def test_tokens_are_required_outside_local_dev(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("RAYTRADER_LOCAL_DEV", "RAYTRADER_MODE", READ_TOKEN_ENV, ADMIN_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    with pytest.raises(ConfigError, match=READ_TOKEN_ENV):
        create_app(seeded.engine)
    with pytest.raises(ConfigError, match=READ_TOKEN_ENV):
        create_app(seeded.engine, ApiTokens(admin="a" * 20))
    with pytest.raises(ConfigError, match="shorter than 16"):
        ApiTokens(read="short")
    with pytest.raises(ConfigError, match="must differ"):
        ApiTokens(read=READ, admin=READ)

    monkeypatch.setenv("RAYTRADER_LOCAL_DEV", "1")  # local dev: reads are open
    open_client = TestClient(create_app(seeded.engine))
    assert open_client.get(f"{V1}/runs/{seeded.rl_run_id}").status_code == 200
    monkeypatch.setenv("RAYTRADER_MODE", "cluster")  # ... and refused in a cluster
    with pytest.raises(ConfigError, match="cluster"):
        create_app(seeded.engine)
    monkeypatch.delenv("RAYTRADER_LOCAL_DEV")

    token_file = tmp_path / "token"
    token_file.write_text("f" * 24 + "\n")
    monkeypatch.setenv(f"{READ_TOKEN_ENV}_FILE", str(token_file))
    from_file = TestClient(create_app(seeded.engine))
    auth = {"Authorization": f"Bearer {'f' * 24}"}
    assert from_file.get(f"{V1}/runs/{seeded.rl_run_id}", headers=auth).status_code == 200
    assert from_file.get(f"{V1}/runs/{seeded.rl_run_id}").status_code == 401


# ---------------------------------------------------------------------------------------- errors
def test_unknown_ids_are_404_naming_them(client: TestClient) -> None:
    cases = {
        f"{V1}/runs/999999": "no run with id 999999",
        f"{V1}/runs/999999/episodes": "no run with id 999999",
        f"{V1}/runs/999999/model": "no run with id 999999",
        f"{V1}/runs/999999/backtests": "no run with id 999999",
        f"{V1}/episodes/999999": "no episode with id 999999",
        f"{V1}/episodes/999999/steps": "no episode with id 999999",
        f"{V1}/episodes/999999/trades": "no episode with id 999999",
        f"{V1}/episodes/999999/operations": "no episode with id 999999",
        f"{V1}/backtests/999999": "no backtest with id 999999",
        f"{V1}/backtests/999999/trades": "no backtest with id 999999",
        f"{V1}/backtests/999999/operations": "no backtest with id 999999",
        f"{V1}/optimization/runs/999999": "no optimization with id 999999",
        f"{V1}/optimization/runs/999999/results": "no optimization with id 999999",
        f"{V1}/evaluation/runs/999999": "no evaluation with id 999999",
        f"{V1}/evaluation/runs/999999/metrics": "no evaluation with id 999999",
    }
    for path, detail in cases.items():
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert response.json() == {"detail": detail}


def test_bad_cursor_is_400(client: TestClient, seeded: Seeded) -> None:
    for cursor in ("not-a-cursor", "eyJhIjoxfQ", "%%%", "W10"):
        response = client.get(f"{V1}/runs", params={"cursor": cursor}, headers=AUTH)
        assert response.status_code == 400, cursor
        assert response.json()["detail"].startswith("query.cursor: ")
    runs_cursor = get(client, f"{V1}/runs", limit=1)["next_cursor"]
    elsewhere = client.get(f"{V1}/backtests", params={"cursor": runs_cursor}, headers=AUTH)
    assert elsewhere.status_code == 400
    assert "another listing" in elsewhere.json()["detail"]
    reversed_ = client.get(
        f"{V1}/runs", params={"cursor": runs_cursor, "order": "asc"}, headers=AUTH
    )
    assert reversed_.status_code == 400


def test_bad_values_are_422_naming_them(client: TestClient, seeded: Seeded) -> None:
    for limit in (0, 501, "many"):
        response = client.get(f"{V1}/runs", params={"limit": limit}, headers=AUTH)
        assert response.status_code == 422
        assert response.json()["detail"].startswith("query.limit: ")
    steps = f"{V1}/episodes/{seeded.episode_ids[0]}/steps"
    assert client.get(steps, params={"limit": 5000}, headers=AUTH).status_code == 200
    assert client.get(steps, params={"limit": 5001}, headers=AUTH).status_code == 422
    naive = client.get(f"{V1}/runs", params={"created_after": "2024-01-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 422
    assert naive.json()["detail"].startswith("query.created_after: ")
    far = client.get(
        f"{V1}/runs", params={"created_after": "0001-01-01T00:00:00+05:00"}, headers=AUTH
    )
    assert far.status_code == 422
    assert "created_after" in far.json()["detail"]
    for params in ({"order": "up"}, {"status": "done"}, {"kind": ""}, {"kind": "a\x00b"}):
        response = client.get(f"{V1}/runs", params=params, headers=AUTH)
        assert response.status_code == 422, params
        assert response.json()["detail"].startswith(f"query.{next(iter(params))}: ")
    sort = client.get(
        f"{V1}/optimization/runs/{seeded.optimization_id}/results",
        params={"sort": "luck"},
        headers=AUTH,
    )
    assert sort.status_code == 422
    assert sort.json()["detail"].startswith("query.sort: ")
    typo = client.get(f"{V1}/runs", params={"knd": "rl"}, headers=AUTH)
    assert typo.status_code == 422
    assert typo.json()["detail"].startswith("query.knd: unknown parameter")
    twice = client.get(f"{V1}/runs?kind=rl&kind=rules", headers=AUTH)
    assert twice.status_code == 422
    assert twice.json()["detail"] == "query.kind: given more than once (it takes one value)"
    assert client.get(f"{V1}/runs", params={"knd": "rl"}).status_code == 401  # auth first
    for path in (f"{V1}/runs/0", f"{V1}/runs/abc", f"{V1}/runs/{2**63}"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 422, path
        assert response.json()["detail"].startswith("path.run_id: ")


def test_a_store_without_schema_is_503(tmp_path: Path) -> None:
    client = TestClient(create_app(f"sqlite:///{tmp_path}/empty.db", TOKENS))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "has no schema" in ready.json()["detail"]
    assert "raytrader db upgrade" in ready.json()["detail"]
    runs = client.get(f"{V1}/runs", headers=AUTH)
    assert runs.status_code == 503
    assert "no such table" in runs.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_an_unreachable_store_is_503(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()  # SQLite cannot open a directory
    client = TestClient(create_app(f"sqlite:///{tmp_path}/a-directory.db", TOKENS))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "cannot reach the experiment store" in ready.json()["detail"]
    runs = client.get(f"{V1}/runs", headers=AUTH)
    assert runs.status_code == 503
    assert "unable to open database" in runs.json()["detail"]


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    client = TestClient(create_app(migrated_sqlite(tmp_path), TOKENS))
    for path in ("runs", "backtests", "optimization/runs", "evaluation/runs"):
        assert get(client, f"{V1}/{path}") == {"items": [], "next_cursor": None}


# ------------------------------------------------------------------------------------------- CLI
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_cli_up_status_token_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import httpx
    from typer.testing import CliRunner

    from raytrader.api.cli import api_app

    monkeypatch.setenv("RAYTRADER_API_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    missing = runner.invoke(api_app, ["token"])
    assert isinstance(missing.exception, ConfigError)
    assert "raytrader api up" in str(missing.exception)
    port = _free_port()
    db = f"sqlite:///{tmp_path}/store.db"
    up = runner.invoke(api_app, ["up", "--port", str(port), "--db-url", db, "--json"])
    try:
        assert up.exit_code == 0, up.output
        info = json.loads(up.output)
        assert info["url"] == f"http://127.0.0.1:{port}"
        assert not info["already_running"]
        token_file = tmp_path / "state" / "token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        read = runner.invoke(api_app, ["token"]).output.strip()
        admin = runner.invoke(api_app, ["token", "--admin"]).output.strip()
        assert read == token_file.read_text().strip()
        assert len(read) >= 32
        assert admin != read
        base = info["url"]
        assert httpx.get(f"{base}/readyz").json() == {"status": "ready"}
        runs = httpx.get(f"{base}/api/v1/runs", headers={"Authorization": f"Bearer {read}"})
        assert runs.json() == {"items": [], "next_cursor": None}
        assert httpx.get(f"{base}/api/v1/runs").status_code == 401
        again = runner.invoke(api_app, ["up", "--port", str(port), "--db-url", db])
        assert again.exit_code == 0
        assert "already running" in again.output
        status = runner.invoke(api_app, ["status", "--json"])
        assert status.exit_code == 0, status.output
        state = json.loads(status.output)
        assert state["running"]
        assert state["healthy"]
        assert state["db_url"] == db
    finally:
        down = runner.invoke(api_app, ["down"])
    assert down.exit_code == 0
    assert "stopped" in down.output
    assert not (tmp_path / "state" / "api.pid").exists()
    assert runner.invoke(api_app, ["down"]).output.strip() == "experiment API is not running"
    assert runner.invoke(api_app, ["status"]).exit_code == 1
    assert os.path.exists(tmp_path / "state" / "api.log")


# ------------------------------------------------------------------------------------ PostgreSQL
@pytest.mark.integration
def test_the_same_reads_on_postgresql(stack: Any) -> None:  # noqa: F811 - the fixture
    engine = make_engine(stack.config.store_url)
    try:
        with engine.begin() as conn:  # start from an empty database, whatever ran before
            tables = MetaData()
            tables.reflect(conn)
            tables.drop_all(conn)
        upgrade(engine)
        seeded = seed(engine)
        client = TestClient(create_app(engine, TOKENS))
        assert client.get("/readyz").json() == {"status": "ready"}
        check_reads(client, seeded)
        bad = client.get(f"{V1}/runs", params={"cursor": "W10"}, headers=AUTH)
        assert bad.status_code == 400
    finally:
        engine.dispose()
