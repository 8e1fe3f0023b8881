"""Section 7: the decision service — Ray Serve end-to-end against the same ensemble behind plain
FastAPI + uvicorn, and the ensemble call alone.

Side by side in one run, on the local stack (``raytrader stack up``; MLflow server, Feast on Redis,
the stack's Ray head):

(a) the Ray Serve application (``pipelines/serve/serve_config.yaml``, deployed like ``raytrader
    serve up``): HTTP proxy → ``DecisionAPI`` replica (FastAPI; Feast read, auth) → handle call →
    ``DecisionModel`` replica (the ensemble);
(b) the same FastAPI app with the ensemble in-process (:func:`raytrader.serving.service.local_app`)
    under one uvicorn worker, same :class:`ServiceConfig`, no Ray Serve;
(c) ``ModelHolder.decide`` alone in this process (plus, to show where the latency goes, the same
    ensemble without MLflow's per-call schema enforcement, the Feast read and the whole
    ``DecisionService.decide`` handler without HTTP);
(d) Ray Serve's floor (:mod:`benchmarks.serve_floor`): no-op apps of the same shape on the same
    Serve proxy, a FastAPI ingress alone and an ingress making one handle call to a no-op model,
    under the same load as (a): what Serve itself costs on this machine.

HTTP load comes from ``wrk`` (Debian package ``wrk``, ``scripts/install-debian-deps.sh``): a fixed
rate of 100 requests/s paced by a Lua ``delay()`` schedule, then closed-loop steps of 1..32
connections for the highest sustained rate within the error budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, Section, Verdict, fmt_s, load_average, log, table

NAME = "serving"
TITLE = "7. Decision service (Ray Serve vs plain FastAPI + uvicorn vs the ensemble call)"

ENSEMBLE = "raytrader-ensemble"
ALIAS = "champion"
SYMBOL = "GOOG"
#: extra synthetic symbols written to the online store for the multi-symbol requests
EXTRA_SYMBOLS = tuple(f"BENCH{i:02d}" for i in range(7))

RATE = 100.0  # requests/s offered in the fixed-rate runs
RATE_CONNECTIONS = 10
MIN_ACHIEVED = 0.95  # the fixed-rate run must achieve this share of RATE for the p99 verdict
RATE_THREADS = 2
RATE_SECONDS = 30
MULTI_SECONDS = 20
WARMUP_SECONDS = 5
STEP_CONNECTIONS = (1, 2, 4, 8, 16, 32)
STEP_SECONDS = 12
WRK_TIMEOUT_S = 5
ERROR_BUDGET = 0.001  # 0.1 % of requests may fail (non-2xx/3xx, socket errors, timeouts)
P99_TARGET_S = 0.025
ADDED_P50_TARGET_S = 0.003
INPROC_WARMUP = 200
INPROC_CALLS = 2_000
PLAIN_PORT = 8100
CONFIG_ENV = "RAYTRADER_BENCH_SERVICE_CONFIG"

WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rtb_timespec;
int clock_gettime(int clk_id, rtb_timespec *tp);
]]
local ts = ffi.new("rtb_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = "POST"
wrk.body = [==[@BODY@]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @TOKEN@"

local interval = @INTERVAL@  -- ms between this thread's requests; 0: closed loop
local threads = @THREADS@
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

if interval > 0 then
  local nxt = nil
  -- each thread sends on its own schedule (rate / threads), threads offset by interval / threads;
  -- a request that cannot go out on time (no idle connection) is sent as soon as one is free, and
  -- the schedule never bursts to catch up more than one interval
  function delay()
    local t = now_ms()
    if nxt == nil then nxt = t + (tid or 0) * interval / threads end
    if nxt < t - interval then nxt = t end
    local d = nxt - t
    nxt = nxt + interval
    if d < 0 then return 0 end
    return math.floor(d + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"status\": %d, \"connect\": %d, " ..
    "\"read\": %d, \"write\": %d, \"timeout\": %d, \"p50\": %d, \"p95\": %d, \"p99\": %d, " ..
    "\"max\": %d, \"mean\": %.1f}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean))
end
"""


