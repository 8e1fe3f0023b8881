"""The open-loop load generator (``raytrader serve load``): requests leave on schedule whatever the
service does, and the summary's failure window, recovery, versions and timeline are exact."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raytrader.errors import ConfigError
from raytrader.serving.load import Outcome, run_load, summarize
from tests.support.cli import run_cli


def test_summary_of_known_outcomes() -> None:
    outcomes = [
        Outcome(0.0, 200, 0.010, "1", None),
        Outcome(0.5, 200, 0.020, "1", None),
        Outcome(1.0, 0, 10.0, None, "ClientConnectorError()"),
        Outcome(1.5, 503, 0.005, None, "no model loaded"),
        Outcome(2.0, 200, 0.030, "2", None),
        Outcome(2.5, 200, 0.040, "2", None),
    ]
    s = summarize(outcomes, rate=2, seconds=3)
    assert (s["sent"], s["ok"], s["failed"]) == (6, 4, 2)
    assert s["failures_by_status"] == {"0": 1, "503": 1}
    assert s["failed_from_s"] == 1.0
    assert s["failed_until_s"] == 1.5
    assert s["recovery_s"] == 1.0  # first failure at 1.0 s, first success after the last at 2.0 s
    assert s["latency_p50_s"] == 0.020
    assert s["latency_p99_s"] == 0.040
    assert s["versions"] == {
        "1": {"first_s": 0.0, "last_s": 0.5},
        "2": {"first_s": 2.0, "last_s": 2.5},
    }
    assert s["timeline"] == [
        {"t": 0, "ok": 2, "failed": 0, "versions": ["1"]},
        {"t": 1, "ok": 0, "failed": 2, "versions": []},
        {"t": 2, "ok": 2, "failed": 0, "versions": ["2"]},
    ]
    assert s["answered_per_s"] == 4 / 3
    assert summarize(outcomes[:2], rate=2, seconds=1)["recovery_s"] == 0.0
    never = summarize(outcomes[:3], rate=2, seconds=1.5)
    assert never["recovery_s"] is None


class _Service:
    """A real HTTP server answering ``/v1/decisions``: 200 with version 7, except 503 while
    ``down`` is set; it sleeps ``delay_s`` per request (a slow service must not slow the sender)."""

    def __init__(self) -> None:
        self.down = False
        self.delay_s = 0.0
        self.tokens: list[str | None] = []

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        self.tokens.append(request.headers.get("Authorization"))
        await asyncio.sleep(self.delay_s)
        if self.down:
            return web.json_response({"detail": "no model loaded"}, status=503)
        return web.json_response({"model": {"name": "e", "version": "7"}, "decisions": []})


@pytest.fixture
def service() -> Iterator[tuple[str, _Service]]:
    from aiohttp import web

    svc = _Service()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/decisions", svc.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", svc
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_requests_leave_on_schedule_even_when_the_service_is_slow(
    service: tuple[str, _Service],
) -> None:
    url, svc = service
    svc.delay_s = 0.5  # ten times the interval between requests
    outcomes = run_load(url, "t" * 32, rate=20, seconds=1.0)
    assert len(outcomes) == 20
    assert all(o.status == 200 and o.version == "7" for o in outcomes)
    assert outcomes[-1].sent_s < 1.2  # not 20 x 0.5 s: the sender never waits for answers
    assert min(o.latency_s for o in outcomes) >= 0.5
    assert set(svc.tokens) == {f"Bearer {'t' * 32}"}


def test_a_window_of_failures_is_measured(service: tuple[str, _Service]) -> None:
    url, svc = service

    def outage() -> None:
        time.sleep(0.5)
        svc.down = True
        time.sleep(0.5)
        svc.down = False

    threading.Thread(target=outage, daemon=True).start()
    s = summarize(run_load(url, None, rate=40, seconds=1.5), rate=40, seconds=1.5)
    assert s["sent"] == 60
    assert 10 <= s["failed"] <= 30
    assert s["failures_by_status"].keys() == {"503"}
    assert 0.3 <= s["failed_from_s"] <= 0.7
    assert 0.4 <= s["recovery_s"] <= 0.8
    assert s["first_errors"] == ["no model loaded"]


def test_cli_exit_codes_and_json(
    service: tuple[str, _Service],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, svc = service
    monkeypatch.setenv("RAYTRADER_API_TOKEN", "a" * 32)
    code, out, err = run_cli(
        capsys, "serve", "load", "--url", url, "--rate", "10", "--seconds", "0.5", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["ok"] == 5
    svc.down = True
    code, out, err = run_cli(
        capsys, "serve", "load", "--url", url, "--rate", "10", "--seconds", "0.3"
    )
    assert code == 1
    assert "0 answered 200, 3 failed {'503': 3}" in out
    code, out, err = run_cli(capsys, "serve", "load", "--url", url, "--rate", "0")
    assert code == 2
    assert "rate, seconds and timeout must be > 0" in err
    with pytest.raises(ConfigError, match="at least one symbol"):
        run_load(url, None, rate=1, seconds=1, symbols=())
    # nothing listening: every request fails with no HTTP answer, still on schedule
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s2 = summarize(run_load(closed, None, rate=10, seconds=0.5), rate=10, seconds=0.5)
    assert s2["failures_by_status"] == {"0": 5}
    assert s2["recovery_s"] is None
