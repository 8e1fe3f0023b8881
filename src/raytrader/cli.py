"""The ``raytrader`` command line (Typer + Rich).

Bad input (unknown dataset/strategy/parameter, invalid value, bad file) prints one line on stderr and
exits with code 2; ``--debug`` shows the traceback instead. Heavy libraries are imported inside the
commands, so commands that don't need Ray never start it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from raytrader.console import (
    annualization,
    console,
    fmt,
    print_metrics,
    print_run,
    print_table,
)

if TYPE_CHECKING:
    from raytrader.data.bars import Bars
    from raytrader.sim.config import SimConfig

app = typer.Typer(
    name="raytrader",
    help="Train, tune, backtest and serve ensembles of trading strategies on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Market data: bundled sets, files, resampling.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_STATE = {"debug": False}

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="dataset name (goog, eurusd, sp500, synthetic[:k=v,...]) or a .csv/.parquet path",
    ),
]
SymbolOpt = Annotated[
    str | None, typer.Option(help="symbol for a file source (default: file name)")
]
TimeframeOpt = Annotated[
    str | None, typer.Option(help="timeframe of a file source, e.g. 1m, 1h, 1d")
]
CalendarOpt = Annotated[
    str,
    typer.Option(
        help="market calendar that annualizes metrics: auto (a data set's own, inferred for a "
        "file: weekends → crypto, Sunday opens → fx, weekdays → equity) | equity | fx | crypto"
    ),
]
StartOpt = Annotated[
    str | None, typer.Option(help="first bar to use, ISO-8601 (inclusive; naive = UTC)")
]
EndOpt = Annotated[
    str | None, typer.Option(help="use bars before this time, ISO-8601 (exclusive; naive = UTC)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")]
RecordOpt = Annotated[
    bool,
    typer.Option(
        "--record/--no-record",
        help="write the result to the experiment store (RAYTRADER_DB_URL; `raytrader db`)",
    ),
]


def _load(
    data: str,
    symbol: str | None = None,
    timeframe: str | None = None,
    calendar: str = "auto",
    start: str | None = None,
    end: str | None = None,
) -> Bars:
    from raytrader.data.sources import load_bars

    return load_bars(
        data, symbol=symbol, timeframe=timeframe, calendar=calendar, start=start, end=end
    )


def _annualization(bars: Bars) -> dict[str, Any]:
    """The calendar and bars per year that annualize ``bars``' metrics (in every JSON output)."""
    return {"calendar": bars.calendar.value, "periods_per_year": bars.periods_per_year}


def _version(value: bool) -> None:
    if value:
        from raytrader import __version__

        typer.echo(f"raytrader {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    _STATE["debug"] = debug
    from raytrader.logs import configure_from_env

    configure_from_env()  # RAYTRADER_LOG_LEVEL / RAYTRADER_LOG_FORMAT, where a deployment sets them


# ---------------------------------------------------------------------------------------------- data
@data_app.command("list")
def data_list(json_out: JsonOpt = False) -> None:
    """List the bundled datasets and the synthetic generator."""
    from raytrader.data.bundled import BUNDLED

    rows: list[dict[str, Any]] = []
    for d in BUNDLED.values():
        bars = d.load()
        rows.append(
            {
                "name": d.name,
                "symbol": d.symbol,
                "timeframe": d.timeframe,
                "calendar": d.calendar.value,
                "bars": len(bars),
                "start": bars.index[0].isoformat(),
                "end": bars.index[-1].isoformat(),
                "description": d.description,
            }
        )
    rows.append(
        {
            "name": "synthetic",
            "symbol": "SYN",
            "timeframe": "any",
            "calendar": "crypto",
            "bars": None,
            "start": None,
            "end": None,
            "description": "seeded regime-switching GBM: synthetic:n_bars=100000,timeframe=1m,seed=7",
        }
    )
    if json_out:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    t = Table(title="datasets")
    for c in ("name", "symbol", "timeframe", "calendar", "bars", "start", "end", "description"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            *(
                str(r[c]) if r[c] is not None else "-"
                for c in (
                    "name",
                    "symbol",
                    "timeframe",
                    "calendar",
                    "bars",
                    "start",
                    "end",
                    "description",
                )
            )
        )
    console().print(t)


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="dataset name or file path")],
    rows: Annotated[int, typer.Option(help="rows to show from each end")] = 5,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a dataset's summary and first/last bars."""
    bars = _load(name, symbol, timeframe, calendar, start, end)
    info = {
        "symbol": bars.symbol,
        "timeframe": bars.timeframe.name,
        **_annualization(bars),
        "bars": len(bars),
        "start": bars.index[0].isoformat(),
        "end": bars.index[-1].isoformat(),
        "source": bars.source,
    }
    if json_out:
        info["head"] = json.loads(bars.frame.head(rows).to_json(orient="index", date_format="iso"))
        typer.echo(json.dumps(info))
        return
    con = console()
    con.print(info)
    con.print(bars.frame.head(rows).to_string())
    con.print("...")
    con.print(bars.frame.tail(rows).to_string())