# ------------------------------------------------------------------------------------ plain uvicorn
def plain_app() -> Any:
    """uvicorn ``--factory`` target for (b): the service app with the model in-process, built from
    the :class:`ServiceConfig` JSON in ``$RAYTRADER_BENCH_SERVICE_CONFIG``."""
    from raytrader.serving.config import ServiceConfig
    from raytrader.serving.service import local_app

    return local_app(ServiceConfig.model_validate_json(os.environ[CONFIG_ENV]))


# ------------------------------------------------------------------------------------------- setup
def _stack() -> Any:
    from raytrader.stack.config import StackConfig
    from raytrader.stack.manager import Stack

    cfg = StackConfig.from_env()
    down = [st.name for st in Stack(cfg).status() if not st.healthy]
    if down:
        raise RuntimeError(
            f"the serving benchmark needs the local stack ({', '.join(down)} not healthy): "
            "run `raytrader stack up`"
        )
    if shutil.which("wrk") is None:
        raise RuntimeError(
            "the serving benchmark needs wrk: apt-get install wrk (scripts/install-debian-deps.sh)"
        )
    return cfg


def _ensemble(uri: str) -> tuple[str, str]:
    """The ``raytrader-ensemble@champion`` version and its members (the demo's default ensemble,
    registered when missing)."""
    from mlflow.tracking import MlflowClient

    from raytrader.ensemble import default_ensemble

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        version = default_ensemble(uri, tmp)
    mv = MlflowClient(uri).get_model_version(ENSEMBLE, version)
    return version, mv.tags.get("raytrader.members", "?")


def _recent(bars: Any) -> Any:
    """``bars`` moved forward by whole days so that the last one closed at today's 00:00 UTC."""
    import pandas as pd

    from raytrader.data.bars import Bars

    shift = pd.Timestamp.now(tz="UTC").floor("D") - (bars.index[-1] + bars.timeframe.delta)
    frame = bars.frame.copy()
    frame.index = frame.index + shift
    return Bars.from_frame(
        frame, symbol=bars.symbol, timeframe=bars.timeframe, calendar=bars.calendar
    )


def _features(cfg: Any) -> list[str]:
    """GOOG's and the synthetic symbols' latest rows in the stack's Feast online store."""
    import pandas as pd

    from raytrader.data.sources import load_bars
    from raytrader.features import feast_repo as fr
    from raytrader.features.engine import compute_features

    fs = fr.store("redis", redis=cfg.redis_connection, data=cfg.feast_data)
    fr.apply(fs)
    # daily bars, as the service's timeframe, moved so the last one closed at today's midnight:
    # the service refuses features older than two bars
    series = [_recent(load_bars("goog"))] + [
        _recent(load_bars(f"synthetic:n_bars=400,timeframe=1d,seed={i},symbol={s}"))
        for i, s in enumerate(EXTRA_SYMBOLS)
    ]
    rows = pd.concat([fr.feature_rows(b, compute_features(b)).tail(1) for b in series])
    fr.push(fs, rows, to="online")  # Redis keeps the stored row when it is as new: idempotent
    return [str(b.symbol) for b in series]


def _http(
    url: str, token: str | None = None, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    from raytrader.serving.cli import _http as http

    try:
        return http(url, token=token, body=body, timeout=timeout)
    except OSError as exc:
        return 0, str(exc)


def _check_decision(url: str, token: str, symbols: list[str], version: str) -> None:
    status, body = _http(f"{url}/v1/decisions", token, {"symbols": symbols})
    if status != 200:
        raise RuntimeError(f"{url}/v1/decisions answered HTTP {status}: {body}")
    served = str(body["model"]["version"])
    if served != version:
        raise RuntimeError(f"{url} serves {ENSEMBLE} v{served}, {ALIAS} is v{version}")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free loopback port")


@dataclass
class Plain:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_path.unlink(missing_ok=True)


def _start_plain(args: dict[str, Any], token: str) -> Plain:
    port = _free_port(PLAIN_PORT)
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="bench-serving-uvicorn-", suffix=".log")[1])
    env = {**os.environ, CONFIG_ENV: json.dumps(args), "RAYTRADER_API_TOKEN": token}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.bench_serving:plain_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    plain = Plain(proc, url, log_path)
    deadline = time.monotonic() + 180
    last: tuple[int, Any] = (0, "not started")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        last = _http(f"{url}/readyz", timeout=5)
        if last[0] == 200:
            return plain
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-2000:]
    plain.stop()
    raise RuntimeError(f"plain uvicorn app at {url} not ready ({last}): {tail}")


