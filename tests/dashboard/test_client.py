"""The dashboard's client against the real experiment API (seeded store, in-process), its page
logic (frames built from API responses), and every page rendered headless by Streamlit's
``AppTest`` (seeded, empty and unreachable API; the model/job/system contract in memory)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from raytrader.dashboard import pages
from raytrader.dashboard.client import ApiClient, DashboardError, read_token
from tests.api.conftest import ADMIN, EPISODE_TRADES, EVAL_ROWS, EXTRA_RUNS, READ, STEPS, Seeded
from tests.dashboard.conftest import BASE, ContractApi, write_token

V1 = "/api/v1"


# ------------------------------------------------------------------------------------- client
def test_pages_follows_cursors_to_the_end(api: ApiClient, seeded: Seeded) -> None:
    whole = api.get(f"{V1}/runs", limit=500)
    assert whole["next_cursor"] is None
    walked = api.pages(f"{V1}/runs", limit=2)
    assert [r["id"] for r in walked] == [r["id"] for r in whole["items"]]
    assert sorted(r["id"] for r in walked) == sorted(seeded.run_ids)
    assert len(walked) == 2 + EXTRA_RUNS


def test_pages_stops_at_the_row_cap_and_passes_filters(api: ApiClient) -> None:
    assert len(api.pages(f"{V1}/runs", limit=2, cap=3)) == 3
    rl = api.pages(f"{V1}/runs", kind="rl", limit=1)
    assert rl
    assert {r["kind"] for r in rl} == {"rl"}
    # None and "" are left out of the query, not sent as empty filters
    assert len(api.pages(f"{V1}/runs", kind="", symbol=None)) == 2 + EXTRA_RUNS


def test_steps_page_through_the_step_limit(api: ApiClient, seeded: Seeded) -> None:
    ep = seeded.episode_ids[0]
    steps = api.pages(f"{V1}/episodes/{ep}/steps", limit=10)
    assert [s["t"] for s in steps] == list(range(STEPS))


def test_errors_carry_the_api_detail(api: ApiClient) -> None:
    with pytest.raises(DashboardError) as err:
        api.get(f"{V1}/runs/999999")
    assert err.value.status == 404
    assert err.value.detail == "no run with id 999999"
    assert not err.value.missing_route
    assert "no run with id 999999" in str(err.value)

    with pytest.raises(DashboardError) as err:
        api.get(f"{V1}/no-such-route")
    assert err.value.status == 404
    assert err.value.missing_route

    with pytest.raises(DashboardError) as err:
        api.get(f"{V1}/runs", limit=0)
    assert err.value.status == 422
    assert err.value.detail.startswith("query.limit")

    with pytest.raises(DashboardError) as err:
        api.with_token("x" * 20).get(f"{V1}/runs")
    assert err.value.status == 401
    assert "bearer token" in err.value.detail

    with pytest.raises(DashboardError) as err:
        api.post(f"{V1}/runs", {})  # a read-only route: 405
    assert err.value.status == 405
    assert err.value.missing_route


def test_an_unreachable_api_names_its_url() -> None:
    with (
        ApiClient("http://127.0.0.1:9", READ, timeout=2) as client,
        pytest.raises(DashboardError) as err,
    ):
        client.get(f"{V1}/runs")
    assert err.value.status is None
    assert "http://127.0.0.1:9" in str(err.value)
    assert "unreachable" in str(err.value)


def test_a_non_listing_is_refused(api: ApiClient, seeded: Seeded) -> None:
    with pytest.raises(DashboardError, match="not a listing"):
        api.pages(f"{V1}/runs/{seeded.rl_run_id}")


def test_route_paths_come_from_openapi(api: ApiClient) -> None:
    paths = api.route_paths()
    assert f"{V1}/runs" in paths
    assert f"{V1}/episodes/{{episode_id}}/operations" in paths


def test_post_sends_json_with_the_token(contract: ContractApi) -> None:
    admin = contract.client(ADMIN)
    moved = admin.post(f"{V1}/models/ensemble-goog/promote", {"version": "2", "alias": "champion"})
    assert moved == {"name": "ensemble-goog", "alias": "champion", "version": "2", "previous": "1"}
    with pytest.raises(DashboardError) as err:
        admin.with_token(READ).post(f"{V1}/models/ensemble-goog/rollback", {"alias": "champion"})
    assert err.value.status == 403
    assert "read token" in err.value.detail
    admin.post(f"{V1}/models/ensemble-goog/rollback", {"alias": "champion"})
    with pytest.raises(DashboardError) as err:
        admin.post(f"{V1}/models/ensemble-goog/rollback", {"alias": "champion"})
    assert err.value.status == 409
    assert "no earlier version" in err.value.detail


def test_tokens_from_the_environment_or_a_file(tmp_path: Path) -> None:
    path = write_token(tmp_path, READ)
    assert read_token(env={"RAYTRADER_EXPERIMENT_API_TOKEN": "t" * 20}) == "t" * 20
    assert read_token(env={"RAYTRADER_EXPERIMENT_API_TOKEN_FILE": str(path)}) == READ
    assert read_token(admin=True, env={"RAYTRADER_EXPERIMENT_API_TOKEN": READ}) is None
    with pytest.raises(DashboardError, match="missing"):
        read_token(env={"RAYTRADER_EXPERIMENT_API_TOKEN_FILE": str(tmp_path / "missing")})


# ----------------------------------------------------------------------------------- formatting
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"), (True, "yes"), (1234, "1,234"), (0.0, "0"), (3e-4, "0.0003"),
        (1.25, "1.2500"), (-0.1, "-0.1000"), (12345.678, "12,345.6780"), (math.nan, "nan"),
        ({"b": 1, "a": 2}, '{"a": 2, "b": 1}'), ("x", "x"),
    ],
)  # fmt: skip
def test_fmt(value: Any, shown: str) -> None:
    assert pages.fmt(value) == shown


def test_fmt_time_and_duration() -> None:
    assert pages.fmt_time("2024-05-01T10:00:00+02:00") == "2024-05-01 08:00:00"
    assert pages.fmt_time(None) == "—"
    assert pages.fmt_duration(5.24) == "5.2 s"
    assert pages.fmt_duration(184) == "3m 04s"
    assert pages.fmt_duration(3720) == "1h 02m"


# ---------------------------------------------------------------------------------- page logic
def test_drawdown_of_a_backtests_equity_points(api: ApiClient, seeded: Seeded) -> None:
    detail = api.get(f"{V1}/backtests/{seeded.backtest_id}")
    frame = pages.equity_frame(detail["equity"])
    equity = np.array([p["equity"] for p in detail["equity"]], dtype=float)
    assert frame["equity"].tolist() == equity.tolist()  # unchanged
    expected = equity / np.maximum.accumulate(equity) - 1
    np.testing.assert_allclose(frame["drawdown"], expected)
    assert frame["drawdown"].max() == 0.0
    assert frame["drawdown"].iloc[0] == 0.0
    assert str(frame["time"].dt.tz) == "UTC"


def test_drawdown_by_hand_and_with_gaps() -> None:
    dd = pages.drawdown(pd.Series([100.0, 120.0, 90.0, None, 130.0, 117.0]))
    np.testing.assert_allclose(dd, [0.0, 0.0, -0.25, np.nan, 0.0, -0.1])


def test_operations_become_markers(api: ApiClient, seeded: Seeded) -> None:
    ep = seeded.episode_ids[0]
    ops = api.pages(f"{V1}/episodes/{ep}/operations")
    frame = pages.operations_frame(ops)
    assert len(frame) == 2 * EPISODE_TRADES
    assert frame["price"].tolist() == [o["price"] for o in ops]
    entries = frame[frame["kind"] == "entry"]
    assert len(entries) == EPISODE_TRADES
    assert set(entries["marker"]) <= {"entry long", "entry short"}
    exits = frame[frame["kind"] != "entry"]
    assert all(m == f"exit {k}" for m, k in zip(exits["marker"], exits["kind"], strict=True))
    assert pages.operations_frame([]).empty


def test_steps_frame_reward_and_actions(api: ApiClient, seeded: Seeded) -> None:
    ep = seeded.episode_ids[1]
    steps = pages.steps_frame(api.pages(f"{V1}/episodes/{ep}/steps"))
    seeded_steps = seeded.episode_steps[ep]
    np.testing.assert_allclose(steps["reward"], seeded_steps["reward"])
    np.testing.assert_allclose(steps["price"], seeded_steps["price"])
    episode = api.get(f"{V1}/episodes/{ep}")
    assert steps["cum_reward"].iloc[-1] == pytest.approx(episode["reward_sum"])
    stats = pages.reward_stats(steps)
    assert stats["steps"] == STEPS
    assert stats["sum"] == pytest.approx(episode["reward_sum"])
    counts = pages.action_counts(steps)
    assert counts["count"].sum() == STEPS
    assert counts["action"].tolist() == [
        str(int(v)) for v in sorted(seeded_steps["action"].unique())
    ]
    assert pages.reward_stats(pages.steps_frame([])) == {"steps": 0}


def test_continuous_actions_are_binned() -> None:
    frame = pd.DataFrame({"action": np.linspace(-1, 1, 101)})
    counts = pages.action_counts(frame)
    assert len(counts) == 20
    assert counts["count"].sum() == 101


def test_trials_importance_and_asha(api: ApiClient, seeded: Seeded) -> None:
    trials = api.pages(f"{V1}/optimization/runs/{seeded.optimization_id}/results")
    frame = pages.trials_frame(trials)
    assert frame.columns.tolist() == [
        "trial", "param.fast", "param.slow", "score", "status", "early_stopped", "iterations",
        "windows", "duration_s",
    ]  # fmt: skip
    assert frame["trial"].tolist() == ["trial_2", "trial_0", "trial_1"]  # best first
    assert frame.loc[0, "score"] == 1.25
    assert frame.loc[0, "param.fast"] == 20
    importance = pages.param_importance(frame)
    # two scored trials: the bigger fast/slow scored higher -> rank correlation +1
    assert importance.set_index("param")["spearman"].to_dict() == pytest.approx(
        {"fast": 1.0, "slow": 1.0}
    )
    assert importance["trials"].tolist() == [2, 2]
    stops = pages.asha_stops(trials)
    assert stops.to_dict("records") == [
        {"trial": "trial_0", "stopped_after_window": 2, "window_scores": "0.4000, 0.6000",
         "score": "0.5000"},
    ]  # fmt: skip


def test_param_importance_of_a_constant_parameter() -> None:
    frame = pd.DataFrame({"param.a": [1, 1, 1], "param.b": [1, 2, 3], "score": [0.3, 0.2, 0.1]})
    importance = pages.param_importance(frame).set_index("param")
    assert importance.loc["b", "spearman"] == pytest.approx(-1.0)
    assert math.isnan(importance.loc["a", "spearman"])


def test_evaluation_tables_and_bars(api: ApiClient, seeded: Seeded) -> None:
    rows = api.pages(f"{V1}/evaluation/runs/{seeded.evaluation_id}/metrics")
    tables = pages.evaluation_tables(rows)
    assert list(tables) == list(dict.fromkeys(r[0] for r in EVAL_ROWS))
    goog = tables["goog"]
    assert goog.loc["ensemble", "sharpe"] == "1.1000"
    assert goog.loc["ensemble", "role"] == "candidate"
    assert goog.loc["buy_hold", "total_return"] == "—"
    assert pages.evaluation_metric_names(rows) == ["sharpe", "total_return"]
    bars = pages.evaluation_bars(rows, "total_return")
    assert len(bars) == 3  # the missing value is left out
    assert bars.set_index(["dataset", "candidate"]).loc[("eurusd", "buy_hold"), "value"] == 0.01


def test_runs_frame_and_compare(api: ApiClient, seeded: Seeded) -> None:
    runs = api.pages(f"{V1}/runs")
    frame = pages.runs_frame(runs)
    assert frame.columns[:8].tolist() == [
        "id", "kind", "name", "status", "symbol", "timeframe", "created", "duration",
    ]  # fmt: skip
    assert len(frame) == len(runs)
    rl = api.get(f"{V1}/runs/{seeded.rl_run_id}")
    rules = api.get(f"{V1}/runs/{seeded.rules_run_id}")
    diff = pages.compare_frame([rl["config"], rules["config"]], ["#a", "#b"])
    assert diff.loc["lr", "#a"] == "0.0003"
    assert diff.loc["lr", "#b"] == "—"
    assert diff.loc["algo", "differs"] == "≠"
    same = pages.compare_frame([{"x": 1, "y": 2}, {"x": 1, "y": 3}], ["a", "b"], only_diff=True)
    assert same.index.tolist() == ["y"]


def test_backtests_and_metrics_frames(api: ApiClient, seeded: Seeded) -> None:
    backtests = api.pages(f"{V1}/backtests")
    frame = pages.backtests_frame(backtests).set_index("id")
    api_sharpe = api.get(f"{V1}/backtests/{seeded.backtest_id}")["metrics"]["sharpe"]
    assert frame.loc[seeded.backtest_id, "sharpe"] == api_sharpe  # unchanged
    table = pages.metrics_table({"sharpe": api_sharpe, "nested": {"a": None}})
    assert table.loc["sharpe", "value"] == pages.fmt(api_sharpe)
    assert table.loc["nested.a", "value"] == "—"
    trades = pages.trades_frame(api.pages(f"{V1}/backtests/{seeded.backtest_id}/trades"))
    assert len(trades) == len(seeded.result.trades)


def test_models_and_system_frames(contract: ContractApi) -> None:
    model = contract.models["ensemble-goog"]
    frame = pages.models_frame([model])
    assert frame.to_dict("records") == [
        {"name": "ensemble-goog", "kind": "ensemble", "latest": 2, "versions": 2,
         "champion": "1", "challenger": "—", "other aliases": ""},
    ]  # fmt: skip
    versions = pages.versions_frame(model)
    assert versions["aliases"].tolist() == ["champion", ""]
    assert versions["run_id"].tolist() == ["abc123", "—"]
    values = pages.component_values(contract.components[1])
    assert values.loc["cpu_available", "value"] == "12.5000"
    assert pages.jobs_frame(contract.jobs)["job_id"].tolist() == ["raysubmit_1"]


# ----------------------------------------------------------------------- pages, headless (AppTest)
def _page_script(render: str, api: "ApiClient") -> None:  # noqa: UP037 - run alone by AppTest
    from raytrader.dashboard import pages

    pages.show(getattr(pages, render), api)


def _run(render: str, api: ApiClient, **query: str) -> AppTest:
    at = AppTest.from_function(_page_script, args=(render, api), default_timeout=60)
    at.query_params.update(query)
    return at.run()


def _text(at: AppTest) -> str:
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "error", "success"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    parts.extend(f"{m.label}={m.value}" for m in at.metric)
    parts.extend(t.value.to_string() for t in at.table)
    return "\n".join(parts)


RENDERS = [render.__name__ for _, _, _, render in pages.PAGES]


def test_every_page_renders_the_seeded_store(api: ApiClient, seeded: Seeded) -> None:
    bt = api.get(f"{V1}/backtests/{seeded.backtest_id}")
    ep = api.get(f"{V1}/episodes/{seeded.episode_ids[0]}")
    expect = {
        "render_runs": ["runs=7", "0.0003"],
        "render_episode": [f"reward sum={pages.fmt(ep['reward_sum'])}"],
        "render_backtests": [f"sharpe={pages.fmt(bt['metrics']['sharpe'])}"],
        "render_optimization": ["best score=1.2500", "trial_0"],
        "render_evaluations": ["1.1000", "claim holds on 1 of 2"],
        "render_paper": [
            "status=running",
            "steps=3",
            "drawdown=0",
            "equity=10,002.0000",
            "5047.0",
            "Recent decisions",
        ],
        "render_models": ["No registered models yet."],
        "render_system": ["**store**", "migrated to the code's revision", "Ray jobs"],
    }
    query = {
        "render_runs": {"compare": f"{seeded.rl_run_id},{seeded.rules_run_id}"},
        "render_backtests": {"backtest": str(seeded.backtest_id)},
        "render_episode": {"run": str(seeded.rl_run_id), "episode": str(seeded.episode_ids[0])},
    }
    for render in RENDERS:
        at = _run(render, api, **query.get(render, {}))
        assert not at.exception, (render, [e.value for e in at.exception])
        assert not at.error, (render, [e.value for e in at.error])
        text = _text(at)
        for needle in expect[render]:
            assert needle in text, (render, needle, text[:3000])


def test_the_episode_page_finds_a_run_with_episodes(api: ApiClient, seeded: Seeded) -> None:
    at = _run("render_episode", api)
    assert not at.exception
    assert at.selectbox[0].value == seeded.rl_run_id  # not the newest runs, which have none
    assert at.selectbox[1].value == seeded.episode_ids[0]


def test_every_page_renders_an_empty_store(empty_api: ApiClient) -> None:
    empty = {
        "render_runs": "No runs yet.", "render_episode": "No runs yet.",
        "render_backtests": "No backtests yet.", "render_optimization": "No searches yet.",
        "render_evaluations": "No evaluations yet.", "render_paper": "No paper sessions yet",
        "render_models": "No registered models yet.", "render_system": "**store**",
    }  # fmt: skip
    for render in RENDERS:
        at = _run(render, empty_api)
        assert not at.exception, (render, [e.value for e in at.exception])
        assert empty[render] in _text(at), render


def test_an_unreachable_api_is_an_error_box() -> None:
    with ApiClient("http://127.0.0.1:9", READ, timeout=2) as client:
        for render in RENDERS:
            at = _run(render, client)
            assert not at.exception, render
            assert len(at.error) == 1, render
            assert "Cannot reach the experiment API at **http://127.0.0.1:9**" in at.error[0].value


def test_models_page_promotes_and_rolls_back(
    contract: ContractApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYTRADER_EXPERIMENT_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("RAYTRADER_EXPERIMENT_ADMIN_TOKEN_FILE", raising=False)
    at = _run("render_models", contract.client())
    assert not at.exception
    assert not at.error
    assert "ensemble-goog" in at.dataframe[0].value["name"].tolist()
    # the read token typed in: the API's 403 detail is shown
    token = next(t for t in at.text_input if t.label == "admin token")
    token.input(READ).run()
    at.button[0].click().run()  # Promote (version 2 -> champion)
    assert [e.value for e in at.error] == [
        "HTTP 403: the read token cannot do this: use the admin token"
    ]
    assert contract.models["ensemble-goog"]["aliases"] == {"champion": "1"}
    # the admin token: the alias moves, the page says so
    next(t for t in at.text_input if t.label == "admin token").input(ADMIN).run()
    at.button[0].click().run()
    assert not at.exception
    assert not at.error
    assert contract.models["ensemble-goog"]["aliases"] == {"champion": "2"}
    assert [s.value for s in at.success] == ["ensemble-goog: champion → version 2 (was 1)"]
    at.button[1].click().run()  # Roll back champion
    assert contract.models["ensemble-goog"]["aliases"] == {"champion": "1"}
    at.button[1].click().run()  # nothing left to roll back to: 409
    assert [e.value for e in at.error] == [
        "HTTP 409: model 'ensemble-goog': alias 'champion' has no earlier version to roll back to"
    ]
    posts = [(m, p) for m, p, _ in contract.requests if m == "POST"]
    assert posts[-1] == ("POST", f"{V1}/models/ensemble-goog/rollback")


def test_system_page_shows_components_and_jobs(contract: ContractApi) -> None:
    at = _run("render_system", contract.client())
    assert not at.exception
    assert not at.error
    text = _text(at)
    for needle in ("**store**", "**ray**", "**decision_service**", "connection refused",
                   "2 of 3 components healthy", "12.5000"):  # fmt: skip
        assert needle in text, needle
    assert at.dataframe[0].value["job_id"].tolist() == ["raysubmit_1"]


def test_contract_base_url_in_errors() -> None:
    client = ApiClient(BASE, READ, http=httpx.Client(transport=ContractApi().transport()))
    with pytest.raises(DashboardError) as err:
        client.with_token("nope" * 5).get(f"{V1}/models")
    assert err.value.status == 401
    assert err.value.url == f"{BASE}{V1}/models"