@data_app.command("resample")
def data_resample(
    data: DataOpt,
    to: Annotated[str, typer.Option("--to", help="target timeframe, e.g. 5m, 1h, 1d")],
    out: Annotated[Path | None, typer.Option(help="write .csv or .parquet here")] = None,
    include_partial: Annotated[bool, typer.Option(help="keep an incomplete last bucket")] = False,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
) -> None:
    """Resample bars to a coarser timeframe (buckets labelled by open time, left-closed)."""
    from raytrader.data.resample import resample

    bars = _load(data, symbol, timeframe, calendar, start, end)
    res = resample(bars, to, include_partial=include_partial)
    if out is None:
        console().print(res.frame.tail(10).to_string())
        typer.echo(f"{len(bars)} {bars.timeframe} bars -> {len(res)} {res.timeframe} bars")
        return
    from raytrader.errors import ConfigError

    suffix = out.suffix.lower()
    if suffix == ".csv":
        from raytrader.data.files import write_bars_csv

        write_bars_csv(res, out)
    elif suffix in (".parquet", ".pq"):
        tmp = out.with_name(out.name + ".tmp")
        res.frame.to_parquet(tmp)
        tmp.replace(out)
    else:
        raise ConfigError(f"--out {out}: use a .csv or .parquet file name")
    typer.echo(f"wrote {len(res)} {res.timeframe} bars to {out}")


# ------------------------------------------------------------------------------------------ features
features_app = typer.Typer(
    help="Feature sets: compute and show them (no subcommand), or backfill Feast.",
    invoke_without_command=True,
)
app.add_typer(features_app, name="features")


