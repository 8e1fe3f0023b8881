"""The dashboard in a real browser: the seeded store in the local stack's PostgreSQL behind the
real API (uvicorn, a subprocess), the dashboard started by ``raytrader dashboard up``'s code (Streamlit, a
subprocess), Chromium driven by Playwright. Each page must render without an exception and show
a number of the seeded data as the page formats it; a full-page screenshot of each goes to
``docs/dashboard/<page>.png``. On the models page, promoting a version with the admin token
(after the read token is refused with the API's 403) moves the alias in the registry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData

from raytrader.dashboard import cli, pages
from raytrader.dashboard.client import ApiClient, DashboardError
from raytrader.db.engine import make_engine, upgrade
from tests.api.conftest import ADMIN, READ, Seeded, seed
from tests.support.stack_fixture import stack  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 900}
MODEL = "ma-cross-dash"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@dataclass
class Served:
    url: str  # the dashboard
    api: ApiClient  # the API, read token
    seeded: Seeded
    paths: set[str]
    mlflow_uri: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer; {log} ends:\n{log.read_text()[-3000:]}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _register(uri: str, root: Path) -> None:
    """Two versions of a rule strategy in the embedded registry, version 1 the champion."""
    from raytrader.data import load_bars
    from raytrader.registry import RuleStrategyModel, promote, register_model

    frame = load_bars("goog").frame.iloc[-60:].copy()
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    for params in ({"fast": 10, "slow": 20}, {"fast": 5, "slow": 50}):
        register_model(
            RuleStrategyModel("ma_cross", params), name=MODEL, kind="rule",
            input_example=frame, tracking_uri=uri, root=root,
        )  # fmt: skip
    promote(MODEL, "1", "champion", tracking_uri=uri, root=root)


def _routes(api: ApiClient) -> set[str]:
    """The API's paths from its OpenAPI document; if that fails, the optional routes probed."""
    try:
        return api.route_paths()
    except DashboardError:
        pass
    found = set()
    for path in (f"{pages.API}/models", f"{pages.API}/system"):
        try:
            api.get(path)
        except DashboardError as exc:
            if exc.missing_route:
                continue
        found.add(path)
    return found


@pytest.fixture(scope="module")
def served(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    """The seeded store in the local stack's PostgreSQL (emptied first), the real API over it in
    a uvicorn process, and the dashboard (``raytrader dashboard up``) over the API."""
    tmp = tmp_path_factory.mktemp("dashboard")
    db_url = stack.config.store_url
    engine = make_engine(db_url)
    with engine.begin() as conn:  # whatever an earlier test left in the database
        tables = MetaData()
        tables.reflect(conn)
        tables.drop_all(conn)
    upgrade(engine)
    seeded = seed(engine)
    engine.dispose()
    mlflow_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    api_port, dash_port = _free_port(), _free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "RAYTRADER_DB_URL": db_url,
        "RAYTRADER_EXPERIMENT_API_TOKEN": READ,
        "RAYTRADER_EXPERIMENT_ADMIN_TOKEN": ADMIN,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        # nothing listens on the discard port: the system page shows them down, fast
        "RAYTRADER_SERVE_URL": "http://127.0.0.1:9",
        "RAYTRADER_STREAM_METRICS_URL": "http://127.0.0.1:9/metrics",
    }
    env.pop("RAY_API_SERVER_ADDRESS", None)
    api_log = tmp / "api.log"
    with api_log.open("wb") as log:
        api_proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "raytrader.api.app:app_from_env", "--factory",
             "--host", "127.0.0.1", "--port", str(api_port)],
            env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    token_file = tmp / "read-token"
    token_file.write_text(READ + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cli.STATE_DIR_ENV, str(tmp / "dashboard-state"))
        mp.setenv("RAYTRADER_EXPERIMENT_API_TOKEN_FILE", str(token_file))
        for name in ("RAYTRADER_EXPERIMENT_API_TOKEN", "RAYTRADER_EXPERIMENT_ADMIN_TOKEN",
                     "RAYTRADER_EXPERIMENT_ADMIN_TOKEN_FILE"):  # fmt: skip
            mp.delenv(name, raising=False)
        try:
            _wait(f"{api_url}/healthz", api_proc, api_log)
            api = ApiClient(api_url, READ)
            paths = _routes(api)
            if f"{pages.API}/models" in paths:
                _register(mlflow_uri, tmp)
            info = cli.dashboard_up(dash_port, api_url)
            assert cli.dashboard_status()["healthy"]
            yield Served(info["url"], api, seeded, paths, mlflow_uri)
        finally:
            cli.dashboard_down()
            _kill(api_proc)


@pytest.fixture(scope="module")
def browser_page(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def _settle(page: Any, timeout: float = 30) -> None:
    """Until the script has run (three polls in a row not running: Streamlit reruns)."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 3:
        assert time.monotonic() < deadline, "the page did not settle"
        calm = calm + 1 if page.locator(IDLE).count() else 0
        page.wait_for_timeout(150)


def _visit(page: Any, url: str, *texts: str) -> None:
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    for text in texts:
        page.get_by_text(text, exact=True).filter(visible=True).first.wait_for()
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0


def _shot(page: Any, name: str) -> None:
    """A full-page screenshot (the viewport stretched to the app's height, then restored)."""
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stAppViewContainer'].map(id => "
        "document.querySelector(`[data-testid=${id}]`)?.scrollHeight || 0), innerHeight)"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 8000)})
    page.wait_for_timeout(600)  # charts re-lay out
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(VIEWPORT)


