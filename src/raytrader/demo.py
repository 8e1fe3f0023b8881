"""``raytrader demo`` (what ``make demo`` runs): the main job end to end, for a person watching.

1. Load the data (bundled GOOG by default), compute ``bar_features_v1`` and write them to Feast
   (offline rows + the latest row online, read back).
2. Run seven rule strategies in parallel on Ray, combine them into an inverse-volatility-weighted
   ensemble and backtest it; write a report folder and record the run in MLflow.
3. Register the default ensemble at ``champion`` (unless one exists), deploy the decision service
   on Ray Serve and print one decision from it.

Where it runs, decided once at the start:

* **the local stack** when every service answers (``raytrader stack up``): its Ray head, MLflow
  server and Redis-backed Feast;
* **embedded** otherwise: an SQLite MLflow store and an SQLite Feast store under ``--out``. The
  strategies run on the Ray head that will serve (the stack's Ray service alone, started if it is
  not running), so one Ray instance does all the work; with ``--no-serve`` a local Ray instead.

Running Ray twice would collide: a local ``ray.init()`` and a Ray head both want Ray's default
dashboard-agent port, which is how the first ``make demo`` on a fresh machine used to fail. The
stack's head also keeps off that port (``ray_dashboard_agent_port``), so a user's own local Ray can
run beside it.

The console shows raytrader's own lines; library logs, warnings and MLflow's progress output go to
``<report>/demo.log`` (``raytrader --debug demo`` shows them instead).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from raytrader.config import StrictConfig
from raytrader.console import console, print_run
from raytrader.errors import RaytraderError

#: the strategies the demo runs, in table order
DEMO_STRATEGIES = (
    "rsi",
    "macd",
    "bollinger",
    "momentum",
    "mean_reversion",
    "ma_cross",
    "buy_and_hold",
)


class DemoConfig(StrictConfig):
    """``raytrader demo`` (module docstring)."""

    data: str = "goog"
    out: str = "runs"
    max_concurrency: int = Field(default=4, ge=1)
    #: auto: use the local stack when every service answers; off: embedded only
    stack: Literal["auto", "off"] = "auto"
    #: register the default ensemble and leave the decision service running
    serve: bool = True
    calendar: str = "auto"
    start: str | None = None
    end: str | None = None
    strategies: tuple[str, ...] = DEMO_STRATEGIES
    #: a short RL training run and a search (recorded in the experiment store), then the
    #: experiment API and the dashboard started over the store
    experiments: bool = True


def running_stack() -> Any | None:
    """The local stack's config when every service answers, else None (quick: pid files first)."""
    from raytrader.stack.manager import running_config

    try:
        cfg, healthy = running_config()
    except RaytraderError:
        return None
    return cfg if healthy and all(healthy.values()) else None


def serving_ray_head() -> Any:
    """The stack's Ray head, started alone if it is not running; its client variables (address,
    token) are exported so this process's Ray work runs on it. Returns the stack config."""
    from raytrader.stack.manager import Stack, running_config

    cfg, healthy = running_config()
    if not healthy.get("ray"):
        Stack(cfg).up(["ray"])
    os.environ.update({k: v for k, v in cfg.client_env().items() if k.startswith("RAY_")})
    return cfg


def run_demo(cfg: DemoConfig, *, debug: bool = False) -> dict[str, Any]:
    """Run the demo (module docstring); returns what it printed, as data."""
    out = Path(cfg.out)
    run_dir = out / f"demo-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    con = console()
    # where Ray runs is settled first: Ray reads its client variables when it is imported
    stack_cfg = running_stack() if cfg.stack == "auto" else None
    if stack_cfg is not None:
        os.environ.update(stack_cfg.client_env())  # Ray address + token, MLflow URI, Feast
        con.print(f"using the local stack (state {stack_cfg.state_dir})")
    elif cfg.serve:
        with con.status("starting the Ray head that will run the strategies and serve"):
            head = serving_ray_head()
        con.print(
            f"embedded mode: the stack's Ray head ({head.ray_address}), SQLite MLflow and "
            f"SQLite Feast under {out}"
        )
    else:
        con.print(f"embedded mode: a local Ray, SQLite MLflow and SQLite Feast under {out}")
    if debug:
        return _run(cfg, out, run_dir, stack_cfg, None)
    from raytrader.logs import library_output_to

    log = run_dir / "demo.log"
    if cfg.experiments:
        # RLlib, Tune and Optuna set up loggers of their own when imported: import them first,
        # so that the library log takes them over too
        import optuna  # noqa: F401
        import ray.rllib
        import ray.tune  # noqa: F401
    with library_output_to(log):
        return _run(cfg, out, run_dir, stack_cfg, log)