@features_app.callback()
def features_cmd(
    ctx: typer.Context,
    data: DataOpt = "goog",
    feature_set: Annotated[str, typer.Option("--set", help="feature set name")] = "bar_features_v1",
    rows: Annotated[int, typer.Option(help="last rows to show")] = 1,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compute a feature set over a dataset and show the latest rows."""
    if ctx.invoked_subcommand is not None:
        return
    from raytrader.features import get_feature_set
    from raytrader.features.engine import compute_features

    fs = get_feature_set(feature_set)
    bars = _load(data, symbol, timeframe, calendar, start, end)
    feats = compute_features(bars, fs)
    tail = feats.tail(rows)
    if json_out:
        payload = {
            "feature_set": fs.name,
            "symbol": bars.symbol,
            "timeframe": bars.timeframe.name,
            **_annualization(bars),
            "features": len(fs.features),
            "warmup": fs.warmup,
            "bars": len(bars),
            "rows": [
                {
                    "timestamp": ts.isoformat(),
                    **{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()},
                }
                for ts, row in zip(tail.index, tail.to_dict(orient="records"), strict=True)
            ],
        }
        typer.echo(json.dumps(payload))
        return
    from rich.table import Table

    t = Table(
        title=f"{fs.name} on {bars.symbol} {bars.timeframe} "
        f"({len(fs.features)} features, warm-up {fs.warmup} bars)"
    )
    t.add_column("feature")
    t.add_column("warm-up", justify="right")
    for ts in tail.index:
        t.add_column(ts.isoformat(), justify="right")
    for name in fs.names:
        t.add_row(name, str(fs.warmups[name]), *(f"{v:.6g}" for v in tail[name].to_numpy()))
    console().print(t)


@features_app.command("backfill")
def features_backfill_cmd(
    data: DataOpt = "goog",
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    profile: Annotated[
        str, typer.Option(help="Feast online store: redis (the stack's or --redis) | sqlite")
    ] = "redis",
    redis: Annotated[
        str | None,
        typer.Option(
            help="Redis for the online store (default: $RAYTRADER_REDIS_CONNECTION or "
            "the local stack's)"
        ),
    ] = None,
    feast_data: Annotated[
        Path | None,
        typer.Option(help="Feast data dir (default: $RAYTRADER_FEAST_DATA or the local stack's)"),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write bar_features_v1 rows of the bars to Feast: every bar offline (keyed by symbol,
    timeframe and bar close), the newest online; then read the online row back."""
    from raytrader import settings, wiring
    from raytrader.errors import ConfigError
    from raytrader.features.backfill import backfill

    if profile not in ("redis", "sqlite"):
        raise ConfigError(f"--profile must be redis or sqlite, got {profile!r}")
    bars = _load(data, symbol, timeframe, calendar, start, end)
    data_dir = settings.feast_data(feast_data)  # else the local stack's, else ~/.cache/...
    fs = wiring.feature_store(profile, data=data_dir, redis=redis)
    try:
        result = backfill(fs, bars)
    except Exception as exc:  # Redis down, a bad data dir: one line, not a traceback
        from raytrader.errors import RaytraderError

        if isinstance(exc, RaytraderError):
            raise
        raise ConfigError(
            f"cannot write to Feast ({profile} online store, data dir {data_dir}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    summary = {**result.summary(), "store": profile, "data_dir": str(data_dir)}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    typer.echo(
        f"backfilled {result.rows} {result.timeframe} rows of {result.symbol} "
        f"({result.warm_rows} warm; {summary['first_bar']} … {summary['last_bar']}) into "
        f"{data_dir}; online row: bar {summary['online_bar']}, warm {summary['online_warm']}"
    )


# ------------------------------------------------------------------------------------------ backtest
def _parse_params(items: list[str]) -> dict[str, str]:
    from raytrader.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: use name=value")
        out[key.strip()] = value.strip()
    return out


def _margin(
    margin: str,
    initial: float | None,
    maintenance: str | None,
    borrow: float | None,
    financing: float | None,
) -> dict[str, Any] | None:
    """The ``margin`` field of a SimConfig from the margin flags (None: the frictionless account);
    flags left out keep MarginConfig's defaults."""
    from raytrader.errors import ConfigError

    if margin not in ("on", "off"):
        raise ConfigError(f"--margin must be on or off, got {margin!r}")
    given = (initial, maintenance, borrow, financing)
    if margin == "off":
        if any(v is not None for v in given):
            raise ConfigError("--margin off takes no margin rates or levels")
        return None
    out: dict[str, Any] = {}
    if initial is not None:
        out["initial_margin"] = initial
    if maintenance is not None:
        long_, _, short = maintenance.partition(",")
        out["maintenance_margin_long"] = long_.strip()
        out["maintenance_margin_short"] = (short or long_).strip()
    if borrow is not None:
        out["borrow_rate"] = borrow
    if financing is not None:
        out["financing_rate"] = financing
    return out


def _sim_config(
    commission: float,
    slippage_bps: float,
    cash: float,
    units: str,
    fill: str,
    sizing: str,
    stop_loss: float | None,
    take_profit: float | None,
    long_only: bool,
    margin: dict[str, Any] | None = None,
    where: str = "backtest",
) -> SimConfig:
    from raytrader.sim.config import SimConfig

    kind, _, arg = sizing.partition(":")
    sizing_cfg: dict[str, Any] = {"kind": kind}
    if arg:
        for part in arg.split(","):
            k, sep, v = part.partition("=")
            if not sep:  # shorthand: fixed_fraction:0.5
                k, v = "fraction", k
            sizing_cfg[k.strip()] = v.strip()
    return SimConfig.parse(
        {
            "initial_cash": cash,
            "commission": commission,
            "slippage_bps": slippage_bps,
            "units": units,
            "fill": fill,
            "sizing": sizing_cfg,
            "stop_loss": stop_loss,
            "take_profit": take_profit,
            "allow_short": not long_only,
            "margin": margin,
        },
        where=where,
    )


CommissionOpt = Annotated[float, typer.Option(help="fraction of traded notional per fill")]
SlippageOpt = Annotated[float, typer.Option(help="adverse slippage per fill, basis points")]
CashOpt = Annotated[float, typer.Option(help="initial cash")]
UnitsOpt = Annotated[str, typer.Option(help="fractional | whole")]
FillOpt = Annotated[
    str, typer.Option(help="next_open (default: signal at close t fills at open t+1) | close")
]
SizingOpt = Annotated[
    str,
    typer.Option(
        help="all_in | fixed_fraction:0.5 | vol_target[:annual_vol=0.15,lookback=20] | kelly[:lookback=60]"
    ),
]
StopOpt = Annotated[float | None, typer.Option(help="stop-loss as a fraction of the entry price")]
TakeOpt = Annotated[float | None, typer.Option(help="take-profit as a fraction of the entry price")]
LongOnlyOpt = Annotated[bool, typer.Option("--long-only", help="clip short targets to flat")]
MarginOpt = Annotated[
    str,
    typer.Option(
        help="on: a retail margin account (initial/maintenance margin, liquidation, borrow and "
        "financing costs); off: frictionless (unlimited leverage, no carry costs)"
    ),
]
InitialMarginOpt = Annotated[
    float | None, typer.Option(help="equity needed per unit of notional (default 0.5: about 2x)")
]
MaintenanceOpt = Annotated[
    str | None,
    typer.Option(help="LONG[,SHORT] maintenance margin: liquidation below it (0.25,0.30)"),
]
BorrowOpt = Annotated[float | None, typer.Option(help="annual borrow fee on shorts (0.003)")]
FinancingOpt = Annotated[
    float | None, typer.Option(help="annual interest on borrowed cash of leveraged longs (0.05)")
]
StrategyOpt = Annotated[str, typer.Option(help="registered strategy name")]


@app.command("backtest")
def backtest_cmd(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="dataset name (goog, eurusd, sp500, synthetic[:k=v,...]) or a .csv/.parquet "
            "path; several, comma separated, are a portfolio on one account (goog,sp500)",
        ),
    ] = "goog",
    weights: Annotated[
        str | None,
        typer.Option(
            help="a portfolio's weights in --data order, comma separated: each symbol's share of "
            "equity (default equal shares; they sum to at most 1)"
        ),
    ] = None,
    strategy: StrategyOpt = "ma_cross",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="strategy parameter name=value (repeatable)"),
    ] = None,
    commission: CommissionOpt = 0.001,
    slippage_bps: SlippageOpt = 2.0,
    cash: CashOpt = 10_000.0,
    units: UnitsOpt = "fractional",
    fill: FillOpt = "next_open",
    sizing: SizingOpt = "all_in",
    stop_loss: StopOpt = None,
    take_profit: TakeOpt = None,
    long_only: LongOnlyOpt = False,
    margin: MarginOpt = "on",
    initial_margin: InitialMarginOpt = None,
    maintenance_margin: MaintenanceOpt = None,
    borrow_rate: BorrowOpt = None,
    financing_rate: FinancingOpt = None,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    json_out: JsonOpt = False,
    equity_csv: Annotated[Path | None, typer.Option(help="write the equity curve CSV here")] = None,
    report: Annotated[
        Path | None, typer.Option(help="write PNG/CSV/JSON report into this folder")
    ] = None,
    record: RecordOpt = True,
) -> None:
    """Backtest one strategy on one dataset, or on several as a portfolio sharing one account,
    through the simulation kernel."""
    from raytrader.backtest.engine import BacktestResult, run_backtest
    from raytrader.backtest.portfolio import PortfolioResult, run_portfolio_backtest
    from raytrader.data.sources import split_specs
    from raytrader.errors import ConfigError
    from raytrader.strategies.base import make_strategy

    sim = _sim_config(
        commission,
        slippage_bps,
        cash,
        units,
        fill,
        sizing,
        stop_loss,
        take_profit,
        long_only,
        _margin(margin, initial_margin, maintenance_margin, borrow_rate, financing_rate),
    )
    strat = make_strategy(strategy, _parse_params(param or []))
    specs = split_specs(data)
    result: BacktestResult | PortfolioResult
    if len(specs) == 1 and weights is None:
        bars = _load(data, symbol, timeframe, calendar, start, end)
        result = run_backtest(bars, strat, sim)
    else:
        if symbol is not None:
            raise ConfigError("--symbol names one file's symbol: a portfolio takes each file's own")
        universe = [_load(spec, None, timeframe, calendar, start, end) for spec in specs]
        result = run_portfolio_backtest(universe, strat, sim, _weights(weights))
    if equity_csv is not None or report is not None:
        from raytrader.backtest.report import write_equity_csv, write_report

        if equity_csv is not None:
            write_equity_csv(result, equity_csv)
        if report is not None:
            write_report(result, report)
    summary = result.summary()

    def show() -> None:
        if json_out:
            typer.echo(json.dumps(summary))
            return
        title = f"{strategy} on {result.symbol} {result.timeframe}"
        if isinstance(result, PortfolioResult):
            print_metrics(title, {k: v for k, v in summary.items() if k != "symbols"})
            print_table(f"{title}: each symbol", result.per_symbol)
        else:
            print_metrics(title, summary)

    if record:
        from raytrader.backtest.record import record_backtest

        with _shown_if_not_recorded(show):
            summary["backtest_id"] = record_backtest(result, data)
    show()


