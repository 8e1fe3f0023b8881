"""The registered meta ensemble: a pyfunc of kind ``meta`` the decision service serves.

``raytrader meta build --config ...`` (:func:`build_meta`) takes registered members, pinned by
name and version as in :mod:`raytrader.ensemble`, and on ``data``:

1. reads each member's training span from its ``raytrader.data`` tag (a version without one, a
   rule with fixed parameters, trained on nothing: every bar is out of sample);
2. computes the members' targets on exactly what the service sends (each bar's features alone);
3. builds the predictor's rows (:func:`raytrader.meta.dataset.predictor_rows`: each member's
   track record only from its first out-of-sample bar) and fits the predictor on the rows whose
   labels closed by the ``fit_fraction`` point of the bars;
4. replays every bar through :class:`raytrader.meta.online.MetaStepper` — the code the service
   runs — and backtests the decisions on the kernel: ``backtest.*`` on the bars after the fit
   (out of sample for the meta-learner), ``backtest_all.*`` on all of them, with equal weight over
   the same members beside it (``equal_weight.*``);
5. registers the model with those metrics and two plots (``weights.png``: each member's weight by
   bar under the regime read then; ``equity.png``: out of sample beside equal weight and the
   asset) and points ``alias`` at it.

The model's input is the service's decision frame plus ``symbol`` and ``feature_time`` (the bar's
close): its state is per symbol and advances once per feature time. Its output is the ensemble's
(``target``, ``confidence``, ``action``, ``members_missing``, each member's target and confidence)
and ``explanation``, a JSON object per row (:mod:`raytrader.meta.online`). A symbol whose state
missed bars (a new, restarted or second replica) is first caught up from a :data:`History` (the
decision service attaches the offline store), so every replica decides as one that saw every bar.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.contract import KEY_COLUMNS
from raytrader.ensemble import (
    Ensemble,
    EnsembleConfig,
    Member,
    actions,
    decision_frame,
    time_text,
)
from raytrader.errors import ConfigError
from raytrader.meta.online import MetaSpec, MetaStepper
from raytrader.meta.predictors import Kind
from raytrader.meta.regimes import RegimeConfig
from raytrader.meta.weights import PRESETS, WeightConfig, preset
from raytrader.sim.config import SimConfig

try:  # mlflow comes with the stack/train extras, as for raytrader.registry
    from mlflow.pyfunc.model import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]  # only when mlflow is absent


#: bars of the build data stored with a version for the service's smoke decisions
SMOKE_BARS = 60


class MetaEnsembleConfig(StrictConfig):
    """``raytrader meta build --config ...`` (module docstring)."""

    name: str = Field(default="raytrader-meta", pattern=r"^[A-Za-z0-9_.-]+$")
    members: tuple[Member, ...] = Field(min_length=2)
    data: str = "goog"
    predictor: Kind = "table"
    preset: str = "balanced"
    #: overrides the preset when set
    weights: WeightConfig | None = None
    horizon: int = Field(5, ge=1)
    #: bars between drift-guard checks
    check_bars: int = Field(21, ge=1)
    drift_window: int = Field(60, ge=2)
    #: the predictor is fitted on the labels closed by this share of the bars
    fit_fraction: float = Field(0.6, gt=0.0, lt=1.0)
    hold_band: float = Field(default=0.2, ge=0.0, lt=1.0)
    regimes: RegimeConfig = Field(default_factory=RegimeConfig)
    sim: SimConfig = Field(default_factory=SimConfig)
    seed: int = 0
    alias: Literal["challenger", "champion"] | None = "challenger"
    #: where an embedded MLflow store lives (``<output_dir>/mlflow.db``: the demo's, by default)
    output_dir: str = "runs"
    tracking_uri: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MetaEnsembleConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        self.weight_config().check_feasible(len(self.members))
        if self.sim.stop_loss is not None or self.sim.take_profit is not None:
            raise ValueError(
                "the track record's prices are rebuilt from features without highs and lows: "
                "stop_loss and take_profit cannot apply"
            )
        return self

    def weight_config(self) -> WeightConfig:
        return self.weights if self.weights is not None else preset(self.preset)

    def ensemble_config(self) -> EnsembleConfig:
        """The members as an ensemble (how their files are fetched and their targets read)."""
        return EnsembleConfig(
            name=self.name,
            members=self.members,
            data=self.data,
            sim=self.sim,
            hold_band=self.hold_band,
            alias=None,
            output_dir=self.output_dir,
            tracking_uri=self.tracking_uri,
        )


#: rows of ``symbol`` with feature times strictly after ``after`` (None: from the first) and
#: before ``before``, oldest first, as decision rows (features, ``warm``, ``symbol``,
#: ``feature_time``): where a state that missed bars catches up (the service reads the offline store)
History = Callable[[str, "pd.Timestamp | None", pd.Timestamp], pd.DataFrame]


class MetaEnsemble:
    """The members (an :class:`Ensemble` reads their targets) and the stepper."""

    def __init__(self, spec: MetaSpec, members: Ensemble, history: History | None = None) -> None:
        self.spec = spec
        self.ensemble = members
        self.stepper = MetaStepper(spec)
        self.history = history
        self._lock = threading.Lock()  # one state per symbol: decisions on it take turns

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"the meta ensemble keeps a state per symbol and needs columns {missing}"
            )
        with self._lock:
            caught = self._catch_up(frame)
            out, explanations = self._step(frame)
        for i, symbol in enumerate(frame["symbol"].astype(str)):
            explanations[i]["caught_up"] = caught.pop(symbol, 0)
        out["explanation"] = [json.dumps(json_safe(e), allow_nan=False) for e in explanations]
        return out

    def _catch_up(self, frame: pd.DataFrame) -> dict[str, int]:
        """Replay, per symbol, the stored rows its state missed before the frame's first row of it
        (none without a history): how many each."""
        caught: dict[str, int] = {}
        if self.history is None:
            return caught
        times = pd.to_datetime(frame["feature_time"], utc=True)
        for symbol, t in zip(frame["symbol"].astype(str), times, strict=True):
            if symbol in caught:
                continue
            last = self.stepper.last_time(symbol)
            caught[symbol] = 0
            if last is not None and t - last <= self.spec.bar:
                continue
            rows = self.history(symbol, last, t)
            if len(rows):
                self._step(rows)
                caught[symbol] = len(rows)
        return caught

    def _step(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        decided = self.ensemble.predict(frame)
        names = self.spec.members
        t = decided[[f"{m}.target" for m in names]].to_numpy(np.float64)
        c = decided[[f"{m}.confidence" for m in names]].to_numpy(np.float64)
        symbols = frame["symbol"].astype(str).to_numpy()
        times = pd.DatetimeIndex(pd.to_datetime(frame["feature_time"], utc=True))
        columns = {name: frame[name].to_numpy(np.float64) for name in _row_inputs(frame)}
        n = len(frame)
        target = np.full(n, np.nan)
        confidence = np.zeros(n)
        explanations = []
        for i in range(n):
            row = {name: values[i] for name, values in columns.items()}
            decision, explanation = self.stepper.step(symbols[i], times[i], row, t[i], c[i])
            target[i] = decision["target"]
            confidence[i] = decision["confidence"]
            explanations.append(dict(explanation))
        out = decided.copy()
        out["target"] = target
        out["confidence"] = confidence
        out["action"] = actions(target, self.spec.hold_band)
        return out, explanations


def _row_inputs(frame: pd.DataFrame) -> list[str]:
    from raytrader.features import BAR_FEATURES_V1

    return [c for c in BAR_FEATURES_V1.names if c in frame.columns]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN or infinity: an infinite
    temperature, equal weight, reads null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class MetaEnsembleModel(PythonModel):
    """The registered meta ensemble: the spec (its fitted predictor) travels pickled with the
    model; each member's files are artifacts, as for the ensemble."""

    def __init__(self, spec: MetaSpec) -> None:
        self.spec = spec

    def load_context(self, context: Any) -> None:
        import mlflow

        config = EnsembleConfig.model_validate_json(Path(context.artifacts["config"]).read_text())
        models = [
            mlflow.pyfunc.load_model(context.artifacts[f"member_{i}"])
            for i in range(len(config.members))
        ]
        self.meta = MetaEnsemble(self.spec, Ensemble(config, models))
        self.ensemble = self.meta.ensemble  # the service lists the members from here
        self.smoke = pd.read_parquet(context.artifacts["smoke"])
        self.config = MetaEnsembleConfig.model_validate_json(
            Path(context.artifacts["meta_config"]).read_text()
        )

    def smoke_frame(self) -> pd.DataFrame:
        """The build data's last :data:`SMOKE_BARS` decision rows: a fresh state stepped through
        them decides on the last ones (what the service's validation runs)."""
        return self.smoke.copy()

    def reset(self) -> None:
        """Forget every symbol's state (after the service's smoke decisions)."""
        self.meta.stepper.reset()

    def attach_history(self, history: History | None) -> None:
        """Where a symbol's state catches up on the bars it missed (the service: the offline
        store), so that a new, restarted or second replica decides as one that saw every bar."""
        self.meta.history = history

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.meta.predict(model_input)


