"""``raytrader api up|down|status|token``: the experiment API as a local uvicorn process.

State lives in ``~/.local/share/raytrader/api/`` (``RAYTRADER_API_STATE_DIR`` overrides it): the
read and admin tokens (``token``, ``admin-token``; mode 0600, generated on the first ``up``), the
server's ``api.pid``, ``api.json`` (its URL and redacted database URL) and ``api.log``.

``up`` migrates the store first (the API's pre-start: ``raytrader db upgrade``), then starts
``uvicorn raytrader.api.app:app_from_env --factory`` in a session of its own, with the token
*file paths* and the database URL in its environment, and waits for ``/healthz``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from raytrader import settings
from raytrader.errors import ConfigError
from raytrader.localproc import LocalServer, answers, status_line
from raytrader.settings import EXPERIMENT_ADMIN_TOKEN_ENV as ADMIN_TOKEN_ENV
from raytrader.settings import EXPERIMENT_TOKEN_ENV as READ_TOKEN_ENV

STATE_DIR_ENV = "RAYTRADER_API_STATE_DIR"
TOKEN_FILE = "token"  # noqa: S105 - a file name
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
NAME = "api"  # api.pid, api.json, api.log
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0

api_app = typer.Typer(
    help="The experiment API (read-only REST over the experiment store).", no_args_is_help=True
)


def _console() -> Any:
    from rich.console import Console

    return Console()


def state_dir() -> Path:
    """``RAYTRADER_API_STATE_DIR``, else ``~/.local/share/raytrader/api``."""
    value = os.environ.get(STATE_DIR_ENV)
    if value:
        return Path(os.path.abspath(Path(value).expanduser()))
    return Path.home() / ".local" / "share" / "raytrader" / "api"


def ensure_token(path: Path) -> str:
    """The token in ``path``, written (0600, ``secrets.token_urlsafe(32)``) if missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def server() -> LocalServer:
    """The API's process in :func:`state_dir` (``api.pid``, ``api.json``, ``api.log``)."""
    return LocalServer(state_dir(), NAME, label="the experiment API", stop_grace_s=STOP_GRACE_S)


def _healthz(url: str, timeout: float = 2.0) -> bool:
    return answers(f"{url}/healthz", timeout=timeout)


def api_up(
    host: str, port: int, db_url: str | None, timeout_s: float = START_TIMEOUT_S
) -> dict[str, Any]:
    """Migrate the store, start the server (unless running) and wait for ``/healthz``."""
    from raytrader.db import engine as db_engine

    srv = server()
    root = srv.state_dir
    url = f"http://{host}:{port}"
    pid = srv.pid()
    if pid is not None:
        return {**srv.info(), "pid": pid, "already_running": True}
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_token(root / TOKEN_FILE)
    ensure_token(root / ADMIN_TOKEN_FILE)
    resolved = settings.db_url(db_url)
    engine = db_engine.make_engine(resolved)
    try:
        before, after = db_engine.upgrade(engine)
    finally:
        engine.dispose()
    env = dict(os.environ)
    for name in (READ_TOKEN_ENV, ADMIN_TOKEN_ENV):
        env.pop(name, None)  # the files below are the tokens
    env.update({
        f"{READ_TOKEN_ENV}_FILE": str(root / TOKEN_FILE),
        f"{ADMIN_TOKEN_ENV}_FILE": str(root / ADMIN_TOKEN_FILE),
        settings.DB_URL_ENV: resolved,
    })  # fmt: skip
    cmd = [
        sys.executable, "-m", "uvicorn", "raytrader.api.app:app_from_env", "--factory",
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    info = srv.start(
        cmd, env, f"{url}/healthz", timeout_s,
        info={"url": url, "db_url": db_engine.redacted(resolved)},
    )  # fmt: skip
    return {**info, "already_running": False, "migrated": [before, after]}


def api_down() -> bool:
    """Stop the server; ``False`` when it was not running."""
    return server().stop()


def api_status() -> dict[str, Any]:
    return server().status(_healthz, ("db_url",))


def read_token(admin: bool = False) -> str:
    """The token ``up`` generated (a :class:`ConfigError` before it ever ran)."""
    path = state_dir() / (ADMIN_TOKEN_FILE if admin else TOKEN_FILE)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"no token in {path}: run `raytrader api up` first") from None
    if not token:
        raise ConfigError(f"{path} is empty: delete it and run `raytrader api up`")
    return token


# ------------------------------------------------------------------------------------- commands
@api_app.command("up")
def up_cmd(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    db_url: Annotated[
        str | None, typer.Option("--db-url", help="the store (default: RAYTRADER_DB_URL)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Migrate the experiment store and start the API (idempotent)."""
    info = api_up(host, port, db_url)
    if as_json:
        typer.echo(json.dumps(info))
        return
    con = _console()
    if info["already_running"]:
        con.print(f"experiment API already running at {info.get('url')} (pid {info['pid']})")
        return
    before, after = info["migrated"]
    con.print(f"store {info['db_url']}: schema {before or 'none'} -> {after}")
    con.print(f"experiment API: {info['url']}  (docs {info['url']}/docs, pid {info['pid']})")
    con.print("token: `raytrader api token` (admin: `raytrader api token --admin`)")


@api_app.command("down")
def down_cmd() -> None:
    """Stop the API started by `up` (no-op when it is not running)."""
    stopped = api_down()
    typer.echo("experiment API stopped" if stopped else "experiment API is not running")


@api_app.command("status")
def status_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether the API runs, where, and on which store (exit 1 when not running and healthy)."""
    info = api_status()
    if as_json:
        typer.echo(json.dumps(info))
    else:
        _console().print(status_line(info, "experiment API", "/healthz", f"store {info['db_url']}"))
    if not (info["running"] and info["healthy"]):
        raise typer.Exit(1)


@api_app.command("token")
def token_cmd(
    admin: Annotated[bool, typer.Option("--admin", help="the admin token")] = False,
) -> None:
    """Print the API's read (or admin) token."""
    typer.echo(read_token(admin))