def _weights(text: str | None) -> list[float] | None:
    """``--weights 0.5,0.3,0.2`` as floats; a piece that is not a number is named."""
    from raytrader.errors import ConfigError

    if text is None:
        return None
    out = []
    for piece in text.split(","):
        try:
            out.append(float(piece))
        except ValueError:
            raise ConfigError(f"--weights: {piece.strip()!r} is not a number") from None
    return out


@contextlib.contextmanager
def _shown_if_not_recorded(show: Callable[[], None]) -> Iterator[None]:
    """A result the experiment store refused is still shown before the error (exit 2 names the
    store and ``--no-record``): the work is never lost to a stopped database."""
    from raytrader.errors import ExperimentStoreError

    try:
        yield
    except ExperimentStoreError as exc:
        show()
        raise ExperimentStoreError(
            f"{exc} (the result above is not recorded; --no-record)"
        ) from None


# ---------------------------------------------------------------------------------- parallel runner
@app.command("run-strategies")
def run_strategies_cmd(
    data: DataOpt = "goog",
    strategies: Annotated[
        str, typer.Option(help="comma-separated strategy names")
    ] = "rsi,macd,bollinger,momentum,mean_reversion",
    ensemble: Annotated[str, typer.Option(help="weighted | voting | average | none")] = "weighted",
    max_concurrency: Annotated[int, typer.Option(help="tasks running at once")] = 4,
    timeout: Annotated[float, typer.Option(help="per-strategy timeout, seconds")] = 120.0,
    commission: CommissionOpt = 0.001,
    slippage_bps: SlippageOpt = 2.0,
    cash: CashOpt = 10_000.0,
    margin: MarginOpt = "on",
    initial_margin: InitialMarginOpt = None,
    maintenance_margin: MaintenanceOpt = None,
    borrow_rate: BorrowOpt = None,
    financing_rate: FinancingOpt = None,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    json_out: JsonOpt = False,
    record: RecordOpt = True,
) -> None:
    """Run several strategies in parallel as Ray tasks and combine them into an ensemble."""
    from raytrader.strategies.runner import RunnerConfig, StrategyRunner

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    cfg = RunnerConfig.parse(
        {
            "max_concurrency": max_concurrency,
            "timeout_s": timeout,
            "ensemble": None if ensemble == "none" else ensemble,
            "sim": {
                "commission": commission,
                "slippage_bps": slippage_bps,
                "initial_cash": cash,
                "margin": _margin(
                    margin, initial_margin, maintenance_margin, borrow_rate, financing_rate
                ),
            },
        },
        where="run-strategies",
    )
    bars = _load(data, symbol, timeframe, calendar, start, end)
    result = StrategyRunner(cfg).run_sync(names, bars)
    summary = result.summary()

    def show() -> None:
        if json_out:
            typer.echo(json.dumps(summary))
        else:
            print_run(result)

    if record:
        from raytrader.strategies.runner import record_run

        with _shown_if_not_recorded(show):
            summary["store_run_id"] = record_run(result, bars, cfg, data)
    show()
    if not result.success:
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------- sweep
@app.command("sweep")
def sweep_cmd(
    data: DataOpt = "goog",
    strategy: StrategyOpt = "ma_cross",
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", help="name=start:stop[:step] or name=a,b,c (repeatable)"),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="fixed parameter name=value")
    ] = None,
    top: Annotated[int, typer.Option(help="rows to show")] = 10,
    sort: Annotated[str, typer.Option(help="metric to sort by (descending)")] = "sharpe",
    on_ray: Annotated[
        bool, typer.Option("--ray", help="split the grid over Ray tasks (local Ray or RAY_ADDRESS)")
    ] = False,
    commission: CommissionOpt = 0.001,
    slippage_bps: SlippageOpt = 2.0,
    cash: CashOpt = 10_000.0,
    margin: MarginOpt = "on",
    initial_margin: InitialMarginOpt = None,
    maintenance_margin: MaintenanceOpt = None,
    borrow_rate: BorrowOpt = None,
    financing_rate: FinancingOpt = None,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Backtest a parameter grid in one vectorized kernel call and show the best rows."""
    from raytrader.backtest.engine import parse_grid, sweep
    from raytrader.errors import ConfigError

    if not grid:
        raise ConfigError("sweep needs at least one --grid name=start:stop")
    specs = _parse_params(grid)
    sim = _sim_config(
        commission,
        slippage_bps,
        cash,
        "fractional",
        "next_open",
        "all_in",
        None,
        None,
        False,
        _margin(margin, initial_margin, maintenance_margin, borrow_rate, financing_rate),
        where="sweep",
    )
    bars = _load(data, symbol, timeframe, calendar, start, end)
    fixed = _parse_params(param or [])
    if on_ray:
        from raytrader.strategies.runner import RunnerConfig, StrategyRunner

        runner = StrategyRunner(RunnerConfig(sim=sim))
        table = runner.sweep_sync(bars, strategy, parse_grid(specs), fixed=fixed, sort_by=sort)
    else:
        table = sweep(bars, strategy, parse_grid(specs), sim, fixed=fixed, sort_by=sort)
    head = table.head(top)
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "strategy": strategy,
                    **_annualization(bars),
                    "combinations": len(table),
                    "skipped": table.attrs.get("skipped", 0),
                    "sort": sort,
                    "top": json.loads(head.to_json(orient="records")),
                }
            )
        )
        return
    from rich.table import Table

    t = Table(
        title=f"{strategy} sweep on {bars.symbol}: {len(table)} combinations "
        f"(skipped {table.attrs.get('skipped', 0)} invalid), by {sort}",
        caption=annualization(bars.calendar.value, bars.periods_per_year),
    )
    cols = [*specs, "total_return", "sharpe", "max_drawdown", "num_trades"]
    for c in cols:
        t.add_column(c, justify="right")
    for _, row in head.iterrows():
        t.add_row(*(fmt(row[c].item() if hasattr(row[c], "item") else row[c]) for c in cols))
    console().print(t)


# ---------------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    data: DataOpt = "goog",
    out: Annotated[Path, typer.Option(help="folder for the run's report")] = Path("runs"),
    max_concurrency: Annotated[int, typer.Option(help="tasks running at once")] = 4,
    stack: Annotated[
        str, typer.Option(help="auto: use the local stack when it is up; off: embedded only")
    ] = "auto",
    serve: Annotated[
        bool, typer.Option(help="register the default ensemble and leave the service running")
    ] = True,
    calendar: CalendarOpt = "auto",
    start: StartOpt = None,
    end: EndOpt = None,
    experiments: Annotated[
        bool,
        typer.Option(
            help="a short RL run and a search into the experiment store, then its API and "
            "dashboard left running"
        ),
    ] = True,
) -> None:
    """The main job: bundled data, features to Feast, strategies in parallel on Ray, an ensemble,
    a Rich table, a report folder and an MLflow run; then the default ensemble registered, the
    decision service deployed on Ray Serve and one decision asked of it.

    With the local stack up (`raytrader stack up`) it uses the stack's Ray head, MLflow server and
    Feast (Redis online store); otherwise the stack's Ray head alone (local Ray with --no-serve),
    an SQLite MLflow store and an SQLite Feast online store under --out. Library logs go to
    <report>/demo.log (`raytrader --debug demo` prints them)."""
    from raytrader.demo import DemoConfig, run_demo

    cfg = DemoConfig.parse(
        {
            "data": data,
            "out": str(out),
            "max_concurrency": max_concurrency,
            "stack": stack,
            "serve": serve,
            "calendar": calendar,
            "start": start,
            "end": end,
            "experiments": experiments,
        },
        where="demo",
    )
    run_demo(cfg, debug=bool(_STATE["debug"]))


# ------------------------------------------------------------------------------- experiment store
db_app = typer.Typer(
    help="The experiment store (RAYTRADER_DB_URL): migrate it, see what it holds.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
DbUrlOpt = Annotated[
    str | None, typer.Option("--url", help="database URL (default: RAYTRADER_DB_URL)")
]


@db_app.command("upgrade")
def db_upgrade_cmd(url: DbUrlOpt = None, json_out: JsonOpt = False) -> None:
    """Bring the store's schema to the newest migration (idempotent)."""
    from raytrader import settings
    from raytrader.db import engine as db_engine

    resolved = settings.db_url(url)
    engine = db_engine.make_engine(resolved)
    try:
        before, after = db_engine.upgrade(engine)
    finally:
        engine.dispose()
    out = {
        "url": db_engine.redacted(db_engine.normalize_url(resolved)),
        "from": before,
        "to": after,
    }
    if json_out:
        typer.echo(json.dumps(out))
        return
    change = "already at" if before == after else f"{before or 'empty'} ->"
    console().print(f"experiment store {out['url']}: {change} revision {after}")


