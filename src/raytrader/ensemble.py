"""The ensemble: registered models pinned by name and version, combined into one decision.

An ensemble is itself a registered MLflow pyfunc (kind ``ensemble``) with the registry's one
interface (:mod:`raytrader.registry`): the serving frame in, one row per input row out. Each
member model's files are copied into the ensemble's artifacts when it is built, so the ensemble
keeps working if a member version is later deleted or its alias moves.

Member targets ``t_i`` and confidences ``c_i`` are combined with the members' weights ``w_i`` by
:mod:`raytrader.strategies.combine` (the one semantics the parallel runner's ensemble uses too):
a member whose target is NaN is **missing** on that row (no decision: it broke, its features were
NaN) and is masked, the present members' weights renormalized:

``weighted``
    ``target = Σ w_i t_i / Σ w_i``, ``confidence = Σ w_i c_i / Σ w_i`` over the present members.
``average``
    the same with every weight 1.
``voting``
    each present member votes ``sign(t_i)`` with its weight; the side with the largest total wins
    (a tie is ``0``); ``target`` is the winning side, ``confidence`` its share of the present
    weight.

A row with every member missing has no decision: target NaN, confidence 0, action ``keep``.

``action`` is ``buy`` when ``target > hold_band``, ``sell`` when ``target < -hold_band``, ``keep``
when the target is NaN (no decision: keep your current position), else ``hold``. The output also
carries ``members_missing`` (how many members were missing on the row) and every member's target
and confidence (``<name>.target``, ``<name>.confidence``; NaN for a missing member).

``build_ensemble`` checks each member exists, backtests the ensemble and each member on the kernel
over ``data`` (every member sees what the service sends, :func:`decision_frame`: each bar's
features alone, so a rule member must be readable from one row, and RL members see a flat
account, as a caller that sends no position gets), registers the ensemble with those metrics, and can point an
alias at it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raytrader import wiring
from raytrader.config import StrictConfig
from raytrader.contract import ACCOUNT_COLUMNS, FEATURE_SERVICE, KEY_COLUMNS
from raytrader.errors import ConfigError
from raytrader.registry import own_pyfunc
from raytrader.sim.config import SimConfig
from raytrader.strategies.combine import Combined, Method, combine

try:  # mlflow comes with the stack/train extras, as for raytrader.registry
    from mlflow.pyfunc.model import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]  # only when mlflow is absent

Combine = Method
#: ``keep``: no decision (every member missing), keep the current position
ACTIONS = ("sell", "hold", "buy", "keep")


class Member(StrictConfig):
    """One registered model version and its weight."""

    name: str = Field(min_length=1)
    version: int = Field(ge=1)
    weight: float = Field(default=1.0, gt=0.0)


class EnsembleConfig(StrictConfig):
    """``raytrader ensemble build --config ...`` (module docstring)."""

    name: str = Field(default="raytrader-ensemble", pattern=r"^[A-Za-z0-9_.-]+$")
    members: tuple[Member, ...] = Field(min_length=1)
    combine: Combine = "weighted"
    hold_band: float = Field(default=0.2, ge=0.0, lt=1.0)
    feature_service: str = FEATURE_SERVICE
    #: bars the ensemble is backtested on before it is registered
    data: str = "goog"
    sim: SimConfig = Field(default_factory=SimConfig)
    #: point this alias at the new version (none: register only)
    alias: Literal["challenger", "champion"] | None = "challenger"
    output_dir: str = "runs/ensemble"
    tracking_uri: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EnsembleConfig:
        names = [m.name for m in self.members]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"a model may be a member once, {doubled} repeat")
        if self.feature_service != FEATURE_SERVICE:
            raise ValueError(f"the only feature service is {FEATURE_SERVICE!r}")
        return self


def decision_frame(frame: pd.DataFrame, account: pd.DataFrame | None = None) -> pd.DataFrame:
    """What the decision service sends the ensemble: each row's ``bar_features_v1`` values and
    ``warm`` (one online-store row per symbol, no price window), the account columns
    ``exposure``, ``unrealized``, ``time_in_position`` (0 = flat unless ``account`` has them), and
    ``symbol`` and ``feature_time`` where ``frame`` has them."""
    from raytrader.features import BAR_FEATURES_V1, WARM_COLUMN

    names = [*BAR_FEATURES_V1.names, WARM_COLUMN]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ConfigError(f"decision input lacks {len(missing)} column(s): {missing[:5]}")
    out = frame.loc[:, names].copy()
    out[WARM_COLUMN] = out[WARM_COLUMN].astype(bool)
    for col in ACCOUNT_COLUMNS:
        given = account is not None and col in account.columns
        out[col] = account[col].to_numpy(np.float64) if given else 0.0  # type: ignore[index]
    for col in KEY_COLUMNS:  # the symbol and feature time travel along when the rows name them
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
    return out


def keyed(rows: pd.DataFrame) -> pd.DataFrame:
    """Online-store rows (indexed by symbol, ``event_timestamp`` the bar close) with
    :data:`~raytrader.contract.KEY_COLUMNS` added, as the decision service sends them."""
    return rows.assign(
        symbol=rows.index.astype(str), feature_time=time_text(rows["event_timestamp"])
    )


def time_text(times: Any) -> np.ndarray:
    """Bar times as ISO-8601 UTC text, how a decision row carries its ``feature_time`` (MLflow's
    signatures take no timezone-aware times)."""
    index = pd.DatetimeIndex(times)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return np.asarray(index.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), dtype=object)


def actions(target: np.ndarray, hold_band: float) -> np.ndarray:
    """``buy`` / ``sell`` / ``hold`` per target, ``keep`` where it is NaN (no decision)."""
    t = np.asarray(target, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        decided = np.where(t > hold_band, "buy", np.where(t < -hold_band, "sell", "hold"))
    return np.where(np.isnan(t), "keep", decided)


def _input_names(model: Any) -> list[str] | None:
    schema = getattr(getattr(model, "metadata", None), "get_input_schema", lambda: None)()
    return None if schema is None else list(schema.input_names())


class Ensemble:
    """Loaded member pyfuncs and how to combine them (the pyfunc's working part)."""

    def __init__(self, config: EnsembleConfig, models: list[Any]) -> None:
        self.config = config
        self.models = models
        self.weights = np.array([m.weight for m in config.members])
        self.names = [m.name for m in config.members]
        # each member gets the columns its signature names (all of them when it has none)
        self.columns = [_input_names(m) for m in models]
        # raytrader's own pyfuncs are called directly: the ensemble's input was already checked
        # against its signature (the union of the members')
        self.direct = [own_pyfunc(m) for m in models]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        outs = []
        for member, model, columns, direct in zip(
            self.config.members, self.models, self.columns, self.direct, strict=True
        ):
            try:
                given = (
                    frame if columns is None else frame.loc[:, [c for c in columns if c in frame]]
                )
                outs.append(direct.predict(None, given) if direct else model.predict(given))
            except Exception as exc:  # a member's own validation error, named for the caller
                why = str(exc)  # MLflow's schema errors quote the whole input first
                why = why.rsplit("Error: ", 1)[-1] if "Failed to enforce schema" in why else why
                raise ConfigError(f"member {member.name} v{member.version}: {why}") from exc
        t = np.column_stack([o["target"].to_numpy(dtype=np.float64) for o in outs])
        c = np.column_stack([o["confidence"].to_numpy(dtype=np.float64) for o in outs])
        done = self.combine(t, c)
        out: dict[str, Any] = {
            "target": done.target,
            "confidence": done.confidence,
            "action": actions(done.target, self.config.hold_band),
            "members_missing": done.members_missing,
        }
        for i, member in enumerate(self.config.members):
            out[f"{member.name}.target"] = t[:, i]
            out[f"{member.name}.confidence"] = np.where(done.missing[:, i], np.nan, c[:, i])
        return pd.DataFrame(out, index=frame.index)

    def combine(self, targets: np.ndarray, confidences: np.ndarray) -> Combined:
        """The members' ``(rows, members)`` targets and confidences combined (module docstring)."""
        return combine(
            targets,
            self.config.combine,
            weights=self.weights,
            confidences=confidences,
            names=self.names,
        )


class EnsembleModel(PythonModel):
    """The registered ensemble: its config and each member's copied model files as artifacts."""

    def load_context(self, context: Any) -> None:
        import mlflow

        config = EnsembleConfig.model_validate_json(Path(context.artifacts["config"]).read_text())
        models = [
            mlflow.pyfunc.load_model(context.artifacts[f"member_{i}"])
            for i in range(len(config.members))
        ]
        self.ensemble = Ensemble(config, models)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.ensemble.predict(model_input)


def _member_files(
    config: EnsembleConfig, uri: str, into: Path, timeframe: str | None = None
) -> dict[str, str]:
    """Each member's model directory downloaded under ``into`` (a missing one is named); with
    ``timeframe``, a member that reads other bars is refused."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from raytrader.registry import TIMEFRAME_TAG
    from raytrader.tracking import using_uri

    client = wiring.mlflow_client(uri)
    files: dict[str, str] = {}
    for i, m in enumerate(config.members):
        try:
            found = client.get_model_version(m.name, str(m.version))
            read = found.tags.get(TIMEFRAME_TAG)
            if timeframe is not None and read != timeframe:
                raise ConfigError(
                    f"member {m.name} version {m.version} reads {read!r} bars ({TIMEFRAME_TAG}); "
                    f"the ensemble is built on {timeframe!r} bars"
                )
            with using_uri(uri):  # models:/ URIs resolve against the global registry URI
                path = download_artifacts(
                    artifact_uri=f"models:/{m.name}/{m.version}",
                    dst_path=str(into / f"member_{i}"),
                    tracking_uri=uri,
                )
        except MlflowException as exc:
            raise ConfigError(f"member {m.name} version {m.version}: {exc.message}") from exc
        files[f"member_{i}"] = path
    return files


def build_ensemble(config: EnsembleConfig) -> dict[str, Any]:
    """Check, backtest, register (and alias) an ensemble; returns its version and metrics."""
    import mlflow

    from raytrader.backtest.engine import run_backtest
    from raytrader.data.sources import load_bars
    from raytrader.registry import data_range, promote, register_model, serving_example
    from raytrader.tracking import resolve_uri

    uri = resolve_uri(config.tracking_uri, config.output_dir)
    bars = load_bars(config.data)
    with tempfile.TemporaryDirectory(prefix="raytrader-ensemble-") as tmp:
        files = _member_files(config, uri, Path(tmp), bars.timeframe.name)
        (Path(tmp) / "config.json").write_text(config.model_dump_json())
        files["config"] = str(Path(tmp) / "config.json")
        members = [files[f"member_{i}"] for i in range(len(config.members))]
        ensemble = Ensemble(config, [mlflow.pyfunc.load_model(path) for path in members])
        # backtested on exactly what the service sends: features only, one row at a time
        frame = decision_frame(serving_example(bars, n=len(bars)))
        decided = ensemble.predict(frame)
        columns = {"ensemble": "target"} | {m.name: f"{m.name}.target" for m in config.members}
        table: dict[str, dict[str, float]] = {}
        for label, column in columns.items():
            series = pd.Series(decided[column].to_numpy(), index=bars.index)
            result = run_backtest(bars, series, config.sim, name=label)
            table[label] = {k: float(v) for k, v in result.metrics.items()}
        version = register_model(
            EnsembleModel(),
            name=config.name,
            kind="ensemble",
            input_example=frame.tail(50),
            output_example=decided.tail(50),
            artifacts=files,
            tags={
                "raytrader.data": data_range(config.data, bars),
                "raytrader.members": ",".join(f"{m.name}:{m.version}" for m in config.members),
                "raytrader.combine": config.combine,
            },
            params={
                "combine": config.combine,
                "hold_band": config.hold_band,
                "members": json.dumps([m.model_dump() for m in config.members]),
            },
            metrics={f"backtest.{k}": v for k, v in table["ensemble"].items()},
            tracking_uri=uri,
            root=config.output_dir,
            experiment="raytrader-ensembles",
            timeframe=bars.timeframe.name,
        )
    if config.alias is not None:
        promote(config.name, version, config.alias, tracking_uri=uri, root=config.output_dir)
    return {"name": config.name, "version": version, "alias": config.alias, "backtest": table}


#: the demo's default ensemble: rules whose state the features carry (name, strategy, params, weight)
DEFAULT_MEMBERS: tuple[tuple[str, str, dict[str, Any], float], ...] = (
    ("demo-ma-cross", "ma_cross", {"fast": 10, "slow": 50}, 2.0),
    ("demo-macd", "macd", {}, 1.0),
)


def register_rules(
    rules: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    tracking_uri: str,
    root: str | Path,
    data: str = "goog",
) -> dict[str, int]:
    """Register each ``(name, strategy, params)`` as a rule pyfunc on ``data``'s timeframe unless
    ``name`` has a version of that timeframe already; returns each name's newest such version."""

    from raytrader.data.sources import load_bars
    from raytrader.registry import TIMEFRAME_TAG, RuleStrategyModel, register_model, serving_example

    client = wiring.mlflow_client(tracking_uri)
    bars = load_bars(data)
    timeframe = bars.timeframe.name
    example = None
    versions: dict[str, int] = {}
    for name, strategy, params in rules:
        found = client.search_model_versions(f"name='{name}'")
        version = max(
            (int(v.version) for v in found if v.tags.get(TIMEFRAME_TAG) == timeframe), default=0
        )
        if not version:
            example = serving_example(bars) if example is None else example
            model = RuleStrategyModel(strategy, params)
            version = int(
                register_model(
                    model,
                    name=name,
                    kind="rule",
                    input_example=example,
                    tracking_uri=tracking_uri,
                    root=root,
                    timeframe=timeframe,
                )
            )
        versions[name] = version
    return versions


def default_ensemble(tracking_uri: str, root: str | Path, data: str = "goog") -> str:
    """``raytrader-ensemble`` at ``champion`` from :data:`DEFAULT_MEMBERS` on ``data``, built
    only when no champion of ``data``'s timeframe exists; returns the champion's version."""
    from mlflow.exceptions import MlflowException

    from raytrader.data.sources import load_bars
    from raytrader.registry import TIMEFRAME_TAG

    client = wiring.mlflow_client(tracking_uri)
    timeframe = load_bars(data).timeframe.name
    try:
        champion = client.get_model_version_by_alias("raytrader-ensemble", "champion")
        if champion.tags.get(TIMEFRAME_TAG) == timeframe:
            return str(champion.version)
    except MlflowException:
        pass
    rules = [(name, strategy, params) for name, strategy, params, _ in DEFAULT_MEMBERS]
    versions = register_rules(rules, tracking_uri=tracking_uri, root=root, data=data)
    members = tuple(
        Member(name=name, version=versions[name], weight=w) for name, _, _, w in DEFAULT_MEMBERS
    )
    cfg = EnsembleConfig(
        members=members,
        data=data,
        alias="champion",
        output_dir=str(root),
        tracking_uri=tracking_uri,
    )
    return str(build_ensemble(cfg)["version"])


__all__ = [
    "ACTIONS",
    "Ensemble",
    "EnsembleConfig",
    "EnsembleModel",
    "Member",
    "actions",
    "build_ensemble",
    "combine",
    "decision_frame",
    "default_ensemble",
    "keyed",
    "register_rules",
]