def _run(
    cfg: DemoConfig, out: Path, run_dir: Path, stack_cfg: Any | None, log: Path | None
) -> dict[str, Any]:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    con = console()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=con
    ) as prog:
        step = prog.add_task("loading data", total=None)
        from raytrader.data.sources import load_bars

        bars = load_bars(cfg.data, calendar=cfg.calendar, start=cfg.start, end=cfg.end)
        prog.update(step, description="computing bar_features_v1")
        from raytrader.features import BAR_FEATURES_V1
        from raytrader.features.engine import compute_features

        feats = compute_features(bars, BAR_FEATURES_V1)
        prog.update(step, description="writing the features to Feast (offline + online)")
        online = _feast(bars, stack_cfg, out)
        prog.update(step, description="running strategies in parallel on Ray")
        from raytrader.strategies.runner import RunnerConfig, StrategyRunner

        runner_cfg = RunnerConfig(
            max_concurrency=cfg.max_concurrency, history_path=str(out / "history.jsonl")
        )
        result = StrategyRunner(runner_cfg).run_sync(list(cfg.strategies), bars)
        prog.update(step, description="writing the report")
        import pandas as pd

        from raytrader.backtest.engine import run_backtest
        from raytrader.backtest.report import write_report

        if result.ensemble is not None and result.ensemble.targets is not None:
            ens = run_backtest(
                bars,
                pd.Series(result.ensemble.targets, index=bars.index),
                runner_cfg.sim,
                name="ensemble",
            )
            write_report(ens, run_dir / "ensemble")
        (run_dir / "run.json").write_text(json.dumps(result.summary(), indent=2))
        prog.update(step, description="recording the run in MLflow and the experiment store")
        uri, mlflow_run = _mlflow(result, bars, cfg.data, run_dir, out)
        from raytrader.strategies.runner import record_run

        store_run = record_run(result, bars, runner_cfg, cfg.data)
        prog.update(step, description="done")
    con.print(
        f"{bars.symbol} {bars.timeframe}: {len(bars)} bars, {len(BAR_FEATURES_V1.features)} "
        f"features ({int(feats['warm'].sum())} warm rows)"
    )
    con.print(online)
    print_run(result)
    con.print(f"report: {run_dir}")
    con.print(f"MLflow: run {mlflow_run} at {uri}")
    from raytrader import settings
    from raytrader.db.engine import normalize_url, redacted

    store_url = redacted(normalize_url(settings.db_url()))
    con.print(f"experiment store: run {store_run} at {store_url}")
    if cfg.experiments:
        _experiments(cfg, run_dir, uri, con)
    shown: dict[str, Any] = {
        "run_dir": str(run_dir),
        "mlflow_run": mlflow_run,
        "uri": uri,
        "store_run": store_run,
    }
    if cfg.serve:
        shown["decision"] = _serve(cfg, bars, stack_cfg, out, uri, con)
    if cfg.experiments:
        shown["dashboard"] = _dashboard(con)
    if log is not None:
        con.print(f"library log: {log}")
    return shown