def _errors(page: Any) -> list[str]:
    boxes = page.locator('[data-testid="stAlertContentError"]')
    return [boxes.nth(i).inner_text() for i in range(boxes.count())]


def test_runs(served: Served, browser_page: Any) -> None:
    s = served.seeded
    _visit(browser_page, f"{served.url}/runs?compare={s.rl_run_id},{s.rules_run_id}", "0.0003")
    assert browser_page.get_by_text("PPO", exact=True).count() == 1  # the config diff
    metric = browser_page.locator('[data-testid="stMetric"]').first.inner_text()
    assert metric.split() == ["runs", str(len(s.run_ids))]
    assert _errors(browser_page) == []
    _shot(browser_page, "runs")


def test_episode(served: Served, browser_page: Any) -> None:
    s = served.seeded
    ep = served.api.get(f"{pages.API}/episodes/{s.episode_ids[1]}")
    reward = pages.fmt(ep["reward_sum"])
    assert reward == pages.fmt(float(s.episode_steps[s.episode_ids[1]]["reward"].sum()))
    _visit(browser_page, f"{served.url}/episode?run={s.rl_run_id}&episode={ep['id']}", reward)
    # price, equity, drawdown, actions, reward per step, cumulative reward
    browser_page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 6"
    )
    assert _errors(browser_page) == []
    _shot(browser_page, "episode")


def test_backtests(served: Served, browser_page: Any) -> None:
    s = served.seeded
    bt = served.api.get(f"{pages.API}/backtests/{s.backtest_id}")
    sharpe = pages.fmt(bt["metrics"]["sharpe"])
    assert bt["metrics"]["sharpe"] == pytest.approx(s.result.metrics["sharpe"])
    _visit(browser_page, f"{served.url}/backtests?backtest={s.backtest_id}", sharpe)
    assert browser_page.get_by_text("Compare strategies").count() == 1
    assert _errors(browser_page) == []
    _shot(browser_page, "backtests")


def test_optimization(served: Served, browser_page: Any) -> None:
    _visit(browser_page, f"{served.url}/optimization", "1.2500", "trial_0", "0.4000, 0.6000")
    assert _errors(browser_page) == []
    _shot(browser_page, "optimization")


def test_evaluations(served: Served, browser_page: Any) -> None:
    _visit(browser_page, f"{served.url}/evaluations", "1.1000", "claim holds on 1 of 2", "-0.2000")
    assert _errors(browser_page) == []
    _shot(browser_page, "evaluations")


def test_paper_trading(served: Served, browser_page: Any) -> None:
    s = served.seeded
    _visit(
        browser_page, f"{served.url}/paper?paper={s.paper_session_id}", "Recent decisions",
        "running", "AAA", "5,047.0000",
    )  # fmt: skip
    # the equity and drawdown charts of its steps
    browser_page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2"
    )
    assert _errors(browser_page) == []
    _shot(browser_page, "paper")


def _champion(served: Served) -> str | None:
    models = {m["name"]: m for m in served.api.get(f"{pages.API}/models")["items"]}
    champion: str | None = models[MODEL]["aliases"].get("champion")
    return champion


def test_models_promote(served: Served, browser_page: Any) -> None:
    page = browser_page
    if f"{pages.API}/models" not in served.paths:
        _visit(page, f"{served.url}/models", "Models")
        _shot(page, "models")
        pytest.skip("the API has no /api/v1/models route: promote not tested")
    assert _champion(served) == "1"
    _visit(page, f"{served.url}/models", "Promote or roll back")
    assert page.get_by_text(f"{MODEL} · 2 versions").count() == 1
    token = page.locator("input[aria-label='admin token']")
    token.fill(READ)
    token.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Promote").click()
    page.get_by_text("HTTP 403", exact=False).first.wait_for()
    _settle(page)
    assert _champion(served) == "1"
    token = page.locator("input[aria-label='admin token']")
    token.fill(ADMIN)
    token.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Promote").click()  # the latest version (2) -> champion
    page.get_by_text(f"{MODEL}: champion → version 2 (was 1)").wait_for()
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert _champion(served) == "2"
    assert _errors(page) == []
    _shot(page, "models")


def test_system(served: Served, browser_page: Any) -> None:
    if f"{pages.API}/system" not in served.paths:
        _visit(browser_page, f"{served.url}/system", "System")
        _shot(browser_page, "system")
        pytest.skip("the API has no /api/v1/system route")
    _visit(browser_page, f"{served.url}/system", "store", "decision_service", "Ray jobs")
    assert browser_page.get_by_text("migrated to the code's revision").count() == 1
    system = served.api.get(f"{pages.API}/system")["components"]
    ok = sum(1 for c in system if c["ok"])
    assert browser_page.get_by_text(f"{ok} of {len(system)} components healthy").count() == 1
    assert _errors(browser_page) == []
    _shot(browser_page, "system")