@db_app.command("status")
def db_status_cmd(url: DbUrlOpt = None, json_out: JsonOpt = False) -> None:
    """The store's URL (password hidden), its revision against the code's, and rows per table."""
    from sqlalchemy import func, select

    from raytrader import settings
    from raytrader.db import engine as db_engine
    from raytrader.db.models import Base

    resolved = settings.db_url(url)
    engine = db_engine.make_engine(resolved)
    try:
        at, head = db_engine.current_revision(engine), db_engine.head_revision()
        rows: dict[str, int] = {}
        if at is not None:
            with engine.connect() as conn:
                for name, table in sorted(Base.metadata.tables.items()):
                    rows[name] = int(conn.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        engine.dispose()
    out = {
        "url": db_engine.redacted(db_engine.normalize_url(resolved)),
        "revision": at,
        "head": head,
        "current": at == head,
        "rows": rows,
    }
    if json_out:
        typer.echo(json.dumps(out))
    else:
        state = "current" if at == head else f"needs `raytrader db upgrade` (code: {head})"
        console().print(f"experiment store {out['url']}: revision {at or 'none'}, {state}")
        for name, count in rows.items():
            console().print(f"  {name:<17} {count:>10,}")
    if at != head:
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------- stack
stack_app = typer.Typer(
    help="The local stack on 127.0.0.1: Kafka, PostgreSQL, Redis, MLflow, Ray head, Feast.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")


def _stream_app() -> Any:
    from raytrader.streaming.cli import stream_app

    return stream_app


app.add_typer(_stream_app(), name="stream")


def _training_cli() -> Any:
    from raytrader.training import cli

    return cli


app.add_typer(_training_cli().train_app, name="train")
app.add_typer(_training_cli().models_app, name="models")
app.add_typer(_training_cli().ensemble_app, name="ensemble")


def _serving_cli() -> Any:
    from raytrader.serving import cli

    return cli


app.add_typer(_serving_cli().serve_app, name="serve")


def _meta_app() -> Any:
    from raytrader.meta.cli import meta_app

    return meta_app


app.add_typer(_meta_app(), name="meta")


def _api_app() -> Any:
    from raytrader.api.cli import api_app

    return api_app


app.add_typer(_api_app(), name="api")


def _dashboard_app() -> Any:
    from raytrader.dashboard.cli import dashboard_app

    return dashboard_app


app.add_typer(_dashboard_app(), name="dashboard")


def _paper_app() -> Any:
    from raytrader.paper.cli import paper_app

    return paper_app


app.add_typer(_paper_app(), name="paper")
app.command("decide")(_serving_cli().decide_cmd)
app.command("tune")(_training_cli().tune_cmd)

StackOnlyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        help="service (repeatable): postgres, redis, kafka, mlflow, ray, feast; default: all",
    ),
]