# ------------------------------------------------------------------------------------------- load
@dataclass
class Load:
    """One wrk run; latencies in seconds."""

    connections: int
    seconds: float
    rate: float | None
    requests: int
    errors: int
    duration_s: float
    p50: float
    p95: float
    p99: float
    max: float
    wrk_cpu_s: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU (user + system) per request, in ms."""
        return self.server_cpu_s / self.requests * 1000 if self.requests else float("nan")

    @property
    def error_rate(self) -> float:
        return self.errors / max(self.requests, 1)

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.error_rate <= ERROR_BUDGET


def _wrk(
    url: str,
    token: str,
    symbols: list[str],
    *,
    connections: int,
    threads: int,
    seconds: float,
    rate: float | None,
    server_pids: Any,
) -> Load:
    interval = threads * 1000.0 / rate if rate else 0.0
    script = (
        WRK_LUA.replace("@BODY@", json.dumps({"symbols": symbols}))
        .replace("@TOKEN@", token)
        .replace("@INTERVAL@", f"{interval:.6f}")
        .replace("@THREADS@", str(threads))
    )
    fd, path = tempfile.mkstemp(prefix="bench-serving-", suffix=".lua")  # 0600: holds the token
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(script)
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            f"{WRK_TIMEOUT_S}s",
            "-s",
            path,
            f"{url}/v1/decisions",
        ]
        pids = server_pids()
        cpu0 = _cpu_seconds(pids)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1 = _cpu_seconds(pids)
    finally:
        os.unlink(path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}"
        )
    d = json.loads(line.removeprefix("WRKJSON "))
    return Load(
        connections=connections,
        seconds=seconds,
        rate=rate,
        requests=d["requests"],
        errors=sum(d[k] for k in ("status", "connect", "read", "write", "timeout")),
        duration_s=d["duration_us"] / 1e6,
        p50=d["p50"] / 1e6,
        p95=d["p95"] / 1e6,
        p99=d["p99"] / 1e6,
        max=d["max"] / 1e6,
        wrk_cpu_s=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        server_cpu_s=cpu1 - cpu0,
    )


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (from /proc; a vanished pid counts 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / tick


def _serve_pids(app: str = "raytrader") -> list[int]:
    """The Serve processes on this machine: proxy, controller and ``app``'s replicas."""
    replica = f"ServeReplica:{app}:".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(t in cmd for t in (b"ProxyActor", b"ServeController", replica)):
            out.append(int(entry.name))
    return out


def _floor(cfg: Any, action: str) -> None:
    """Deploy (``up``) or delete (``down``) the no-op apps of :mod:`benchmarks.serve_floor`."""
    from raytrader.serving.cli import _env_for

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve_floor", action],
        cwd=REPO_ROOT,
        env=_env_for(cfg),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmarks.serve_floor {action} failed: {(proc.stderr or proc.stdout)[-1500:]}"
        )


def _serve_replicas(cfg: Any) -> str:
    """``DecisionModel`` replicas by state, from ``serve status``."""
    import yaml

    from raytrader.serving.cli import _env_for, _serve_cli

    proc = _serve_cli(["status", "--address", str(cfg.ray_dashboard_url)], _env_for(cfg), 60)
    try:
        doc = yaml.safe_load(proc.stdout)
        dep = doc["applications"]["raytrader"]["deployments"]["DecisionModel"]
        return ", ".join(f"{n} {s}" for s, n in dep["replica_states"].items())
    except Exception:
        return "unknown"


