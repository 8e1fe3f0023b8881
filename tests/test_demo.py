"""``make demo`` as a new user meets it: a fresh machine, nothing running, the README's command.

The test runs the same program ``make demo`` runs (``.venv/bin/raytrader demo``, default options,
embedded mode) with a fresh ``HOME`` — no ``~/.local/share/raytrader``, no stack state, cold caches —
from an empty working directory, twice in a row, while this test process holds a local Ray of its
own (as any ``ray.init()`` on the machine does: it takes Ray's default dashboard-agent port, which is
how the first ``make demo`` used to fail). The tests' own stack lives on other ports and in another
state dir, so it cannot stand in for the demo's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raytrader.stack.config import StackConfig

#: what the console must not show: library warnings, progress bars, log lines, tracebacks
NOISE = (
    "CloudPickle",
    "Downloading artifacts",
    "SADeprecationWarning",
    "DeprecationWarning",
    "Traceback",
    " INFO ",
    " WARNING ",
    "Successfully registered model",
)


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _fresh_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "RAYTRADER_", "MLFLOW_")) and k != "PYTEST_CURRENT_TEST"
    }
    env["HOME"] = str(home)
    # as the Makefile sets it: under the fresh HOME, so the kernel compiles from scratch
    env["NUMBA_CACHE_DIR"] = str(home / ".cache" / "raytrader" / "numba")
    return env


@pytest.fixture
def fresh_machine(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """(environment, working directory) of a fresh user; stops what the demo left running."""
    defaults = StackConfig()
    ports = [
        defaults.ray_gcs_port,
        defaults.ray_dashboard_port,
        defaults.ray_client_port,
        defaults.ray_dashboard_agent_port,
        defaults.serve_port,
        8080,  # the experiment API
        8501,  # the dashboard
    ]
    busy = [p for p in ports if _port_in_use(p)]
    if busy:
        pytest.skip(f"the default stack ports {busy} are in use (a developer's own stack?)")
    from raytrader.strategies.runner import ensure_ray

    ensure_ray()  # a local Ray in this process, holding Ray's default ports, as a user's may
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = _fresh_env(home)
    exe = str(Path(sys.executable).with_name("raytrader"))
    try:
        yield env, work
    finally:
        for args in (["dashboard", "down"], ["api", "down"], ["serve", "down"], ["stack", "down"]):
            subprocess.run(
                [exe, *args], cwd=work, env=env, capture_output=True, timeout=120, check=False
            )


def _demo(env: dict[str, str], work: Path) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("raytrader"))
    return subprocess.run(
        [exe, "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.integration
@pytest.mark.slow
def test_make_demo_on_a_fresh_machine_then_again(
    fresh_machine: tuple[dict[str, str], Path],
) -> None:
    env, work = fresh_machine
    assert not (Path(env["HOME"]) / ".local" / "share" / "raytrader").exists()
    for attempt in ("first", "second"):
        proc = _demo(env, work)
        shown = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{attempt} run:\n{shown[-4000:]}"
        assert "embedded mode: the stack's Ray head" in proc.stdout
        assert "annualized as equity: 252 bars a year" in proc.stdout
        assert "raytrader-ensemble v1 at alias champion" in proc.stdout
        assert "model raytrader-ensemble v1" in proc.stdout  # the decision table
        assert "raytrader-meta v1 at alias champion" in proc.stdout
        assert "model raytrader-meta v1" in proc.stdout  # served after the retarget
        assert "preset balanced" in proc.stdout  # and explained
        assert "GOOG" in proc.stdout
        assert "decision service: http://127.0.0.1:8000" in proc.stdout
        noise = [line for line in shown.splitlines() if any(n in line for n in NOISE)]
        assert not noise, f"{attempt} run printed library output:\n" + "\n".join(noise[:10])
        logs = sorted(work.glob("runs/demo-*/demo.log"))
        assert logs, "the library log is kept next to the report"
        assert "dashboard: http://127.0.0.1:8501" in proc.stdout
    assert len(list(work.glob("runs/demo-*"))) == 2
    # what the dashboard shows, read through the API as it reads it: both demos' strategy runs,
    # their RL runs with episodes, steps and trades, and their searches with every trial
    exe = str(Path(sys.executable).with_name("raytrader"))
    token = subprocess.run(
        [exe, "api", "token"], cwd=work, env=env, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout.strip()  # fmt: skip
    import httpx

    api = httpx.Client(
        base_url="http://127.0.0.1:8080/api/v1", headers={"Authorization": f"Bearer {token}"}
    )
    runs = api.get("/runs").json()["items"]
    assert sorted(r["kind"] for r in runs) == ["rl", "rl", "rules", "rules"]
    rl = next(r for r in runs if r["kind"] == "rl")
    episodes = api.get(f"/runs/{rl['id']}/episodes").json()["items"]
    assert episodes
    assert api.get(f"/episodes/{episodes[0]['id']}/steps").json()["items"]
    rules = next(r for r in runs if r["kind"] == "rules")
    backtests = api.get(f"/runs/{rules['id']}/backtests").json()["items"]
    assert len(backtests) == 8  # seven strategies and the ensemble
    trades = api.get(f"/backtests/{backtests[0]['id']}/trades").json()["items"]
    assert len(trades) == min(100, int(backtests[0]["metrics"]["num_trades"]))
    searches = api.get("/optimization/runs").json()["items"]
    assert len(searches) == 2
    trials = api.get(f"/optimization/runs/{searches[0]['id']}/results").json()["items"]
    assert len(trials) == 12
    assert httpx.get("http://127.0.0.1:8501/_stcore/health").text == "ok"