def _print_stack(statuses: list[Any], title: str, elapsed: float | None = None) -> None:
    from rich.table import Table

    t = Table(title=title if elapsed is None else f"{title} ({elapsed:.1f} s)")
    for c in ("service", "state", "pid", "address", "detail"):
        t.add_column(c)
    for st in statuses:
        state = st.state
        if st.changed and st.state == "healthy":
            state += f" (started, {st.seconds:.1f} s)" if st.seconds is not None else " (started)"
        t.add_row(st.name, state, str(st.pid or "-"), st.address, st.detail)
    console().print(t)


@stack_app.command("up")
def stack_up_cmd(only: StackOnlyOpt = None, json_out: JsonOpt = False) -> None:
    """Start the stack (or --only some services, with their dependencies); idempotent."""
    import time

    from raytrader.stack import Stack

    t0 = time.monotonic()
    statuses = Stack().up(only)
    if json_out:
        typer.echo(json.dumps([st.to_dict() for st in statuses]))
        return
    _print_stack(statuses, "stack up", time.monotonic() - t0)
    typer.echo('clients: eval "$(raytrader stack env)"  (Ray address, token, MLflow URI, ...)')


@stack_app.command("down")
def stack_down_cmd(
    only: StackOnlyOpt = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="also delete the state dir (databases, topics, runs)")
    ] = False,
) -> None:
    """Stop the stack's processes (and with --purge delete its state: a reset)."""
    import time

    from raytrader.errors import ConfigError
    from raytrader.stack import Stack

    if purge and only:
        raise ConfigError("--purge resets the whole stack; it cannot be combined with --only")
    t0 = time.monotonic()
    stack = Stack()
    statuses = stack.purge() if purge else stack.down(only)
    _print_stack(statuses, "stack down", time.monotonic() - t0)
    if purge:
        typer.echo(f"deleted {stack.config.state_dir}")