def load_meta(model: str, tracking_uri: str) -> tuple[str, MetaEnsembleModel]:
    """The registered meta ensemble ``model`` (``models:/<name>@<alias>`` or ``/<version>``):
    its version and the loaded model (a version of another kind is named and refused)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from raytrader import wiring
    from raytrader.contract import MODEL_URI_RE
    from raytrader.registry import own_pyfunc
    from raytrader.tracking import using_uri

    match = MODEL_URI_RE.match(model)
    if match is None:
        raise ConfigError(f"model {model!r} is not models:/<name>@<alias> or models:/<name>/<n>")
    client = wiring.mlflow_client(tracking_uri)
    try:
        found = (
            client.get_model_version_by_alias(match["name"], match["alias"])
            if match["alias"]
            else client.get_model_version(match["name"], match["version"])
        )
    except MlflowException as exc:
        raise ConfigError(f"{model}: {exc.message}") from exc
    kind = found.tags.get("raytrader.kind")
    if kind != "meta":
        raise ConfigError(
            f"{model} is version {found.version} of kind {kind!r}, not a meta ensemble"
        )
    with using_uri(tracking_uri):
        loaded = mlflow.pyfunc.load_model(f"models:/{found.name}/{found.version}")
    inner = own_pyfunc(loaded)
    if not isinstance(inner, MetaEnsembleModel):
        raise ConfigError(f"{model} does not load as a raytrader meta ensemble")
    return str(found.version), inner


def explain(
    model: str, data: str, tracking_uri: str, at: pd.Timestamp | None = None
) -> dict[str, Any]:
    """The decision of ``model`` at the last bar of ``data`` (or the last bar opened at or before
    ``at``), with its explanation: every bar up to it replayed through a fresh state, as a
    replica that starts cold replays the offline store."""
    from raytrader.data.sources import load_bars

    version, meta = load_meta(model, tracking_uri)
    bars = load_bars(data)
    if at is not None:
        bars = bars.slice(end=at + pd.Timedelta(1, "ns"))
        if not len(bars):
            raise ConfigError(f"{data} has no bar at or before {at}")
    meta.reset()
    out = meta.predict(None, keyed_frame(bars)).iloc[-1]
    meta.reset()
    return {
        "model": model,
        "version": version,
        "symbol": bars.symbol,
        "feature_time": (bars.index[-1] + bars.timeframe.delta).isoformat(),
        "target": None if math.isnan(float(out["target"])) else float(out["target"]),
        "action": str(out["action"]),
        "explanation": json.loads(out["explanation"]),
    }


def keyed_frame(bars: Any) -> pd.DataFrame:
    """Every bar of ``bars`` as the service sends it to a meta model: the decision frame with
    ``symbol`` and ``feature_time`` (the bar's close)."""
    from raytrader.registry import serving_example

    frame = decision_frame(serving_example(bars, n=len(bars)))
    frame["symbol"] = bars.symbol
    frame["feature_time"] = time_text(bars.index + bars.timeframe.delta)
    return frame


def _trainings(config: MetaEnsembleConfig, uri: str) -> tuple[pd.Timestamp | None, ...]:
    """Each member's last training bar from its ``raytrader.data`` tag (None: no tag)."""
    from raytrader import wiring
    from raytrader.meta.track_record import MemberTraining

    client = wiring.mlflow_client(uri)
    out = []
    for m in config.members:
        tag = client.get_model_version(m.name, str(m.version)).tags.get("raytrader.data")
        out.append(None if tag is None else MemberTraining.from_data_tag(m.name, tag).trained_until)
    return tuple(out)


def meta_rows(
    config: MetaEnsembleConfig,
    bars: Any,
    targets: pd.DataFrame,
    trained_until: tuple[pd.Timestamp | None, ...],
) -> pd.DataFrame:
    """The predictor's rows of ``targets`` (each member's, indexed like ``bars``): each member
    from its first out-of-sample bar (:func:`raytrader.meta.dataset.predictor_rows`)."""
    from raytrader.features.engine import compute_features
    from raytrader.meta.dataset import predictor_rows
    from raytrader.meta.regimes import detect_regimes
    from raytrader.meta.track_record import MemberTraining

    early = pd.Timestamp("1900-01-01", tz="UTC")  # untrained: every bar is out of sample
    trainings = {
        m: MemberTraining(m, early if u is None else u)
        for m, u in zip(targets.columns, trained_until, strict=True)
    }
    features = compute_features(bars)
    regimes = detect_regimes(features, bars.column("close"), config.regimes)
    return predictor_rows(bars, features, regimes, targets, trainings, config.horizon, config.sim)


def fit_spec(
    config: MetaEnsembleConfig,
    bars: Any,
    rows: pd.DataFrame,
    trained_until: tuple[pd.Timestamp | None, ...],
) -> MetaSpec:
    """The predictor fitted on the ``rows`` (:func:`meta_rows`) whose labels closed by the
    ``fit_fraction`` point of ``bars``, and everything the stepper decides with."""
    from raytrader.meta.predictors import closed_rows, feature_columns, make_predictor

    names = tuple(m.name for m in config.members)
    cut = bars.index[int(len(bars) * config.fit_fraction)]
    fitted_on = closed_rows(rows, cut)
    if len(fitted_on) < 50:
        raise ConfigError(
            f"only {len(fitted_on)} closed predictor rows by {cut.date()} to fit on; "
            "use more bars, a larger fit_fraction or members trained on fewer of them"
        )
    return MetaSpec(
        members=names,
        trained_until=trained_until,
        predictor=make_predictor(config.predictor, config.seed).fit(fitted_on),
        predictor_columns=tuple(feature_columns(rows)),
        weights=config.weight_config(),
        preset=config.preset if config.weights is None else "custom",
        sim=config.sim,
        periods_per_year=bars.periods_per_year,
        bar=bars.timeframe.delta,
        regimes=config.regimes,
        horizon=config.horizon,
        check_bars=config.check_bars,
        drift_window=config.drift_window,
        hold_band=config.hold_band,
        predictor_version=f"{config.predictor}@{cut.isoformat()}",
        fitted_until=cut,
    )


def compare(
    current: MetaSpec, candidate: MetaSpec, rows: pd.DataFrame, tolerance: float
) -> dict[str, Any]:
    """The refit gate: both predictors' rank IC on the rows after both fits whose labels have
    closed; the candidate is accepted unless it is more than ``tolerance`` worse."""
    from raytrader.meta.predictors import score_predictions

    start = max(current.fitted_until, candidate.fitted_until)
    held_out = rows[(pd.DatetimeIndex(rows["time"]) > start) & rows["label"].notna().to_numpy()]
    bars = held_out["time"].nunique()
    if bars < 2 * candidate.horizon:
        raise ConfigError(
            f"{bars} bar(s) with closed labels after {start.date()} (both fits) to compare the "
            f"refit on; the gate needs at least {2 * candidate.horizon}: update on more bars"
        )
    ics = {
        name: score_predictions(
            held_out, spec.predictor.predict(held_out), name, lags=spec.horizon
        ).ic
        for name, spec in (("current", current), ("candidate", candidate))
    }
    return {
        "accepted": not ics["candidate"] < ics["current"] - tolerance,
        "current_ic": ics["current"],
        "candidate_ic": ics["candidate"],
        "tolerance": tolerance,
        "held_out_bars": int(bars),
        "after": start.isoformat(),
    }


def build_meta(
    config: MetaEnsembleConfig, *, current: MetaSpec | None = None, tolerance: float = 0.01
) -> dict[str, Any]:
    """Fit, replay, backtest, register (and alias) a meta ensemble (module docstring). With
    ``current`` (a registered version's spec, :func:`raytrader.meta.update.update_meta`), only if
    the refit passes :func:`compare`; else nothing is registered (``version`` None)."""
    import mlflow

    from raytrader import wiring
    from raytrader.backtest.engine import run_backtest
    from raytrader.data.sources import load_bars
    from raytrader.ensemble import _member_files
    from raytrader.meta.plots import plot_meta
    from raytrader.registry import data_range, promote, register_model
    from raytrader.strategies.combine import combine
    from raytrader.tracking import resolve_uri

    uri = resolve_uri(config.tracking_uri, config.output_dir)
    bars = load_bars(config.data)
    names = tuple(m.name for m in config.members)
    ens_config = config.ensemble_config()
    with tempfile.TemporaryDirectory(prefix="raytrader-meta-") as tmp:
        files = _member_files(ens_config, uri, Path(tmp), bars.timeframe.name)
        (Path(tmp) / "config.json").write_text(ens_config.model_dump_json())
        files["config"] = str(Path(tmp) / "config.json")
        members = Ensemble(
            ens_config,
            [mlflow.pyfunc.load_model(files[f"member_{i}"]) for i in range(len(names))],
        )
        frame = keyed_frame(bars)
        decided = members.predict(frame)
        targets = pd.DataFrame(
            {m: decided[f"{m}.target"].to_numpy(np.float64) for m in names}, index=bars.index
        )
        until = _trainings(config, uri)
        rows = meta_rows(config, bars, targets, until)
        spec = fit_spec(config, bars, rows, until)
        cut = spec.fitted_until
        gate = None if current is None else compare(current, spec, rows, tolerance)
        if gate is not None and not gate["accepted"]:
            return {"name": config.name, "version": None, "alias": None, "gate": gate}
        meta = MetaEnsemble(spec, members)
        out = meta.predict(frame)
        target = pd.Series(out["target"].to_numpy(), index=bars.index)
        equal = combine(targets.to_numpy(np.float64), "average").target
        after = bars.index > cut
        table: dict[str, dict[str, float]] = {}
        curves: dict[str, pd.Series] = {}
        for label, series in (("backtest", target), ("equal_weight", pd.Series(equal, bars.index))):
            for span, part in (("", bars.head_mask(after)), ("_all", bars)):
                result = run_backtest(part, series[part.index], config.sim, name=label)
                table[label + span] = {k: float(v) for k, v in result.metrics.items()}
                if span:
                    curves["meta" if label == "backtest" else "equal weight"] = result.equity
        hold = pd.Series(1.0, index=bars.index)
        curves["buy and hold"] = run_backtest(bars, hold, config.sim, name="hold").equity
        frame.tail(SMOKE_BARS).to_parquet(Path(tmp) / "smoke.parquet")
        files["smoke"] = str(Path(tmp) / "smoke.parquet")
        (Path(tmp) / "meta.json").write_text(config.model_dump_json())
        files["meta_config"] = str(Path(tmp) / "meta.json")
        version = register_model(
            MetaEnsembleModel(spec),
            name=config.name,
            kind="meta",
            input_example=frame.tail(50).set_index(frame.index[-50:]),
            output_example=out.tail(50),
            artifacts=files,
            tags={
                "raytrader.data": data_range(config.data, bars),
                "raytrader.members": ",".join(f"{m.name}:{m.version}" for m in config.members),
                "raytrader.meta.predictor": spec.predictor_version,
                "raytrader.meta.preset": spec.preset,
                **({} if gate is None else {"raytrader.meta.gate": json.dumps(gate)}),
            },
            params={
                "predictor": config.predictor,
                "preset": config.preset,
                "horizon": config.horizon,
                "fit_fraction": config.fit_fraction,
                "members": json.dumps([m.model_dump() for m in config.members]),
            },
            metrics={f"{label}.{k}": v for label, m in table.items() for k, v in m.items()},
            tracking_uri=uri,
            root=config.output_dir,
            experiment="raytrader-meta",
            timeframe=bars.timeframe.name,
        )
    plots = plot_meta(
        out.set_axis(bars.index),
        curves,
        cut,
        Path(config.output_dir) / "meta-plots" / f"{config.name}-v{version}",
        f"{config.name} v{version} on {bars.symbol}",
    )
    run_id = wiring.mlflow_client(uri).get_model_version(config.name, str(version)).run_id
    for path in plots.values():
        wiring.mlflow_client(uri).log_artifact(run_id, str(path), "plots")
    if config.alias is not None:
        promote(config.name, version, config.alias, tracking_uri=uri, root=config.output_dir)
    return {
        "plots": {k: str(v) for k, v in plots.items()},
        "name": config.name,
        "version": version,
        "alias": config.alias,
        "gate": gate,
        "fitted_until": cut.isoformat(),
        "backtest": table,
        "decisions": out,
    }


#: the demo's meta ensemble members: rules whose state the features carry (name, strategy, params)
DEFAULT_MEMBERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("demo-meta-ma-10-50", "ma_cross", {"fast": 10, "slow": 50}),
    ("demo-meta-ma-20-50-long", "ma_cross", {"fast": 20, "slow": 50, "short": False}),
    ("demo-meta-macd", "macd", {}),
    ("demo-meta-macd-long", "macd", {"short": False}),
    ("demo-meta-hold", "buy_and_hold", {}),
)


