"""``raytrader serve up|down|status|config`` and ``raytrader decide``.

Where the service runs: the local stack's Ray head when the stack is up (MLflow server, Feast on
Redis); else the Ray head at ``--address`` (a dashboard URL); else a Ray head of its own started
from the stack's Ray service alone (``raytrader stack down`` stops it), with the embedded MLflow
store and the SQLite Feast store under ``--root``. Deploying is ``serve deploy`` of the rendered
``serveConfigV2`` (``raytrader serve config`` prints it): the file with the stack's addresses
filled into the app's ``args`` and the token *file paths* (never the tokens) into its
``runtime_env``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from raytrader import settings
from raytrader.errors import ConfigError, RaytraderError
from raytrader.serving.config import ADMIN_TOKEN_ENV, TOKEN_ENV, ServiceConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "pipelines" / "serve" / "serve_config.yaml"
APP_NAME = "raytrader"

serve_app = typer.Typer(help="The decision service on Ray Serve.", no_args_is_help=True)


def _console() -> Any:
    from rich.console import Console

    return Console()


def _stack(start_ray: bool) -> tuple[Any, bool]:
    """The stack config whose Ray head serves, and whether every stack service is up (then the
    service uses the stack's MLflow and Redis). Without a Ray head: ``start_ray`` starts the
    stack's Ray service alone, else an error."""
    from raytrader.stack.manager import Stack, running_config

    cfg, healthy = running_config()
    if healthy.get("ray"):
        return cfg, all(healthy.values())
    if not start_ray:
        raise ConfigError("no Ray head to talk to: `raytrader stack up` or pass --address")
    Stack(cfg).up(["ray"])
    return cfg, False


def render(
    config_file: Path,
    *,
    stack: Any | None,
    full: bool,
    root: Path,
    port: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The serveConfigV2 to deploy: ``config_file`` with addresses, token files and overrides;
    ``full``: every service of ``stack`` is up (its MLflow and Redis, else the embedded stores)."""
    try:
        doc = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_file}: {exc}") from exc
    apps = doc.get("applications") if isinstance(doc, dict) else None
    if not apps or not isinstance(apps, list):
        raise ConfigError(f"{config_file}: no `applications` list")
    app = next((a for a in apps if a.get("name") == APP_NAME), None)
    if app is None:
        raise ConfigError(f"{config_file}: no application named {APP_NAME!r}")
    args = dict(app.get("args") or {})
    env: dict[str, str] = {}
    if stack is not None and full:
        args.setdefault("tracking_uri", stack.mlflow_uri)
        args.setdefault("redis", stack.redis_connection)
        args.setdefault("feast_data", str(stack.feast_data))
        args["feast_profile"] = args.get("feast_profile", "redis")
    else:  # embedded: the SQLite MLflow store and SQLite Feast store under root
        from raytrader.tracking import resolve_uri

        args.setdefault("tracking_uri", resolve_uri(None, root))
        args.setdefault("feast_data", str((root / "feast").resolve()))
        args["feast_profile"] = "sqlite"
    args.update(overrides or {})
    if stack is not None:
        env = {
            f"{TOKEN_ENV}_FILE": str(stack.serve_token_file),
            f"{ADMIN_TOKEN_ENV}_FILE": str(stack.serve_admin_token_file),
        }
        doc.setdefault("http_options", {})["port"] = stack.serve_port
    for key in (TOKEN_ENV, ADMIN_TOKEN_ENV):  # a caller's own token files travel as paths
        if os.environ.get(f"{key}_FILE") and not env.get(f"{key}_FILE"):
            env[f"{key}_FILE"] = os.environ[f"{key}_FILE"]
    if port is not None:
        doc.setdefault("http_options", {})["port"] = port
    ServiceConfig.parse(args, where=f"{config_file} args")  # fail here, not in a replica
    app["args"] = args
    if env:
        runtime = dict(app.get("runtime_env") or {})
        runtime["env_vars"] = {**runtime.get("env_vars", {}), **env}
        app["runtime_env"] = runtime
    return dict(doc)


def _serve_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("serve")
    return subprocess.run(  # noqa: S603 - our own venv's serve CLI, arguments we built
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _http(
    url: str, token: str | None = None, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310 - http(s) URL we were given
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - as above
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _env_for(stack: Any | None) -> dict[str, str]:
    env = dict(os.environ)
    if stack is not None:
        env.update({k: v for k, v in stack.client_env().items() if k.startswith("RAY_")})
    return env


def _dashboard(stack: Any | None, address: str | None) -> str:
    if address:
        return address
    if stack is None:
        raise ConfigError("no Ray dashboard address")
    return str(stack.ray_dashboard_url)


def wait_ready(url: str, timeout_s: float) -> tuple[int, Any]:
    """Poll ``/readyz`` until 200 or ``timeout_s``; returns the last answer."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, Any] = (0, "no answer")
    while time.monotonic() < deadline:
        try:
            last = _http(f"{url}/readyz", timeout=5)
        except OSError as exc:
            last = (0, str(exc))
        if last[0] == 200:
            return last
        time.sleep(1.0)
    return last


def serve_up(
    config_file: Path = DEFAULT_CONFIG,
    *,
    address: str | None = None,
    port: int | None = None,
    overrides: dict[str, Any] | None = None,
    root: Path = Path("runs"),
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """Deploy the service and wait until it is ready; returns its URLs and readiness."""
    stack, full = (None, False) if address else _stack(start_ray=True)
    doc = render(config_file, stack=stack, full=full, root=root, port=port, overrides=overrides)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", prefix="raytrader-serve-", delete=False
    ) as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
        rendered = fh.name
    try:
        proc = _serve_cli(
            ["deploy", rendered, "--address", _dashboard(stack, address)], _env_for(stack)
        )
    finally:
        os.unlink(rendered)
    if proc.returncode != 0:
        raise RaytraderError(f"serve deploy failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    http = doc.get("http_options", {})
    url = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    status, body = wait_ready(url, timeout_s)
    return {
        "url": url,
        "docs": f"{url}/docs",
        "ready": status == 200,
        "readyz": body,
        "dashboard": _dashboard(stack, address),
    }


def _maybe_stack() -> Any | None:
    from raytrader.stack.config import StackConfig

    try:
        return StackConfig.from_env()
    except RaytraderError:
        return None


# ------------------------------------------------------------------------------------- commands
ConfigOpt = Annotated[Path, typer.Option("--config", help="serveConfigV2 file")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray dashboard URL (default: the stack's)")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override an app arg: key=value (YAML value)")
]


def _overrides(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


@serve_app.command("up")
def up_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    address: AddressOpt = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: the file's / stack's)")
    ] = None,
    set_: SetOpt = None,
    root: Annotated[
        Path, typer.Option(help="embedded MLflow/Feast folder without the stack")
    ] = Path("runs"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for /readyz")] = 180.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deploy the decision service (serve deploy) and wait until it is ready."""
    info = serve_up(
        config, address=address, port=port, overrides=_overrides(set_), root=root, timeout_s=timeout
    )
    if as_json:
        typer.echo(json.dumps(info))
    else:
        con = _console()
        con.print(f"decision service: {info['url']}  (docs {info['docs']})")
        con.print(f"ready: {info['ready']}  {info['readyz']}")
        con.print(f"Ray dashboard: {info['dashboard']}")
    if not info["ready"]:
        raise typer.Exit(1)


@serve_app.command("down")
def down_cmd(address: AddressOpt = None) -> None:
    """Shut the decision service down (serve shutdown)."""
    stack = None if address else _stack(start_ray=False)[0]
    proc = _serve_cli(["shutdown", "-y", "--address", _dashboard(stack, address)], _env_for(stack))
    if proc.returncode != 0:
        raise RaytraderError(
            f"serve shutdown failed: {(proc.stderr or proc.stdout).strip()[-1500:]}"
        )
    typer.echo("decision service shut down")


@serve_app.command("status")
def status_cmd(
    address: AddressOpt = None,
    url: Annotated[str | None, typer.Option(help="service URL")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Serve's application status, /readyz and the model version serving."""
    stack = None if address else _stack(start_ray=False)[0]
    proc = _serve_cli(["status", "--address", _dashboard(stack, address)], _env_for(stack))
    serve = (
        yaml.safe_load(proc.stdout)
        if proc.returncode == 0
        else {"error": proc.stderr.strip()[-500:]}
    )
    base = settings.serve_url(url)
    try:
        ready = _http(f"{base}/readyz")
        model = _http(f"{base}/v1/model", token=settings.client_token())
    except OSError as exc:
        ready = model = (0, str(exc))
    info = {
        "url": base,
        "serve": serve,
        "readyz": ready[1],
        "ready": ready[0] == 200,
        "model": model[1],
    }
    if as_json:
        typer.echo(json.dumps(info, default=str))
    else:
        con = _console()
        app = (serve.get("applications") or {}).get(APP_NAME, {}) if isinstance(serve, dict) else {}
        con.print(f"{base}: application {app.get('status', 'not deployed')}, ready {info['ready']}")
        con.print(f"model: {json.dumps(model[1], default=str)}")
    if not info["ready"]:
        raise typer.Exit(1)


@serve_app.command("config")
def config_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    port: Annotated[int | None, typer.Option()] = None,
    set_: SetOpt = None,
    root: Annotated[Path, typer.Option()] = Path("runs"),
) -> None:
    """Print the serveConfigV2 `serve up` would deploy (for `serve deploy` by hand)."""
    stack = _maybe_stack()
    full = False
    if stack is not None:
        from raytrader.stack.manager import running_config

        healthy = running_config(stack)[1]
        full = bool(healthy) and all(healthy.values())
    doc = render(config, stack=stack, full=full, root=root, port=port, overrides=_overrides(set_))
    typer.echo(yaml.safe_dump(doc, sort_keys=False))


def decide(
    symbols: list[str],
    *,
    position: float = 0.0,
    url: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    body = {"symbols": [{"symbol": s, "position": position} for s in symbols]}
    return _http(
        f"{settings.serve_url(url)}/v1/decisions",
        token=token or settings.client_token(),
        body=body,
        timeout=timeout,
    )


def decide_cmd(
    symbols: Annotated[list[str], typer.Argument(help="symbols, e.g. GOOG")],
    position: Annotated[float, typer.Option(help="current position of each, -1..1")] = 0.0,
    url: Annotated[str | None, typer.Option(help="service URL")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask the decision service (with the API token) for a decision per symbol."""
    try:
        status, body = decide(symbols, position=position, url=url)
    except OSError as exc:
        raise RaytraderError(f"decision service unreachable: {exc}") from exc
    if status != 200:
        detail = body.get("detail") if isinstance(body, dict) else body
        typer.echo(f"error: HTTP {status}: {detail}", err=True)
        raise typer.Exit(2 if 400 <= status < 500 else 1)
    if as_json:
        typer.echo(json.dumps(body))
        return
    print_decisions(body)


@serve_app.command("load")
def load_cmd(
    rate: Annotated[float, typer.Option(help="requests per second, sent open loop")] = 20.0,
    seconds: Annotated[float, typer.Option(help="how long to send")] = 30.0,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="symbol per request (repeatable)")
    ] = None,
    url: Annotated[str | None, typer.Option(help="service URL")] = None,
    timeout: Annotated[
        float, typer.Option(help="seconds before a request counts as failed")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="the summary with its timeline")] = False,
) -> None:
    """Steady decision requests at a fixed rate (open loop), then what happened: failures and
    recovery, latency percentiles, the model versions seen; for drills (kill a pod, move an alias,
    upgrade) and capacity checks. Exit 1 when a request failed."""
    from raytrader.serving.load import run_load, summarize

    outcomes = run_load(
        settings.serve_url(url), settings.client_token(), rate=rate, seconds=seconds,
        symbols=symbol or ["GOOG"], timeout_s=timeout,
    )  # fmt: skip
    summary = summarize(outcomes, rate=rate, seconds=seconds)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        p50, p99 = summary["latency_p50_s"], summary["latency_p99_s"]
        typer.echo(
            f"{summary['sent']} sent, {summary['ok']} answered 200, {summary['failed']} failed "
            f"{summary['failures_by_status']}; {summary['answered_per_s']:.1f}/s; latency p50 "
            f"{_ms(p50)} p99 {_ms(p99)}; versions {sorted(summary['versions'])}"
        )
        if summary["failed"]:
            typer.echo(
                f"failures from {summary['failed_from_s']:.1f} s to {summary['failed_until_s']:.1f} s,"
                f" {_recovery(summary['recovery_s'])}: {summary['first_errors']}"
            )
    if summary["failed"]:
        raise typer.Exit(1)


def _recovery(seconds: float | None) -> str:
    return "not recovered by the end" if seconds is None else f"recovered after {seconds:.1f} s"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _age(seconds: float) -> str:
    """``42s``, ``17m``, ``5h``, ``5028d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def print_decisions(body: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"model {body['model']['name']} v{body['model']['version']}")
    for col in ("symbol", "action", "target", "confidence", "members", "features at", "age"):
        table.add_column(col)

    def signed(value: float | None, digits: int) -> str:
        return "none" if value is None else f"{value:+.{digits}f}"  # none: no decision

    for d in body["decisions"]:
        members = ", ".join(f"{m['name']} {signed(m['target'], 2)}" for m in d["members"])
        table.add_row(
            d["symbol"],
            d["action"],
            signed(d["target"], 3),
            f"{d['confidence']:.2f}",
            members,
            str(d["feature_time"]),
            _age(d["feature_age_s"])
            + (" STALE" if d["stale"] else "")
            + ("" if d["warm"] else " COLD"),
        )
    con = _console()
    con.print(table)
    for d in body["decisions"]:
        why = d.get("explanation")
        if why is None:
            continue
        weights = ", ".join(
            f"{name} {m['weight']:.2f} ({m['status']})" for name, m in why["members"].items()
        )
        temperature = "inf" if why["temperature"] is None else f"{why['temperature']:g}"
        con.print(
            f"{d['symbol']}: regime {why['regime']} ({why['regime_rule']}); preset "
            f"{why['preset']}, temperature {temperature}"
            + (", FALLBACK to equal weight" if why["fallback"] else "")
            + f"; weights {weights}; binding: {', '.join(why['binding']) or 'none'}; "
            f"predictor {why['predictor_version']}"
        )