@stack_app.command("status")
def stack_status_cmd(json_out: JsonOpt = False) -> None:
    """Show each service's state; exit code 1 unless every service that is run is healthy."""
    from raytrader.stack import Stack

    statuses = Stack().status()
    if json_out:
        typer.echo(json.dumps([st.to_dict() for st in statuses]))
    else:
        _print_stack(statuses, "stack status")
    if any(st.state not in ("healthy", "skipped") for st in statuses):
        sys.exit(1)  # not typer.Exit: main() runs click non-standalone, which swallows its code


@stack_app.command("logs")
def stack_logs_cmd(
    service: Annotated[str, typer.Argument(help="postgres, redis, kafka, mlflow, ray, feast")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines")] = 100,
) -> None:
    """Print the last lines of a service's log (<state>/logs/SERVICE.log)."""
    from raytrader.stack import Stack

    stack = Stack()
    for line in stack.logs(service, lines):
        typer.echo(line)


@stack_app.command("env")
def stack_env_cmd() -> None:
    """Print `export` lines for clients of the stack: eval "$(raytrader stack env)"."""
    import shlex

    from raytrader.stack import StackConfig

    for key, value in StackConfig.from_env().client_env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to one stderr line and exit code 2."""
    from pydantic import ValidationError

    from raytrader.config import describe_validation_error
    from raytrader.errors import RaytraderError

    try:
        # non-standalone click returns the code of a typer.Exit instead of raising it
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except (RaytraderError, ValidationError) as exc:
        if _STATE["debug"]:
            raise
        msg = (
            describe_validation_error(exc, "input")
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors (typer vendors click's exceptions)
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(int(getattr(exc, "exit_code", 2)))


if __name__ == "__main__":
    main()
