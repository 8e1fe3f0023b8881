"""Open-loop load on the decision service, for fault and upgrade drills and capacity checks.

Request ``i`` leaves at ``t0 + i / rate`` whatever the earlier ones are doing, so a stalled service
shows up as failures and latency, not as fewer requests sent (no coordinated omission). Each
outcome keeps its send time, HTTP status (0: no HTTP answer — refused, reset or timed out), latency
and the model version that answered; :func:`summarize` turns them into the numbers a drill
reports: failures, the failure window and recovery, latency percentiles, the versions seen over
time and a per-second timeline.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raytrader.errors import ConfigError


@dataclass(frozen=True)
class Outcome:
    sent_s: float  # seconds after the start
    status: int  # 0: no HTTP answer
    latency_s: float
    version: str | None  # the model version of a 200
    error: str | None  # why a request failed (the body's detail, or the exception)


async def _run(
    url: str, token: str | None, rate: float, seconds: float, symbols: Sequence[str],
    timeout_s: float,
) -> list[Outcome]:  # fmt: skip
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"symbols": list(symbols)}
    outcomes: list[Outcome] = []
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, t0: float) -> None:
        sent = loop.time()
        try:
            async with session.post(f"{url}/v1/decisions", json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                ok = resp.status == 200 and isinstance(data, dict)
                version = str(data["model"]["version"]) if ok else None
                error = None if ok else str(data.get("detail") if isinstance(data, dict) else data)
                outcomes.append(Outcome(sent - t0, resp.status, loop.time() - sent, version, error))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            outcomes.append(Outcome(sent - t0, 0, loop.time() - sent, None, repr(exc)))

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue behind a connection limit
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        t0 = loop.time()
        tasks = []
        for i in range(math.ceil(rate * seconds)):
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one(session, t0)))
        await asyncio.gather(*tasks)
    return sorted(outcomes, key=lambda o: o.sent_s)


def run_load(
    url: str,
    token: str | None,
    *,
    rate: float,
    seconds: float,
    symbols: Sequence[str] = ("GOOG",),
    timeout_s: float = 10.0,
) -> list[Outcome]:
    """``rate`` decision requests per second for ``seconds`` against ``url``, open loop."""
    if not (rate > 0 and seconds > 0 and timeout_s > 0):
        raise ConfigError(
            f"load: rate, seconds and timeout must be > 0 (got {rate}, {seconds}, {timeout_s})"
        )
    if not symbols:
        raise ConfigError("load: name at least one symbol")
    return asyncio.run(_run(url.rstrip("/"), token, rate, seconds, symbols, timeout_s))


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summarize(outcomes: Sequence[Outcome], *, rate: float, seconds: float) -> dict[str, Any]:
    """What a drill reports. ``recovery_s``: from the first failed request to the first success
    after the last one (0 without failures, None when no success followed); ``versions``: each
    version's first and last send time; ``timeline``: per second, the answered and failed
    requests and the versions seen."""
    ok = [o for o in outcomes if o.status == 200]
    failed = [o for o in outcomes if o.status != 200]
    latencies = [o.latency_s for o in ok]
    recovery: float | None = 0.0
    if failed:
        after = [o.sent_s for o in ok if o.sent_s > failed[-1].sent_s]
        recovery = after[0] - failed[0].sent_s if after else None
    versions: dict[str, dict[str, float]] = {}
    for o in ok:
        span = versions.setdefault(str(o.version), {"first_s": o.sent_s, "last_s": o.sent_s})
        span["last_s"] = o.sent_s
    timeline: list[dict[str, Any]] = []
    for second in range(math.ceil(seconds)):
        inside = [o for o in outcomes if second <= o.sent_s < second + 1]
        timeline.append({
            "t": second,
            "ok": sum(o.status == 200 for o in inside),
            "failed": sum(o.status != 200 for o in inside),
            "versions": sorted({str(o.version) for o in inside if o.status == 200}),
        })  # fmt: skip
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": len(outcomes),
        "ok": len(ok),
        "failed": len(failed),
        "failures_by_status": {
            str(k): v for k, v in sorted(Counter(o.status for o in failed).items())
        },
        "first_errors": sorted({o.error for o in failed if o.error})[:5],
        "failed_from_s": failed[0].sent_s if failed else None,
        "failed_until_s": failed[-1].sent_s if failed else None,
        "recovery_s": recovery,
        "answered_per_s": len(ok) / seconds,
        "latency_p50_s": _quantile(latencies, 0.50),
        "latency_p99_s": _quantile(latencies, 0.99),
        "latency_max_s": max(latencies, default=None),
        "versions": versions,
        "timeline": timeline,
    }
