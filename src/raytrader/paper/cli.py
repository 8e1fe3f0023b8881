"""``raytrader paper run|status|stop|report|delete``: paper-trading sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

paper_app = typer.Typer(
    help="Paper trading: bars from Kafka, decisions, the backtest's kernel, a ledger in the "
    "experiment store.",
    no_args_is_help=True,
)

SessionOpt = Annotated[str, typer.Option("--session", "-s", help="the session's name")]
DbUrlOpt = Annotated[
    str | None, typer.Option("--db-url", help="the experiment store (default RAYTRADER_DB_URL)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]

#: exit status of `paper run` for a session that halted (the kill switch, a bust account)
HALTED_EXIT = 3


@paper_app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="the session's YAML or JSON")],
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default: the stack's)")
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(help="return after this many seconds without a new bar (a replay's end)"),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port")
    ] = None,
    db_url: DbUrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run (or resume) a session until it is stopped, halts, reaches its end, or idles out."""
    from raytrader import settings
    from raytrader.config import load_config
    from raytrader.paper.config import PaperConfig
    from raytrader.paper.ledger import open_ledger
    from raytrader.paper.metrics import PaperMetrics, serve
    from raytrader.paper.trader import PaperTrader

    cfg = load_config(config, PaperConfig)
    kafka = settings.kafka(bootstrap)
    ledger = open_ledger(db_url)
    metrics = PaperMetrics()
    if metrics_port is not None:
        serve(metrics, metrics_port)
    trader = PaperTrader(
        cfg, ledger, bootstrap=kafka.servers, security=kafka.security_config(), metrics=metrics
    )
    try:
        status = trader.run(idle_exit_s=idle_exit)
    finally:
        trader.close()
    resume = trader.resume
    out = {
        "session": cfg.session,
        "status": status,
        "reason": resume.reason,
        "steps": resume.steps,
        "equity": resume.last_equity,
        "last_bar_time": None
        if resume.last_step_time is None
        else resume.last_step_time.isoformat(),
    }
    if json_out:
        typer.echo(json.dumps(out))
    else:
        from raytrader.console import console

        console().print(
            f"paper session {cfg.session}: {status} after {resume.steps} steps, equity "
            f"{out['equity']}" + (f" ({resume.reason})" if resume.reason else "")
        )
    if status == "halted":
        raise typer.Exit(HALTED_EXIT)


@paper_app.command("status")
def status_cmd(
    session: Annotated[str | None, typer.Option("--session", "-s", help="one session")] = None,
    db_url: DbUrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every session (or one): status, steps, equity, last bar, reason."""
    from sqlalchemy import select

    from raytrader.console import print_table
    from raytrader.db.models import PaperSession
    from raytrader.errors import ConfigError
    from raytrader.paper.ledger import open_ledger

    ledger = open_ledger(db_url)
    with ledger.store.session() as s:
        q = select(PaperSession).order_by(PaperSession.created_at, PaperSession.id)
        if session is not None:
            q = q.where(PaperSession.name == session)
        rows = [_session_row(r) for r in s.scalars(q)]
    if session is not None and not rows:
        raise ConfigError(f"no paper session named {session!r}")
    if json_out:
        typer.echo(json.dumps(rows))
        return
    import pandas as pd

    print_table("paper sessions", pd.DataFrame(rows, columns=list(_SESSION_COLUMNS)))


_SESSION_COLUMNS = ("session", "status", "steps", "equity", "last_bar_time", "reason")


def _session_row(r: Any) -> dict[str, Any]:
    last = r.last_bar_time
    return {
        "session": r.name,
        "status": r.status,
        "steps": r.steps,
        "equity": r.equity,
        "last_bar_time": None if last is None else last.isoformat(),
        "reason": r.reason,
    }


@paper_app.command("stop")
def stop_cmd(session: SessionOpt, db_url: DbUrlOpt = None) -> None:
    """Ask a running trader to stop after its current bar (`paper run` resumes it)."""
    from sqlalchemy import select

    from raytrader.db.models import PaperSession
    from raytrader.errors import ConfigError
    from raytrader.paper.ledger import open_ledger

    ledger = open_ledger(db_url)
    with ledger.store.session() as s:
        row = s.scalars(select(PaperSession).where(PaperSession.name == session)).one_or_none()
        if row is None:
            raise ConfigError(f"no paper session named {session!r}")
        if row.status in ("halted", "finished"):
            typer.echo(f"paper session {session} is already {row.status}")
            return
        row.status, row.reason = "stopped", "stopped by `raytrader paper stop`"
    typer.echo(f"paper session {session}: asked to stop")


@paper_app.command("report")
def report_cmd(
    session: SessionOpt,
    out: Annotated[
        Path | None, typer.Option(help="write the report files (PNG, CSV, JSON) into this folder")
    ] = None,
    db_url: DbUrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The session's metrics (a backtest's), its symbols, decisions, latency and lag, and whether
    the backtest of its own decisions on its own bars gives its equity, bit for bit."""
    from raytrader.console import print_metrics, print_table
    from raytrader.paper.ledger import open_ledger
    from raytrader.paper.report import session_report

    report = session_report(open_ledger(db_url), session)
    if out is not None and report.result is not None:
        from raytrader.backtest.report import write_report

        write_report(report.result, out)
    summary = report.summary()
    if json_out:
        typer.echo(json.dumps(summary, default=str))
        return
    flat = {k: v for k, v in summary.items() if k != "symbols"}
    print_metrics(f"paper session {session}", flat)
    if report.result is not None:
        print_table(f"paper session {session}: each symbol", report.result.per_symbol)


@paper_app.command("delete")
def delete_cmd(session: SessionOpt, db_url: DbUrlOpt = None) -> None:
    """Delete a session and its whole ledger."""
    from raytrader.errors import ConfigError
    from raytrader.paper.ledger import open_ledger

    if not open_ledger(db_url).delete(session):
        raise ConfigError(f"no paper session named {session!r}")
    typer.echo(f"paper session {session}: deleted")