def _steps(url: str, token: str, server_pids: Any) -> list[Load]:
    out = []
    for c in STEP_CONNECTIONS:
        load = _wrk(
            url,
            token,
            [SYMBOL],
            connections=c,
            threads=min(2, c),
            seconds=STEP_SECONDS,
            rate=None,
            server_pids=server_pids,
        )
        log(
            f"serving:   {c} connection(s): {load.rps:,.0f} req/s, p50 {fmt_s(load.p50)}, "
            f"p99 {fmt_s(load.p99)}, errors {load.errors}"
        )
        out.append(load)
        if load.error_rate > 0.05 or load.p99 > 2.0:  # saturated: more connections only queue
            break
    return out


def _sustained(steps: list[Load], p99_bound: float | None) -> Load | None:
    ok = [s for s in steps if s.ok and (p99_bound is None or s.p99 <= p99_bound)]
    return max(ok, key=lambda s: s.rps) if ok else None


# ------------------------------------------------------------------------------------- in-process
def _percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "n": float(len(a)),
    }


def _time(fn: Any, calls: int | None = None, warmup: int | None = None) -> dict[str, float]:
    for _ in range(INPROC_WARMUP if warmup is None else warmup):
        fn()
    samples = []
    for _ in range(INPROC_CALLS if calls is None else calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return _percentiles(samples)


def _in_process(args: dict[str, Any]) -> dict[str, dict[str, float]]:
    """(c): the ensemble call alone, and the Feast read and the whole handler without HTTP."""
    from raytrader.ensemble import decision_frame
    from raytrader.serving.config import ServiceConfig, Tokens
    from raytrader.serving.features import OnlineFeatures
    from raytrader.serving.model import ModelHolder
    from raytrader.serving.schemas import DecisionRequest
    from raytrader.serving.service import DecisionService, LocalModel

    config = ServiceConfig.model_validate(args)
    holder = ModelHolder(config)
    outcome = holder.check()
    loaded = holder.current
    if loaded is None:
        raise RuntimeError(f"the in-process model holder loaded nothing: {outcome}")
    features = OnlineFeatures(config)
    rows, _ = features.latest([SYMBOL])
    frame = decision_frame(rows.reset_index(drop=True))
    service = DecisionService(
        config, LocalModel(holder), features=features, tokens=Tokens(api=None, admin=None)
    )
    request = DecisionRequest(symbols=[SYMBOL])
    inner = loaded.model.unwrap_python_model()
    loop = asyncio.new_event_loop()
    try:
        out = {
            "model": _time(lambda: holder.decide(frame)),
            # the same ensemble without MLflow's per-call input schema enforcement
            "direct": _time(lambda: inner.predict(None, frame)),
            "feast": _time(lambda: features.latest([SYMBOL]), calls=1_000, warmup=100),
            "handler": _time(
                lambda: loop.run_until_complete(service.decide(request)), calls=1_000, warmup=100
            ),
        }
    finally:
        loop.close()
        shutil.rmtree(loaded.path, ignore_errors=True)  # the holder's download folder
    return out


# ------------------------------------------------------------------------------------------ report
def _delta(seconds: float) -> str:
    """A signed difference of two latencies."""
    return ("−" if seconds < 0 else "+") + fmt_s(abs(seconds))


def _load_row(label: str, load: Load, steps: list[Load] | None) -> list[str]:
    slo = _sustained(steps, P99_TARGET_S) if steps else None
    peak = _sustained(steps, None) if steps else None
    return [
        label,
        fmt_s(load.p50),
        fmt_s(load.p95),
        fmt_s(load.p99),
        fmt_s(load.max),
        f"{load.rps:,.1f} ({load.errors} errors / {load.requests:,})",
        f"{load.cpu_ms_per_request:.2f} ms",
        (f"{slo.rps:,.0f} ({slo.connections} conn.)" if slo else "none met it") if steps else "—",
        (f"{peak.rps:,.0f} ({peak.connections} conn.)" if peak else "none met it")
        if steps
        else "—",
    ]


def _inproc_row(label: str, t: dict[str, float]) -> list[str]:
    return [
        label,
        fmt_s(t["p50"]),
        fmt_s(t["p95"]),
        fmt_s(t["p99"]),
        fmt_s(t["max"]),
        f"— ({int(t['n']):,} sequential calls)",
        "—",
        "—",
        "—",
    ]


def _step_rows(*series: list[Load]) -> list[list[str]]:
    rows = []
    for i, c in enumerate(STEP_CONNECTIONS):
        cells = [str(c)]
        for steps in series:
            if i < len(steps):
                s = steps[i]
                cells += [
                    f"{s.rps:,.0f}",
                    fmt_s(s.p50),
                    fmt_s(s.p99),
                    f"{s.error_rate * 100:.2g} %",
                    f"{s.wrk_cpu_s / s.duration_s:.2f}",
                ]
            else:
                cells += ["(stopped)", "", "", "", ""]
        rows.append(cells)
    return rows


def run() -> Section:
    from benchmarks.serve_floor import APPS as FLOOR_APPS
    from raytrader.serving.cli import DEFAULT_CONFIG, _env_for, _serve_cli, render, serve_up

    load_start = load_average()
    cfg = _stack()
    version, members = _ensemble(cfg.mlflow_uri)
    symbols = _features(cfg)
    multi = symbols[:8]
    token = cfg.serve_token_file.read_text().strip()
    # the exact args `raytrader serve up` deploys: (b) and (c) use the same ServiceConfig
    doc = render(DEFAULT_CONFIG, stack=cfg, full=True, root=Path("runs"))
    args = next(a for a in doc["applications"] if a["name"] == "raytrader")["args"]
    log(f"serving: {ENSEMBLE} v{version} ({members}); {len(symbols)} symbols online")

    log("serving: (c) in-process: ensemble call, Feast read, handler")
    inproc = _in_process(args)

    was_up = _http(f"{cfg.serve_url}/readyz")[0] == 200
    log(f"serving: deploying the Serve app ({'already up' if was_up else 'not running'})")
    info = serve_up(DEFAULT_CONFIG)
    if not info["ready"]:
        raise RuntimeError(f"the Serve app is not ready: {info['readyz']}")
    serve_url = info["url"]
    plain: Plain | None = None
    floor_up = False
    try:
        plain = _start_plain(args, token)
        urls = {"a": serve_url, "b": plain.url}
        proc = plain.proc
        pid_of: dict[str, Callable[[], list[int]]] = {"a": _serve_pids, "b": lambda: [proc.pid]}
        for key in ("a", "b"):
            for syms in ([SYMBOL], multi):
                _check_decision(urls[key], token, syms, version)

        def paced(key: str, syms: list[str], seconds: float) -> Load:
            return _wrk(
                urls[key],
                token,
                syms,
                connections=RATE_CONNECTIONS,
                threads=RATE_THREADS,
                seconds=seconds,
                rate=RATE,
                server_pids=pid_of[key],
            )

        fixed: dict[str, Load] = {}
        for key in ("a", "b"):  # warm-up of both before either is measured
            paced(key, [SYMBOL], WARMUP_SECONDS)
        for key, syms, seconds in (
            ("a", [SYMBOL], RATE_SECONDS),
            ("b", [SYMBOL], RATE_SECONDS),
            ("a8", multi, MULTI_SECONDS),
            ("b8", multi, MULTI_SECONDS),
        ):
            log(f"serving: ({key}) {RATE:.0f} req/s for {seconds} s, {len(syms)} symbol(s)")
            fixed[key] = paced(key[0], syms, seconds)
            f = fixed[key]
            log(
                f"serving:   {f.rps:.1f} req/s, p50 {fmt_s(f.p50)}, p95 {fmt_s(f.p95)}, "
                f"p99 {fmt_s(f.p99)}, max {fmt_s(f.max)}, errors {f.errors}"
            )
        steps: dict[str, list[Load]] = {}
        for key in ("a", "b"):
            log(f"serving: ({key}) closed-loop steps {STEP_CONNECTIONS}")
            steps[key] = _steps(urls[key], token, pid_of[key])
        replicas = _serve_replicas(cfg)

        # (d) what Ray Serve itself costs here: the same proxy, no-op apps of the same shape
        log("serving: (d) Ray Serve's floor: deploying benchmarks.serve_floor")
        floor_up = True
        _floor(cfg, "up")
        for key, app in (("d0", "floor-ingress"), ("d1", "floor-hop")):
            urls[key] = f"{serve_url}{FLOOR_APPS[app]}"
            pid_of[key] = partial(_serve_pids, app)
            status, body = _http(f"{urls[key]}/v1/decisions", token, {"symbols": [SYMBOL]})
            if status != 200:
                raise RuntimeError(f"{urls[key]}/v1/decisions answered HTTP {status}: {body}")
            paced(key, [SYMBOL], WARMUP_SECONDS)
            log(f"serving: ({key}) {app}: {RATE:.0f} req/s for {RATE_SECONDS} s")
            fixed[key] = f = paced(key, [SYMBOL], RATE_SECONDS)
            log(
                f"serving:   {f.rps:.1f} req/s, p50 {fmt_s(f.p50)}, p99 {fmt_s(f.p99)}, "
                f"errors {f.errors}"
            )
            log(f"serving: ({key}) {app}: closed-loop steps {STEP_CONNECTIONS}")
            steps[key] = _steps(urls[key], token, pid_of[key])
    finally:
        if plain is not None:
            plain.stop()
        if floor_up:
            try:
                _floor(cfg, "down")
            except Exception as exc:  # the report still matters; say what is left deployed
                log(f"serving: could not delete the floor apps {sorted(FLOOR_APPS)}: {exc}")
        if not was_up:
            log("serving: shutting the Serve app down (this section deployed it)")
            done = _serve_cli(
                ["shutdown", "-y", "--address", str(cfg.ray_dashboard_url)], _env_for(cfg), 120
            )
            if done.returncode != 0:
                log(f"serving: serve shutdown failed: {(done.stderr or done.stdout)[-500:]}")

    a, b = fixed["a"], fixed["b"]
    added = {q: getattr(a, q) - getattr(b, q) for q in ("p50", "p95", "p99")}
    rows = [
        _load_row("(a) Ray Serve end-to-end, 1 symbol", a, steps["a"]),
        _load_row("(b) plain FastAPI + uvicorn, 1 symbol", b, steps["b"]),
        _load_row("(d) Ray Serve's floor: no-op FastAPI ingress alone", fixed["d0"], steps["d0"]),
        _load_row(
            "(d) Ray Serve's floor: no-op ingress → handle → no-op model", fixed["d1"], steps["d1"]
        ),
        _load_row(f"(a) Ray Serve end-to-end, {len(multi)} symbols", fixed["a8"], None),
        _load_row(f"(b) plain FastAPI + uvicorn, {len(multi)} symbols", fixed["b8"], None),
        _inproc_row("(c) the ensemble call alone (`ModelHolder.decide`, 1 row)", inproc["model"]),
        _inproc_row(
            "the same ensemble without MLflow's per-call schema check (`EnsembleModel.predict`)",
            inproc["direct"],
        ),
        _inproc_row("Feast online read alone (SDK, 1 symbol)", inproc["feast"]),
        _inproc_row(
            "the whole handler without HTTP (`DecisionService.decide`, 1 symbol)",
            inproc["handler"],
        ),
    ]
    p99_ok = a.p99 <= P99_TARGET_S and a.ok and a.rps >= MIN_ACHIEVED * RATE
    verdicts = [
        Verdict(
            "7. p99 at 100 RPS, Serve end-to-end",
            f"<= {P99_TARGET_S * 1000:.0f} ms",
            f"{fmt_s(a.p99)} at {a.rps:.1f} req/s, {a.error_rate * 100:.2g} % errors",
            p99_ok,
        ),
        Verdict(
            "7. Serve added latency at p50 over plain FastAPI",
            f"<= {ADDED_P50_TARGET_S * 1000:.0f} ms",
            f"{_delta(added['p50'])} ({fmt_s(a.p50)} vs {fmt_s(b.p50)})",
            added["p50"] <= ADDED_P50_TARGET_S,
        ),
    ]
    cores = os.cpu_count()
    budget = f"{ERROR_BUDGET * 100:g} %"
    slo_ms = f"{P99_TARGET_S * 1000:.0f} ms"
    n_multi = len(multi)
    steps_list = ", ".join(map(str, STEP_CONNECTIONS))
    main_table = table(
        [
            "service",
            "p50",
            "p95",
            "p99",
            "max",
            f"achieved req/s at {RATE:.0f} offered",
            "server CPU / request",
            f"max sustained req/s (≤ {budget} errors, p99 ≤ {slo_ms})",
            f"peak req/s (≤ {budget} errors)",
        ],
        rows,
    )
    step_table = table(
        [
            "connections",
            "(a) req/s",
            "(a) p50",
            "(a) p99",
            "(a) errors",
            "(a) wrk CPU",
            "(b) req/s",
            "(b) p50",
            "(b) p99",
            "(b) errors",
            "(b) wrk CPU",
        ],
        _step_rows(steps["a"], steps["b"]),
    )
    floor_table = table(
        [
            "connections",
            *(
                f"({k}) {col}"
                for k in ("ingress", "hop")
                for col in ("req/s", "p50", "p99", "errors", "wrk CPU")
            ),
        ],
        _step_rows(steps["d0"], steps["d1"]),
    )
    method = (
        f"**Method.** Everything runs on this machine ({cores} cores), on the local stack (MLflow "
        "server on PostgreSQL, Feast online store on Redis, the stack's Ray head; Kafka and the "
        f"Feast feature server idle). The model is `{ENSEMBLE}@{ALIAS}` (v{version}: {members}; "
        "weighted rule members), registered by this section when missing; the features are the "
        f"latest online rows of GOOG and of {len(EXTRA_SYMBOLS)} synthetic symbols. "
        "**(a)** the Ray Serve app of `pipelines/serve/serve_config.yaml` deployed as "
        "`raytrader serve up` does (HTTP proxy → `DecisionAPI` → `DecisionModel`, 0.5 CPU each, "
        "`DecisionModel` autoscaled 1–2 replicas); **(b)** the same FastAPI app and "
        "`ServiceConfig` with the ensemble in-process (`local_app`) under one uvicorn worker "
        "(uvloop, httptools) on its own port; **(c)** `ModelHolder.decide` on one decision row in "
        f"this process, {INPROC_CALLS:,} sequential calls after {INPROC_WARMUP} warm-up calls "
        "(and, to show where the time goes: the same ensemble without MLflow's per-call input "
        "schema enforcement, the Feast SDK read, and the whole `DecisionService.decide` handler "
        "without HTTP, 1,000 calls each for the last two). "
        f"HTTP load: `wrk` ({_wrk_version()}), `POST /v1/decisions` with "
        '`{"symbols": ["GOOG"]}` and the bearer token. '
        f"*Fixed rate*: {RATE:.0f} req/s offered on a Lua `delay()` schedule "
        f"({RATE_CONNECTIONS} connections, {RATE_THREADS} threads, sends spaced evenly; wrk "
        f"times each request from its send), {RATE_SECONDS} s per service after a "
        f"{WARMUP_SECONDS} s warm-up of both; (a) and (b) run one after the other, never "
        f"together; the {n_multi}-symbol rows ask for {n_multi} symbols per request for "
        f"{MULTI_SECONDS} s. *Max sustained rate*: closed-loop steps of {steps_list} connections "
        f"(no pacing), {STEP_SECONDS} s each; the error budget is {budget} of requests (non-2xx, "
        f"socket errors, timeouts at {WRK_TIMEOUT_S} s); *max sustained* is the highest rate of "
        f"a step within the budget **and** with p99 ≤ {slo_ms}, *peak* the highest within the "
        "budget alone; the p99 verdict also needs the fixed run to achieve "
        f"≥ {MIN_ACHIEVED * RATE:.0f} req/s within the budget. *Server CPU / request*: user + "
        "system CPU of the server processes during the fixed-rate run (for (a) and (d) the Serve "
        "proxy, controller and the app's replicas; Ray's GCS and raylet not counted) over the "
        "requests. **(d)** Ray Serve's own floor (`benchmarks/serve_floor.py`): two no-op "
        "applications deployed beside `raytrader` on the same Serve instance and proxy, each "
        "answering the same `POST /v1/decisions` request: a FastAPI ingress that returns the "
        "symbols (proxy → replica), and the same ingress making one handle call to a model "
        "deployment that returns its argument (proxy → ingress → model, the service's topology "
        "with no Feast read, auth, ensemble or response model); same load as (a), fixed rate "
        "and steps. wrk "
        "shares the "
        f"{cores} cores with the servers (its CPU use, in cores, is in the step table). "
        f"`DecisionModel` replicas after the steps: {replicas}. Load average at start "
        f"{load_start}, at end {load_average()}."
    )
    added_line = (
        f"Serve's added latency over plain FastAPI at {RATE:.0f} req/s offered: p50 "
        f"{_delta(added['p50'])}, p95 {_delta(added['p95'])}, p99 {_delta(added['p99'])}."
    )
    if steps["a"] and steps["b"]:  # one connection: no queueing in either
        a1, b1 = steps["a"][0], steps["b"][0]
        added_line += (
            f" With {a1.connections} connection (closed loop, nothing queued): p50 "
            f"{_delta(a1.p50 - b1.p50)} ({fmt_s(a1.p50)} vs {fmt_s(b1.p50)})."
        )
    body = "\n\n".join(
        [
            method,
            main_table,
            added_line,
            _floor_line(fixed, steps, b, cores or 1),
            "**Closed-loop steps** (1 symbol per request; wrk CPU in cores):",
            step_table,
            "**Closed-loop steps of Ray Serve's floor (d)** (the no-op apps; same request):",
            floor_table,
        ]
    )
    return Section(NAME, TITLE, body, verdicts)


def _floor_line(
    fixed: dict[str, Load], steps: dict[str, list[Load]], plain: Load, cores: int
) -> str:
    """What the no-op apps (d) say about the targets: Serve's own cost against the whole of (b)."""
    hop, ingress = fixed["d1"], fixed["d0"]
    hop_ms, ingress_ms, plain_ms = (x.cpu_ms_per_request for x in (hop, ingress, plain))
    line = (
        f"**Ray Serve's floor (d).** With nothing inside, the service's topology (proxy → "
        f"ingress → model) costs {hop_ms:.2f} ms of server CPU per request "
        f"(the ingress alone {ingress_ms:.2f} ms), against {plain_ms:.2f} ms for the "
        f"whole plain FastAPI service (b) with Feast, auth and the ensemble; at {RATE:.0f} req/s "
        f"that floor alone needs {hop_ms * RATE / 1000:.2f} of the {cores} cores, before "
        "any of raytrader's work and wrk's. At the fixed rate it answers "
        f"{hop.rps:.1f} req/s with p50 {fmt_s(hop.p50)} and p99 {fmt_s(hop.p99)} "
        f"(ingress alone: {ingress.rps:.1f} req/s, p50 {fmt_s(ingress.p50)}, p99 "
        f"{fmt_s(ingress.p99)})."
    )
    if steps.get("d1") and steps.get("b"):
        h1, b1 = steps["d1"][0], steps["b"][0]
        line += (
            f" With 1 connection the no-op hop's p50 is {fmt_s(h1.p50)}, "
            f"{_delta(h1.p50 - b1.p50)} over the whole plain service's {fmt_s(b1.p50)}."
        )
    return line


def _wrk_version() -> str:
    try:
        out = subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].split(" Copyright")[0] if first else "unknown version"