def default_meta(tracking_uri: str, root: str | Path, data: str = "goog") -> dict[str, Any]:
    """``raytrader-meta`` at ``champion`` over :data:`DEFAULT_MEMBERS` on ``data``, built only
    when no champion of ``data``'s timeframe exists; returns its version and, when built here,
    the build's backtest."""
    from mlflow.exceptions import MlflowException

    from raytrader import wiring
    from raytrader.data.sources import load_bars
    from raytrader.ensemble import register_rules
    from raytrader.registry import TIMEFRAME_TAG

    client = wiring.mlflow_client(tracking_uri)
    timeframe = load_bars(data).timeframe.name
    try:
        champion = client.get_model_version_by_alias("raytrader-meta", "champion")
        if champion.tags.get(TIMEFRAME_TAG) == timeframe:
            return {"version": str(champion.version), "backtest": None}
    except MlflowException:
        pass
    versions = register_rules(DEFAULT_MEMBERS, tracking_uri=tracking_uri, root=root, data=data)
    config = MetaEnsembleConfig(
        members=tuple(Member(name=name, version=versions[name]) for name, _, _ in DEFAULT_MEMBERS),
        data=data,
        alias="champion",
        output_dir=str(root),
        tracking_uri=tracking_uri,
    )
    built = build_meta(config)
    return {"version": str(built["version"]), "backtest": built["backtest"]}


__all__ = [
    "DEFAULT_MEMBERS",
    "MetaEnsemble",
    "MetaEnsembleConfig",
    "MetaEnsembleModel",
    "build_meta",
    "compare",
    "default_meta",
    "explain",
    "fit_spec",
    "keyed_frame",
    "load_meta",
    "meta_rows",
]
