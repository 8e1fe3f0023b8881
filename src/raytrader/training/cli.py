"""``raytrader train rl|supervised``, ``raytrader tune`` and ``raytrader models list|promote``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

train_app = typer.Typer(
    help="Train models from a config file (YAML or JSON).", no_args_is_help=True
)
models_app = typer.Typer(help="The MLflow model registry: list, promote.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", help="the run's config file (YAML or JSON)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _console() -> Any:
    from rich.console import Console  # lazily: the CLI starts without importing rich

    return Console()


def _progress(unit: str, quiet: bool) -> Any:
    """A Rich progress bar counting ``unit``s (silent with ``--json``)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
        TimeElapsedColumn(),
        console=_console(),
        disable=quiet,
    )


@train_app.command("rl")
def train_rl_cmd(
    config: ConfigOpt,
    evaluate: Annotated[bool, typer.Option(help="evaluate on the held-out split")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train (or resume) an RLlib agent on the trading environment."""
    from raytrader.config import load_config
    from raytrader.models.rl_policy import greedy_policy
    from raytrader.training.rl import RLConfig, train_rl
    from raytrader.training.rl import evaluate as evaluate_policy

    cfg = load_config(config, RLConfig)
    with _progress("iterations", as_json) as progress:
        task = progress.add_task(f"{cfg.algo} iterations", total=cfg.iterations)

        def step(i: int, row: dict[str, float]) -> None:
            progress.update(
                task,
                completed=i,
                description=f"{cfg.algo} return {row['episode_return_mean']:+.3f}",
            )

        result = train_rl(cfg, on_iteration=step)
    summary: dict[str, object] = {
        "iterations": result.iterations,
        "resumed_from": result.resumed_from,
        "checkpoint": result.checkpoint,
    }
    if evaluate and result.checkpoint is not None:
        summary["evaluation"] = evaluate_policy(
            cfg, greedy_policy(result.checkpoint), mlflow_run=result.mlflow_run
        )
    summary["mlflow_run"] = result.mlflow_run
    if cfg.register_as is not None:
        from raytrader.training.rl import register_policy

        summary["registered_version"] = register_policy(cfg, result)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_evaluation(summary)


def _print_evaluation(summary: dict[str, object]) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"checkpoint: {summary['checkpoint']} (resumed from {summary['resumed_from']})")
    table_data = summary.get("evaluation")
    if not isinstance(table_data, dict):
        return
    t = Table(title="held-out split (kernel backtest, costs included)")
    for c in ("", "total return", "sharpe", "max drawdown", "trades"):
        t.add_column(c, justify="right" if c else "left")
    for name, m in table_data.items():
        t.add_row(
            name,
            f"{m['total_return']:+.2%}",
            f"{m['sharpe']:.2f}",
            f"{m['max_drawdown']:.2%}",
            f"{int(m.get('num_trades', 0))}",
        )
    con.print(t)


@train_app.command("supervised")
def train_supervised_cmd(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Train analyst/tactician classifiers in parallel (walk-forward validated)."""
    from raytrader.config import load_config
    from raytrader.training.supervised import SupervisedRunConfig, run

    cfg = load_config(config, SupervisedRunConfig)
    with _progress("models", as_json) as progress:
        task = progress.add_task("training (Ray tasks)", total=len(cfg.models))

        def done(row: dict[str, object]) -> None:
            progress.update(task, advance=1, description=f"done: {row['model']}")

        rows = run(cfg, on_model=done)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    t = Table(title="walk-forward validation (mean ± std over folds)")
    for c in ("model", "folds", "accuracy", "f1", "baseline", "oos sharpe", "version"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            str(r["model"]),
            str(r["folds"]),
            f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}",
            f"{r['f1_mean']:.3f} ± {r['f1_std']:.3f}",
            f"{r.get('majority_baseline_mean', float('nan')):.3f}",
            f"{r.get('oos_sharpe', float('nan')):.2f}",
            str(r.get("registered_version", "-")),
        )
    _console().print(t)


def tune_cmd(
    config: ConfigOpt,
    restore: Annotated[bool, typer.Option(help="resume an interrupted search")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search rule, supervised or RL parameters with Ray Tune (ASHA + Optuna), logged to MLflow."""
    from raytrader.config import load_config
    from raytrader.training.tune import SearchConfig, run_search

    cfg = load_config(config, SearchConfig)
    if as_json:
        typer.echo(json.dumps(run_search(cfg, restore=restore)))
        return
    con = _console()
    budget = f"{cfg.num_samples} trials" + (
        f" or {cfg.time_budget_s:.0f} s" if cfg.time_budget_s else ""
    )
    with con.status(f"searching {cfg.target} {cfg.name!r}: {budget}, {cfg.scheduler} scheduler"):
        summary = run_search(cfg, restore=restore)
    _print_search(cfg.name, cfg.target, summary, cfg.register_as)


def _span(span: dict[str, Any] | None) -> str:
    if not span or "skipped" in span:
        return "none"
    return f"bars {span['start_bar']}..{span['end_bar']} ({span['start']} → {span['end']})"


def _print_search(
    name: str, target: str, summary: dict[str, Any], register_as: str | None = None
) -> None:
    """The search summary as two tables: what was selected and how honest its number is, then
    the one holdout evaluation next to buy-and-hold."""
    from rich.markup import escape
    from rich.table import Table

    con = _console()
    dsr = summary["deflated_sharpe"]
    n = dsr["trials"]
    t = Table(title=f"search {name} ({target})", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row(
        "trials",
        f"{summary['trials']}: {summary['completed']} completed, {summary['stopped_early']} "
        f"stopped early, {summary['no_trades']} never traded, {summary['invalid']} invalid, "
        f"{summary['errors']} errors",
    )
    params = ", ".join(f"{k}={v}" for k, v in summary["best_params"].items())
    t.add_row("best params", escape(params))
    t.add_row(
        "best validation Sharpe",
        f"{summary['best_validation_sharpe']:.3f} (annualized, mean over the "
        f"{summary['best_traded_windows']}/{summary['windows']} windows it traded in; the max "
        f"over {summary['completed']} completed trials: biased upward)",
    )
    t.add_row(
        "trial Sharpe variance",
        f"{dsr['trial_sharpe_variance']:.3g} per-bar Sharpe² (std "
        f"{dsr['trial_sharpe_std_annualized']:.2f} annualized) over {dsr['trials_with_sharpe']} "
        "trials that traded",
    )
    t.add_row(
        "deflated Sharpe ratio",
        f"{dsr['dsr']:.3f} = P(true Sharpe > {dsr['expected_max_sharpe_per_bar']:.4f}/bar "
        f"= {dsr['expected_max_sharpe_annualized']:.2f} annualized, the expected best of {n} "
        f"trials without skill); best: {dsr['sharpe_per_bar']:.4f}/bar over "
        f"{dsr['observations']} bars, skew {dsr['skewness']:.2f}, kurtosis {dsr['kurtosis']:.2f}",
    )
    t.add_row("selection", _span(summary["selection"]))
    t.add_row("holdout", _span(summary["holdout"]))
    if "registered_version" in summary:
        t.add_row("registered", f"{register_as} version {summary['registered_version']}")
    t.add_row("results", escape(summary["path"]))
    con.print(t)
    holdout = summary["holdout"]
    if "skipped" in holdout:
        con.print(f"holdout not scored: {escape(holdout['skipped'])}")
        return
    h = Table(title="holdout, scored once after the search (kernel backtest, costs included)")
    for c in ("", "total return", "sharpe", "max drawdown", "trades", "exposure"):
        h.add_column(c, justify="right" if c else "left")
    for label, key in (("best config", "best"), ("buy and hold", "buy_and_hold")):
        m = holdout[key]
        h.add_row(
            label,
            f"{m['total_return']:+.2%}",
            f"{m['sharpe']:.2f}",
            f"{m['max_drawdown']:.2%}",
            f"{int(m['num_trades'])}",
            f"{m['exposure']:.0%}",
        )
    con.print(h)
    if holdout.get("no_trades"):
        con.print("the best config did not trade on the holdout")
    if "note" in holdout:
        con.print(f"holdout: {holdout['note']}")


@models_app.command("list")
def models_list_cmd(as_json: JsonOpt = False) -> None:
    """Registered models with their latest version and aliases."""
    from raytrader.registry import list_models

    rows = list_models()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    t = Table(title="registered models")
    for c in ("name", "kind", "latest", "aliases"):
        t.add_column(c)
    for r in rows:
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(r["aliases"].items()))
        t.add_row(r["name"], r["kind"], str(r["latest"]), aliases or "-")
    _console().print(t)


@models_app.command("promote")
def models_promote_cmd(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Argument(help="model version")],
    alias: Annotated[str, typer.Option(help="challenger or champion")] = "champion",
) -> None:
    """Point an alias at a version (the serving deployment follows the alias)."""
    from raytrader.registry import promote

    previous = promote(name, version, alias)
    typer.echo(f"{name}@{alias} -> version {version}" + (f" (was {previous})" if previous else ""))


@models_app.command("rollback")
def models_rollback_cmd(
    name: Annotated[str, typer.Argument(help="registered model name")],
    alias: Annotated[str, typer.Option(help="challenger or champion")] = "champion",
) -> None:
    """Point an alias back at the version it pointed at before its last promotion."""
    from raytrader.registry import rollback

    now, was = rollback(name, alias)
    typer.echo(f"{name}@{alias} -> version {now} (was {was})")


ensemble_app = typer.Typer(
    help="Ensembles of registered models: build (backtest + register).", no_args_is_help=True
)


@ensemble_app.command("build")
def ensemble_build_cmd(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Pin member model versions, backtest the ensemble on the kernel, register it."""
    from raytrader.config import load_config
    from raytrader.ensemble import EnsembleConfig, build_ensemble

    cfg = load_config(config, EnsembleConfig)
    with _console().status(f"building {cfg.name} from {len(cfg.members)} members", spinner="dots"):
        summary = build_ensemble(cfg)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.table import Table

    t = Table(title=f"{cfg.name} version {summary['version']} ({cfg.combine}), {cfg.data} backtest")
    for c in ("", "weight", "total return", "sharpe", "max drawdown", "trades"):
        t.add_column(c, justify="right" if c else "left")
    weights = {m.name: f"{m.weight:g}" for m in cfg.members}
    for name, m in summary["backtest"].items():
        t.add_row(
            name,
            weights.get(name, ""),
            f"{m['total_return']:+.2%}",
            f"{m['sharpe']:.2f}",
            f"{m['max_drawdown']:.2%}",
            f"{int(m.get('num_trades', 0))}",
        )
    _console().print(t)
    if summary["alias"]:
        _console().print(f"alias {summary['alias']} -> version {summary['version']}")