def _serve(cfg: DemoConfig, bars: Any, stack_cfg: Any | None, out: Path, uri: str, con: Any) -> Any:
    import pandas as pd

    from raytrader.ensemble import default_ensemble
    from raytrader.meta.model import default_meta
    from raytrader.serving.cli import print_decisions, serve_up
    from raytrader.serving.config import ServiceConfig

    symbol = bars.symbol
    with con.status("registering the default ensemble"):
        version = default_ensemble(uri, out, data=cfg.data)
    con.print(f"ensemble: raytrader-ensemble v{version} at alias champion")
    overrides: dict[str, Any] = {"timeframe": bars.timeframe.name}
    limit = ServiceConfig(timeframe=bars.timeframe.name).feature_age_limit_s
    age = (pd.Timestamp.now(tz="UTC") - (bars.index[-1] + bars.timeframe.delta)).total_seconds()
    if age > limit:
        # historical data: the service would rightly refuse its stale features; it decides and
        # flags them instead, and says so
        overrides["stale"] = "flag"
        con.print(
            f"{symbol}'s last bar closed {age / 86400:.0f} days ago (the service's limit is "
            f"{limit / 3600:g} h): the demo's service flags stale features instead of refusing them"
        )
    with con.status("deploying the decision service on Ray Serve"):
        info = serve_up(root=out, overrides=overrides)
    if not info["ready"]:
        raise RaytraderError(f"the decision service is not ready: {info['readyz']}")
    # a service left serving the meta ensemble (an earlier demo) answers until the redeploy is done
    body = _decided_by("raytrader-ensemble", symbol, info["url"])
    print_decisions(body)
    with con.status("registering the meta ensemble"):
        meta = default_meta(uri, out, data=cfg.data)
    con.print(f"meta ensemble: raytrader-meta v{meta['version']} at alias champion" + _oos(meta))
    with con.status("retargeting the decision service to the meta ensemble"):
        info = serve_up(
            root=out, overrides={**overrides, "model_uri": "models:/raytrader-meta@champion"}
        )
    if not info["ready"]:
        raise RaytraderError(f"the meta decision service is not ready: {info['readyz']}")
    with con.status("waiting for the meta ensemble's replicas (a cold one replays GOOG's bars)"):
        meta_body = _decided_by("raytrader-meta", symbol, info["url"])
    print_decisions(meta_body)
    mlflow_ui = (
        stack_cfg.mlflow_uri
        if stack_cfg is not None
        else f"`mlflow ui --backend-store-uri {uri}` (embedded store)"
    )
    con.print(
        f"decision service: {info['url']}  docs {info['docs']}  (`raytrader decide {symbol}`)"
    )
    con.print(f"Ray dashboard: {info['dashboard']}")
    con.print(f"MLflow UI: {mlflow_ui}")
    con.print(
        "it serves raytrader-meta@champion now; `raytrader serve up` serves the ensemble again"
    )
    con.print("stop it: `raytrader serve down` (and `raytrader stack down`)")
    return {"ensemble": body, "meta": meta_body}


def _experiments(cfg: DemoConfig, run_dir: Path, uri: str, con: Any) -> None:
    """A short PPO run (its episodes, sampled steps and trades go to the experiment store) and a
    short ma_cross search (its trials), both on the demo's data and Ray. RLlib's, Tune's and
    Optuna's loggers were imported before the library log took over (:func:`run_demo`)."""
    from raytrader.envs import EnvConfig
    from raytrader.training.rl import RLConfig, train_rl
    from raytrader.training.search_config import SearchConfig
    from raytrader.training.tune import run_search

    rl = RLConfig(
        data=cfg.data, iterations=2, checkpoint_every=2, train_batch_size=1024,
        minibatch_size=128, num_epochs=2, env=EnvConfig(episode_length=128),
        output_dir=str(run_dir / "rl"), tracking_uri=uri,
    )  # fmt: skip
    with con.status("training PPO for 2 iterations (episodes recorded in the experiment store)"):
        trained = train_rl(rl)
    con.print(
        f"RL: PPO, {trained.iterations} iterations, experiment store run {trained.store_run}; "
        "`raytrader train rl --config pipelines/configs/train_rl.yaml` trains for real"
    )
    search = SearchConfig(
        name=run_dir.name, strategy="ma_cross", data=cfg.data, num_samples=12,
        space={"fast": {"kind": "int", "low": 5, "high": 30},
               "slow": {"kind": "int", "low": 40, "high": 200}},
        output_dir=str(run_dir.parent / "tune"), tracking_uri=uri,
    )  # fmt: skip
    with con.status("searching ma_cross (12 trials, ASHA, walk-forward windows)"):
        summary = run_search(search)
    con.print(
        f"search: {summary['trials']} trials ({summary['stopped_early']} stopped early), best "
        f"validation Sharpe {summary['best_validation_sharpe']:.2f} (biased upward: the best of "
        f"{summary['completed']}), deflated Sharpe ratio {summary['deflated_sharpe']['dsr']:.2f}; "
        f"experiment store optimization {summary['store_optimization_id']}"
    )


