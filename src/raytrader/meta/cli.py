"""``raytrader meta``: regimes, the evaluation against the baselines, the predictors trained on Ray,
and the registered meta ensemble: build, update, explain."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

meta_app = typer.Typer(
    help="The meta-learning ensemble: regimes, and the evaluation against its baselines.",
    no_args_is_help=True,
)

DataOpt = Annotated[
    str, typer.Option("--data", help="a data spec: goog, sp500, a CSV, synthetic:...")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _console() -> Any:
    from rich.console import Console

    return Console()


@meta_app.command("regimes")
def regimes_cmd(
    data: DataOpt,
    last: Annotated[int, typer.Option(help="the last N readings to show")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """The causal regime of every bar: how often each regime was read, the last readings with the
    rule that fired, and for synthetic data the score against the true regimes."""
    from raytrader.data import load_bars
    from raytrader.features.engine import compute_features
    from raytrader.meta.regimes import detect_regimes

    bars = load_bars(data)
    readings = detect_regimes(compute_features(bars), bars.column("close"))
    shares = readings["regime"].value_counts(normalize=True).round(4).to_dict()
    tail = readings.tail(last)
    out: dict[str, Any] = {
        "symbol": bars.symbol,
        "bars": len(bars),
        "shares": shares,
        "last": [
            {"time": t.isoformat(), "regime": r, "confidence": round(c, 4), "rule": rule}
            for t, r, c, rule in zip(
                tail.index, tail["regime"], tail["confidence"], tail["rule"], strict=True
            )
        ],
    }
    if data.strip().lower().startswith("synthetic"):
        from raytrader.data.sources import parse_synthetic_spec
        from raytrader.data.synthetic import synthetic_regimes
        from raytrader.meta.regime_score import score_regimes

        truth = synthetic_regimes(parse_synthetic_spec(data.strip()))
        score = score_regimes(readings["regime"], truth)
        out["score"] = {
            "balanced_accuracy": round(score.balanced_accuracy, 4),
            "median_delay": score.median_delay,
            "switches_per_100": round(score.switches_per_100, 3),
        }
    if as_json:
        typer.echo(json.dumps(out))
        return
    from rich.table import Table

    con = _console()
    con.print(
        f"{bars.symbol}: {len(bars)} bars; " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
    )
    table = Table("time", "regime", "confidence", "rule")
    for row in out["last"]:
        table.add_row(row["time"], str(row["regime"]), f"{row['confidence']:.2f}", row["rule"])
    con.print(table)
    if "score" in out:
        s = out["score"]
        con.print(
            f"against the true regimes: balanced accuracy {s['balanced_accuracy']:.3f}, median "
            f"delay {s['median_delay']:.0f} bars, {s['switches_per_100']:.2f} switches per 100 bars"
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}"
    return str(value)


@meta_app.command("evaluate")
def evaluate_cmd(
    data: Annotated[list[str], typer.Option("--data", help="a data spec (repeatable)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="a StudyConfig file (YAML or JSON)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write every table as JSON here")
    ] = None,
    as_json: JsonOpt = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="write the tables to the experiment store (RAYTRADER_DB_URL; `raytrader db`)",
        ),
    ] = True,
) -> None:
    """The meta ensemble against equal weight, inverse volatility, the causal best single member,
    fixed share, buy-and-hold and the best member in hindsight: the kernel's metrics, deflated
    Sharpe, SPA p-value and a bootstrap interval of the Sharpe difference, at each cost multiple."""
    from raytrader.config import load_config
    from raytrader.data import load_bars
    from raytrader.meta.evaluate import claim
    from raytrader.meta.study import StudyConfig, study

    cfg = load_config(config, StudyConfig) if config else StudyConfig()
    cfg.check()
    con = None if as_json else _console()
    results: dict[str, Any] = {}
    per_multiple: dict[float, dict[str, Any]] = {}
    for spec in data:
        bars = load_bars(spec)
        truth = None
        if spec.strip().lower().startswith("synthetic"):
            from raytrader.data.sources import parse_synthetic_spec
            from raytrader.data.synthetic import synthetic_regimes

            truth = synthetic_regimes(parse_synthetic_spec(spec.strip()))
        result = study(bars, cfg, progress=(con.log if con else None), truth=truth)
        tables = result.tables
        for multiple, table in tables.items():
            per_multiple.setdefault(multiple, {})[spec] = table
        results[spec] = {
            str(multiple): {
                "trials": int(table.attrs["trials"]),
                "rows": json.loads(table.to_json(orient="index")),
                "claims": [claim(table, name) for name in table.index if name.startswith("meta[")],
                "sharpe_by_regime": json.loads(result.regimes[multiple].to_json(orient="index")),
            }
            for multiple, table in tables.items()
        }
        if con is not None:
            from rich.table import Table

            for multiple, table in tables.items():
                columns = [
                    "sharpe",
                    "annual_return",
                    "max_drawdown",
                    "turnover",
                    "cost_drag",
                    "active_members",
                    "weight_concentration",
                    "dsr",
                    "spa_p",
                    "in_mcs",
                    "sharpe_diff_low",
                    "sharpe_diff_high",
                ]
                view = Table(
                    "candidate",
                    *columns,
                    title=f"{spec}, costs x{multiple} ({table.attrs['trials']} trials)",
                )
                for name, row in table.iterrows():
                    view.add_row(str(name), *(_cell(float(row[c])) for c in columns))
                con.print(view)
                for text in results[spec][str(multiple)]["claims"]:
                    con.print(text)
    if len(data) > 1:
        from raytrader.meta.evaluate import pool

        pooled = {multiple: pool(tables) for multiple, tables in per_multiple.items()}
        results["pooled"] = {
            str(multiple): json.loads(table.to_json(orient="index"))
            for multiple, table in pooled.items()
        }
        if con is not None:
            from rich.table import Table

            columns = ["sharpe_mean", "sharpe_std", "max_drawdown_mean", "cost_drag_mean",
                       "mcs_share", "vs_equal", "t_vs_equal", "vs_best_single",
                       "t_vs_best_single"]  # fmt: skip
            for multiple, table in pooled.items():
                view = Table(
                    "candidate",
                    *columns,
                    title=f"pooled over {len(data)} datasets, costs x{multiple}",
                )
                for name, row in table.iterrows():
                    view.add_row(str(name), *(_cell(float(row.get(c, math.nan))) for c in columns))
                con.print(view)
    if record:
        results["store_evaluation_id"] = _record(results, data, cfg)
    if out is not None:
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(results))


def _record(results: dict[str, Any], data: list[str], cfg: Any) -> int | None:
    """The evaluation in the experiment store: one row per dataset (and cost multiple) and
    candidate, its role (the meta candidates, the oracles, the baselines) and its metrics; the
    claims and the pooled tables as its summary. The same data and config replace it."""
    from raytrader.db.store import EvaluationRecord, ExperimentStore, content_key

    store = ExperimentStore.configured()
    if store is None:
        return None
    config = cfg.model_dump(mode="json")
    rows = []
    for spec in data:
        for multiple, table in results[spec].items():
            for name, metrics in table["rows"].items():
                oracle = metrics.get("investable") is False
                role = (
                    "candidate" if name.startswith("meta[") else "oracle" if oracle else "baseline"
                )
                rows.append((f"{spec} x{multiple}", name, role, metrics))
    summary = {
        "claims": {f"{s} x{m}": t["claims"] for s in data for m, t in results[s].items()},
        **({"pooled": results["pooled"]} if "pooled" in results else {}),
    }
    record = EvaluationRecord(
        key=content_key("meta-evaluate", list(data), config),
        name=f"meta evaluate {', '.join(data)}",
        kind="meta",
        config={"data": list(data), **config},
        rows=rows,
        summary=summary,
    )
    try:
        return store.record_evaluation(record)
    finally:
        store.close()


@meta_app.command("train")
def train_cmd(
    data: DataOpt,
    config: Annotated[
        Path | None, typer.Option("--config", help="a StudyConfig file (YAML or JSON)")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow; default: MLFLOW_TRACKING_URI or runs/mlflow.db")
    ] = None,
    root: Annotated[Path, typer.Option(help="where an embedded MLflow store lives")] = Path("runs"),
    address: Annotated[
        str | None, typer.Option(help="a Ray cluster; default: RAY_ADDRESS or a local Ray")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk every predictor forward (one Ray task per predictor and seed), score it out of sample,
    choose the default (the MLP only if its rank IC is at least the best baseline's) and record
    it all in MLflow (a parent run, a child run per task)."""
    from raytrader.config import load_config
    from raytrader.data import load_bars
    from raytrader.meta.study import StudyConfig, study_rows
    from raytrader.meta.train import choose, compare_predictors, log_training

    cfg = load_config(config, StudyConfig) if config else StudyConfig()
    cfg.check()
    bars = load_bars(data)
    rows = study_rows(bars, cfg)
    con = None if as_json else _console()

    def progress(result: dict[str, Any]) -> None:
        if con is not None:
            con.log(f"{result['kind']} seed {result['seed']}: rank IC {result['ic']:.4f}")

    scores, tasks = compare_predictors(
        rows, cfg.training, cfg.horizon, address=address, on_result=progress
    )
    chosen = choose(scores)
    run_id = log_training(
        bars, cfg, scores, tasks, chosen, tracking_uri=tracking_uri, root=str(root)
    )
    summary = {
        "symbol": bars.symbol,
        "predictor": chosen[0],
        "reason": chosen[1],
        "mlflow_run_id": run_id,
        "scores": [s.__dict__ for s in scores],
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.table import Table

    assert con is not None  # noqa: S101 - set when not --json
    view = Table(
        "predictor",
        "rank IC",
        "std over seeds",
        "NW t",
        "top-1 hit",
        "seeds",
        title=f"{bars.symbol}: predictors out of sample",
    )
    for s in scores:
        view.add_row(
            s.kind, _cell(s.ic), _cell(s.ic_std), _cell(s.ic_t), _cell(s.hit_rate), str(s.seeds)
        )
    con.print(view)
    con.print(f"default: {chosen[0]} ({chosen[1]}); MLflow run {run_id}")


ConfigOpt = Annotated[Path, typer.Option("--config", help="a config file (YAML or JSON)")]
UriOpt = Annotated[
    str | None, typer.Option(help="MLflow; default: MLFLOW_TRACKING_URI or an embedded store")
]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """A build's result without its per-bar decisions, the backtests reduced to key metrics."""
    keys = ("sharpe", "annual_return", "max_drawdown", "num_trades")
    out = {k: v for k, v in result.items() if k not in ("decisions", "backtest")}
    out["backtest"] = {
        label: {k: metrics[k] for k in keys if k in metrics}
        for label, metrics in result.get("backtest", {}).items()
    }
    return out


@meta_app.command("build")
def build_cmd(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Register a meta ensemble over registered members (kind ``meta``): the predictor fitted on
    the first part of the data, every bar replayed through the code the service runs, the rest
    backtested out of sample beside equal weight; the alias moved."""
    from raytrader.config import load_config
    from raytrader.meta.model import MetaEnsembleConfig, build_meta

    summary = _summary(build_meta(load_config(config, MetaEnsembleConfig)))
    _print_build(summary, as_json)


def _print_build(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.table import Table

    con = _console()
    gate = summary.get("gate")
    if gate is not None:
        con.print(
            f"refit gate: rank IC {gate['candidate_ic']:.4f} (refit) vs {gate['current_ic']:.4f} "
            f"(current) over {gate['held_out_bars']} bars after {gate['after']}: "
            + ("accepted" if gate["accepted"] else "refused, nothing registered")
        )
    if summary.get("version") is None:
        return
    view = Table("backtest", "sharpe", "annual return", "max drawdown", "trades")
    for label, m in summary["backtest"].items():
        view.add_row(
            label,
            *(_cell(m.get(k, math.nan)) for k in ("sharpe", "annual_return", "max_drawdown")),
            str(int(m.get("num_trades", 0))),
        )
    con.print(view)
    alias = f" at {summary['alias']}" if summary.get("alias") else ""
    con.print(
        f"{summary['name']} version {summary['version']}{alias}; predictor fitted on labels "
        f"closed by {summary['fitted_until']} (backtest: the bars after it)"
    )


@meta_app.command("update")
def update_cmd(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Refit a registered meta ensemble on new bars; register the refit (at ``challenger``) only
    if its rank IC after both fits is no worse than the current version's. Promote it with
    ``raytrader models promote``: the decision service validates and hot-swaps it."""
    from raytrader.config import load_config
    from raytrader.meta.update import MetaUpdateConfig, update_meta

    _print_build(_summary(update_meta(load_config(config, MetaUpdateConfig))), as_json)


@meta_app.command("explain")
def explain_cmd(
    data: DataOpt,
    model: Annotated[
        str, typer.Option(help="models:/<name>@<alias> or models:/<name>/<version>")
    ] = "models:/raytrader-meta@champion",
    at: Annotated[
        str | None, typer.Option(help="the bar opened at or before this UTC time (default: last)")
    ] = None,
    tracking_uri: UriOpt = None,
    root: Annotated[Path, typer.Option(help="where an embedded MLflow store lives")] = Path("runs"),
    as_json: JsonOpt = False,
) -> None:
    """Why the meta ensemble decides what it decides at a bar: the regime and the rule that fired,
    each member's target, predicted score, weight and bound, the binding constraints, the Kelly
    inputs, the predictor and the fallback flag."""
    import pandas as pd

    from raytrader.errors import ConfigError
    from raytrader.meta.model import explain
    from raytrader.tracking import resolve_uri

    when = None
    if at is not None:
        try:
            when = pd.Timestamp(at)
        except ValueError as exc:
            raise ConfigError(f"--at {at!r} is not a time: {exc}") from exc
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    out = explain(model, data, resolve_uri(tracking_uri, str(root)), when)
    if as_json:
        typer.echo(json.dumps(out))
        return
    from rich.table import Table

    why = out["explanation"]
    con = _console()
    target = "no decision" if out["target"] is None else f"{out['target']:+.3f}"
    con.print(
        f"{out['symbol']} at {out['feature_time']}: {out['action']} (target {target}), "
        f"{out['model']} version {out['version']}"
    )
    con.print(
        f"regime {why['regime']} (confidence {why['regime_confidence']:.2f}): {why['regime_rule']}"
    )
    temperature = "inf (equal weight)" if why["temperature"] is None else why["temperature"]
    con.print(
        f"preset {why['preset']}, temperature {temperature}, fallback {why['fallback']}; "
        f"predictor {why['predictor_version']}; binding: {', '.join(why['binding']) or 'none'}"
    )
    view = Table("member", "target", "score", "weight", "status")
    for name, m in why["members"].items():
        view.add_row(
            name,
            _cell(m["target"]),
            _cell(m["score"]),
            _cell(m["weight"]),
            m["status"],
        )
    con.print(view)
    if why["kelly"] is not None:
        k = why["kelly"]
        con.print(
            f"Kelly: members' target {_cell(k['members_target'])}, edge {_cell(k['edge'])}, "
            f"variance {_cell(k['variance'])}, f {_cell(k['kelly'])} x fraction {k['fraction']}"
            + (" (bound the size)" if k["bound"] else "")
        )
