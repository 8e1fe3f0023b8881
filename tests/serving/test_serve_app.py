"""The Ray Serve application on the local stack's Ray head: `serve deploy` of the rendered Serve
config, `raytrader decide`, and the hot-swap proof under load: open-loop requests for 60 s while
the alias moves to a good version and then to a broken one.

The rate is 100 requests/s, or 70% of what the service sustains on this machine when that is
less (a 5-second closed-loop probe measures it first): the test proves the swap under steady
load, and the benchmark (`make bench`, section 7) reports the service's capacity. On the 2-core
CI machine, with the whole stack running beside it, Serve sustains fewer than 100 requests/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import make_world
from tests.support.cli import run_cli
from tests.support.stack_fixture import stack  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = int(os.environ.get("RAYTRADER_TEST_SERVE_RPS", "100"))  # requests per second, at most
SECONDS = 60
MIN_RATE = 20
MOVE_GOOD_AT = 15.0
MOVE_BROKEN_AT = 35.0
LIVE_WITHIN_S = 10.0


async def _capacity(url: str, token: str, seconds: float = 5.0, connections: int = 8) -> float:
    """Closed-loop requests/s the service sustains (``connections`` callers, ``seconds``)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def caller(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while loop.time() < end:
            async with session.post(
                f"{url}/v1/decisions", json={"symbols": ["GOOG"]}, headers=headers
            ) as resp:
                await resp.read()
                done += resp.status == 200

    async with aiohttp.ClientSession() as session:
        t0 = loop.time()
        await asyncio.gather(*(caller(session) for _ in range(connections)))
        return done / (loop.time() - t0)


async def _load(
    url: str, token: str, moves: dict[float, Any], rate: int
) -> tuple[list[tuple[float, int, str]], dict[float, float]]:
    """Open-loop load: request i leaves at t0 + i / RATE whatever the earlier ones are doing.
    ``moves`` maps a second offset to a blocking call, run off the loop at that time."""
    import aiohttp

    results: list[tuple[float, int, str]] = []
    moved: dict[float, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    body = {"symbols": ["GOOG"]}
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, sent: float) -> None:
        try:
            async with session.post(f"{url}/v1/decisions", json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                version = (
                    str(data.get("model", {}).get("version")) if resp.status == 200 else str(data)
                )
                results.append((sent, resp.status, version))
        except Exception as exc:
            results.append((sent, 0, repr(exc)))

    async def mover(at: float, call: Any, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        await loop.run_in_executor(None, call)
        moved[at] = loop.time() - t0

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=200)
    ) as session:
        t0 = loop.time()
        movers = [asyncio.create_task(mover(at, call, t0)) for at, call in moves.items()]
        tasks = []
        for i in range(rate * SECONDS):
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one(session, loop.time() - t0)))
        await asyncio.gather(*tasks, *movers)
    return results, moved


def test_serve_deploy_decide_and_swap_under_load(
    stack: Any,  # noqa: F811 - the fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raytrader.features import feast_repo as fr
    from raytrader.registry import promote
    from raytrader.serving.cli import wait_ready

    cfg = stack.config
    for key in list(os.environ):
        if key.startswith(("RAYTRADER_STACK_", "RAY_", "RAYTRADER_API", "RAYTRADER_ADMIN")):
            monkeypatch.delenv(key)
    for key, value in {**cfg.to_env(), **cfg.client_env()}.items():
        monkeypatch.setenv(key, value)
    store = fr.store("redis", redis=cfg.redis_connection, data=cfg.feast_data)
    world = make_world(tmp_path, uri=cfg.mlflow_uri, store=store)
    good = world.ensemble(weights=(1.0, 3.0), alias=None)  # type: ignore[arg-type]
    broken = world.broken(alias="challenger")
    token = cfg.serve_token_file.read_text().strip()

    # `serve deploy` of the Serve config rendered for this stack (what `raytrader serve up` runs)
    code, rendered, err = run_cli(capsys, "serve", "config", "--set", "poll_interval_s=1")
    assert code == 0, err
    assert token not in rendered  # token file paths only, never the token
    config_file = tmp_path / "serve_config.yaml"
    config_file.write_text(rendered)
    serve = Path(sys.executable).with_name("serve")
    try:
        proc = subprocess.run(
            [str(serve), "deploy", str(config_file), "--address", cfg.ray_dashboard_url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=dict(os.environ),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        status, body = wait_ready(cfg.serve_url, 240)
        assert status == 200, body

        code, out, err = run_cli(capsys, "decide", "GOOG", "--json")
        assert code == 0, err
        decision = json.loads(out)["decisions"][0]
        assert decision["model"] == {"name": "raytrader-ensemble", "version": "1"}
        assert decision["action"] in {"buy", "hold", "sell"}

        def move(version: str) -> Any:
            return lambda: promote(
                "raytrader-ensemble",
                version,
                "champion",
                tracking_uri=cfg.mlflow_uri,
                root=tmp_path,
            )

        capacity = asyncio.run(_capacity(cfg.serve_url, token))
        rate = min(RATE, int(0.7 * capacity))
        assert rate >= MIN_RATE, f"the service sustains only {capacity:.0f} requests/s"
        moves = {MOVE_GOOD_AT: move(good), MOVE_BROKEN_AT: move(broken)}
        results, moved = asyncio.run(_load(cfg.serve_url, token, moves, rate))
        failures = [r for r in results if r[1] != 200]
        assert not failures, failures[:5]
        assert len(results) == rate * SECONDS
        versions = {r[2] for r in results}
        assert versions == {"1", good}, versions  # the broken version never answered
        t_good = moved[MOVE_GOOD_AT]
        first_all_new = max(r[0] for r in results if r[2] == "1")
        assert first_all_new - t_good <= LIVE_WITHIN_S, (first_all_new, t_good)
        after = [r for r in results if r[0] > moved[MOVE_BROKEN_AT]]
        assert after
        assert all(r[2] == good for r in after)

        code, out, err = run_cli(capsys, "serve", "status", "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["ready"] is True
        assert info["model"]["version"] == good
        assert info["model"]["failed_version"] == broken
        assert info["model"]["swap_failures"] >= 1
        lost = max(r[0] for r in results) - min(r[0] for r in results)
        with capsys.disabled():
            print(
                f"\n[serve load] capacity {capacity:.0f} req/s; {len(results)} requests at {rate}/s "
                f"over {lost:.1f} s, all 2xx; version {good} "
                f"live {first_all_new - t_good:.2f} s after the alias moved"
            )
    finally:
        run_cli(capsys, "serve", "down")
        # the stack is shared by the session: leave its registry as the test found it (the
        # broken version's class lives in tests/, which a later deployment cannot import)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(cfg.mlflow_uri)
        for name in ("raytrader-ensemble", "t-ma-cross", "t-macd"):
            client.delete_registered_model(name)
        time.sleep(1)