def _dashboard(con: Any) -> dict[str, Any]:
    """The experiment API (migrating the store first) and the dashboard over it, left running."""
    from raytrader.api import cli as api_cli
    from raytrader.dashboard.cli import dashboard_up

    with con.status("starting the experiment API and the dashboard"):
        api = api_cli.api_up("127.0.0.1", 8080, None)
        admin = api_cli.state_dir() / api_cli.ADMIN_TOKEN_FILE
        board = dashboard_up(api_url=api["url"], admin_token_file=str(admin))
    con.print(
        f"dashboard: {board['url']}  (experiment API {api['url']}/docs, read token: "
        "`raytrader api token`)"
    )
    con.print("stop them: `raytrader dashboard down` and `raytrader api down`")
    return {"api": api["url"], "dashboard": board["url"]}


def _decided_by(model: str, symbol: str, url: str, timeout_s: float = 180.0) -> Any:
    """The first decision for ``symbol`` that ``model`` makes: a redeployed application keeps
    answering with its old replicas until the new ones are up."""
    import time

    from raytrader.serving.cli import decide

    deadline = time.monotonic() + timeout_s
    while True:
        try:  # a cold meta replica replays the symbol's stored bars before its first answer
            status, body = decide([symbol], url=url, timeout=60.0)
        except OSError as exc:  # a timeout while it does: ask again
            status, body = 0, f"{type(exc).__name__}: {exc}"
        if status == 200 and body["model"]["name"] == model:
            return body
        if time.monotonic() > deadline:
            raise RaytraderError(
                f"no decision for {symbol} from {model} within {timeout_s:.0f} s: HTTP {status} "
                f"{str(body)[:500]}"
            )
        time.sleep(2.0)


def _oos(meta: dict[str, Any]) -> str:
    """The build's out-of-sample Sharpe beside equal weight's (empty when it was not built now)."""
    table = meta.get("backtest")
    if not table:
        return ""
    return (
        f"; out of sample: Sharpe {table['backtest']['sharpe']:.2f} vs equal weight "
        f"{table['equal_weight']['sharpe']:.2f} (raytrader meta evaluate for the full comparison)"
    )


def _feast(bars: Any, stack_cfg: Any | None, out: Path) -> str:
    """Offline rows + the latest row online (the backfill path); reads it back. Returns a line
    for the console."""
    from raytrader.features import WARM_COLUMN
    from raytrader.features import feast_repo as fr
    from raytrader.features.backfill import backfill

    if stack_cfg is not None:
        fs = fr.store("redis", redis=stack_cfg.redis_connection, data=stack_cfg.feast_data)
    else:
        fs = fr.store("sqlite", data=(out / "feast").resolve())
    served = backfill(fs, bars).online
    return (
        f"Feast online ({fs.config.online_store.type}): {bars.symbol} {bars.timeframe} bar "
        f"{served[fr.BAR_OPEN_TIME].isoformat()}, rsi_14 {served['rsi_14']:.2f}, "
        f"warm {bool(served[WARM_COLUMN])}"
    )


def _mlflow(result: Any, bars: Any, data: str, run_dir: Path, out: Path) -> tuple[str, str]:
    from raytrader.tracking import log_run

    metrics: dict[str, float] = {}
    entries = list(result.entries) + ([result.ensemble] if result.ensemble else [])
    for e in entries:
        for key in ("total_return", "sharpe", "max_drawdown"):
            if key in e.metrics:
                metrics[f"{e.label}.{key}"] = float(e.metrics[key])
    return log_run(
        experiment="raytrader-demo",
        run_name=run_dir.name,
        params={
            "data": data,
            "symbol": bars.symbol,
            "bars": len(bars),
            "calendar": bars.calendar.value,
            "periods_per_year": bars.periods_per_year,
            "strategies": len(entries),
        },
        metrics=metrics,
        tags={"raytrader.run_id": str(result.run_id)},
        artifacts=run_dir,
        root=out,
    )
