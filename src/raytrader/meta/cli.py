"""``raytrader meta``: the regime path of a dataset, and the evaluation against the baselines."""

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
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
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
    for spec in data:
        bars = load_bars(spec)
        result = study(bars, cfg, progress=(con.log if con else None))
        tables = result.tables
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
                    "dsr",
                    "spa_p",
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
    if out is not None:
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(results))


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
