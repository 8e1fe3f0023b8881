"""Every model as an MLflow pyfunc with one interface, registered and promoted by alias.

Interface. Input: a frame of bars in time order, one symbol — the ``bar_features_v1`` columns
and ``warm`` (what the online store serves), plus ``open, high, low, close, volume`` for models
that read prices (rule strategies), plus optional account columns ``exposure``, ``unrealized``,
``time_in_position`` (RL policies; 0 = flat when absent; time in position counted in bars).
Prices and account columns are optional in every signature. Output: one row per input row with
``target`` (position in [-1, 1], decided at that bar's close) and ``confidence`` in [0, 1].

**NaN means "no decision"**, the kernel's meaning (a NaN target keeps the previous one): a model
that cannot decide a row (its features are NaN, a rule's state is unreadable) returns a NaN target
and a NaN confidence for it, never 0 (flat). An ensemble masks such a member on that row
(:mod:`raytrader.strategies.combine`), and the decision service refuses a version that returns NaN
for a warm row.

* rule strategy + parameters: with OHLCV, targets over the given window (the window must cover
  the strategy's look-back); without, each row's held target read from its features
  (:meth:`~raytrader.strategies.base.Strategy.feature_targets`: ma_cross on SMA 10/20/50, macd
  12/26/9, buy_and_hold; other rules need the window); confidence 1 where a position is held;
* supervised pipeline: :class:`~raytrader.models.supervised.model.TrainedModel`'s targets and
  confidence;
* RL policy: the policy's most likely action from the observation the environment would build
  (features normalized with the training statistics, then the account columns); confidence is
  that action's probability.

Every version carries tags: ``raytrader.kind``, ``raytrader.feature_service`` (``ensemble_v1``),
``raytrader.timeframe`` (the bar length of the features it reads: a 1h model must never be handed
1m rows, and the decision service refuses a version of another timeframe than its own) and the
data range it was trained on. Promotion moves an alias (``challenger``, ``champion``);
registry stages are not used (deprecated in MLflow).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raytrader import wiring
from raytrader.contract import ACCOUNT_COLUMNS, FEATURE_SERVICE, OHLCV
from raytrader.errors import ConfigError

TIMEFRAME_TAG = "raytrader.timeframe"
ALIASES = ("challenger", "champion")

try:  # mlflow is an optional dependency of the library (the stack/train extras carry it)
    from mlflow.pyfunc.model import PythonModel as PyfuncBase
except ImportError:  # pragma: no cover
    PyfuncBase = object  # type: ignore[assignment,misc]  # only when mlflow is absent


def own_pyfunc(model: Any) -> Any | None:
    """The raytrader ``PythonModel`` inside a loaded pyfunc, or None for any other model.

    Callers that built the input themselves (the ensemble for its members, the decision service
    for a validated version) call its ``predict(None, frame)`` directly: MLflow's per-call schema
    enforcement costs ~1-2 ms against ~0.1 ms for the prediction."""
    try:
        inner = model.unwrap_python_model()
    except Exception:  # another flavour: no PythonModel inside
        return None
    return inner if type(inner).__module__.startswith("raytrader.") else None


def _output(target: np.ndarray, confidence: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """The interface's output: targets clipped to [-1, 1], confidences to [0, 1]; a NaN target
    (no decision) stays NaN and takes a NaN confidence."""
    t = np.clip(np.asarray(target, dtype=np.float64), -1.0, 1.0)
    c = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return pd.DataFrame({"target": t, "confidence": np.where(np.isnan(t), np.nan, c)}, index=index)


def _utc_index(index: pd.Index) -> pd.DatetimeIndex:
    """The input's bar times as UTC (serving may send them as strings, or not at all: then a
    stand-in range, since each row is predicted from its own features)."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        return index.tz_convert("UTC")
    try:
        return pd.DatetimeIndex(pd.to_datetime(index, utc=True))
    except (ValueError, TypeError):
        return pd.date_range("1970-01-01", periods=len(index), freq="s", tz="UTC")


def _require(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} input lacks {len(missing)} column(s): {missing[:5]}")


class RuleStrategyModel(PyfuncBase):
    """A registered rule strategy with fixed parameters."""

    def __init__(self, strategy: str, params: dict[str, Any]) -> None:
        from raytrader.strategies.base import make_strategy

        make_strategy(strategy, params)  # validate now, not at serving time
        self.strategy = strategy
        self.params = dict(params)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from raytrader.strategies.base import make_strategy

        strategy = make_strategy(self.strategy, self.params)
        if any(c in model_input.columns for c in OHLCV):  # a price window: all of it
            _require(model_input, OHLCV, f"rule strategy {self.strategy!r}")
            frame = model_input.loc[:, list(OHLCV)].astype(np.float64)
            t = strategy.target_positions(frame).to_numpy(dtype=np.float64)
        else:
            read = strategy.feature_targets(model_input)
            if read is None:
                raise ConfigError(
                    f"rule strategy {self.strategy!r} with {self.params} needs a price window "
                    f"({', '.join(OHLCV)}): its state cannot be read from one feature row"
                )
            t = np.asarray(read, dtype=np.float64)
        return _output(t, (t != 0).astype(np.float64), model_input.index)


class SupervisedModel(PyfuncBase):
    """A trained supervised pipeline (pickled with its config as an artifact)."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as fh:
            self.model = _cloudpickle().load(fh)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        names = [*self.model.config.feature_names, "warm"]
        _require(model_input, names, "supervised model")
        x = model_input.loc[:, names]
        x.index = _utc_index(model_input.index)  # rows are independent; the index only aligns
        return _output(self.model.predict_targets(x), self.model.confidence(x), model_input.index)


class RLPolicyModel(PyfuncBase):
    """An RLlib policy (RLModule checkpoint) with the normalizer and env config it trained on."""

    def load_context(self, context: Any) -> None:
        from ray.rllib.core.rl_module import RLModule

        from raytrader.envs import EnvConfig, FeatureNormalizer

        self.module = RLModule.from_checkpoint(context.artifacts["policy"])
        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.normalizer = FeatureNormalizer.from_dict(meta["normalizer"])
        self.env = EnvConfig.model_validate(meta["env"])
        if tuple(self.normalizer.names) != tuple(self.env.feature_names):
            raise ConfigError(
                f"RL policy artifacts disagree: the normalizer covers {len(self.normalizer.names)} "
                f"features, the environment observes {len(self.env.feature_names)} of "
                f"{self.env.feature_set}"
            )

    def observations(self, model_input: pd.DataFrame) -> np.ndarray:
        """The observation the environment would build for each row: the features normalized
        with the training statistics, then exposure, unrealized return and time in position
        (given in bars; the environment counts it as a fraction of its episode length)."""
        from raytrader.envs.trading import observation

        names = list(self.normalizer.names)
        _require(model_input, names, "RL policy")
        z = self.normalizer.transform(model_input.loc[:, names].to_numpy(dtype=np.float64))
        scale = {"time_in_position": 1.0 / self.env.episode_length}
        acct = np.column_stack(
            [
                model_input[c].to_numpy(dtype=np.float64) * scale.get(c, 1.0)
                if c in model_input.columns
                else np.zeros(len(model_input))
                for c in ACCOUNT_COLUMNS
            ]
        )
        return observation(z, acct)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from raytrader.envs.trading import action_to_target
        from raytrader.models.rl_policy import policy_outputs

        actions, confidence = policy_outputs(self.module, self.observations(model_input))
        targets = np.array([action_to_target(self.env, a) for a in actions])
        return _output(targets, confidence, model_input.index)


# ---- logging, registering, promoting ------------------------------------------------------------


def _signature(example: pd.DataFrame, output: pd.DataFrame | None = None) -> Any:
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    if output is None:
        output = _output(np.zeros(len(example)), np.zeros(len(example)), example.index)
    inferred = infer_signature(example, output)
    # prices (only rule models read them, and only as a window) and the account (RL policies;
    # flat when absent) are optional: the decision service sends one feature row per symbol
    optional = {*OHLCV, *ACCOUNT_COLUMNS}
    inputs = Schema(
        [ColSpec(c.type, c.name, required=c.name not in optional) for c in inferred.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def serving_example(bars: Any, n: int = 50, feature_set: Any = None) -> pd.DataFrame:
    """The last ``n`` bars as every model's input: OHLCV, the features (of ``feature_set``;
    default the served ``bar_features_v1``) and ``warm``, indexed by ISO-8601 UTC strings (what
    JSON requests carry). One frame fits every kind of model, so the decision service sends the
    same row to each."""
    from raytrader.features.engine import compute_features

    feats = compute_features(bars) if feature_set is None else compute_features(bars, feature_set)
    feats.attrs = {}
    both = pd.concat([bars.frame.loc[:, list(OHLCV)], feats], axis=1)
    frame: pd.DataFrame = both.iloc[-n:]
    frame.index = pd.Index(pd.DatetimeIndex(frame.index).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return frame


def example_timeframe(example: pd.DataFrame) -> str:
    """The timeframe of an input example: the most common spacing of its bar times."""
    from raytrader.data.timeframe import Timeframe

    index = _utc_index(example.index)
    if len(index) < 2 or index[0].year == 1970:  # no bar times to read it from
        raise ConfigError(
            "cannot tell the model's timeframe from its input example; pass timeframe="
        )
    return Timeframe.infer(index.sort_values(), "the model's input example").name


def data_range(spec: str, bars: Any) -> str:
    """The ``raytrader.data`` tag: the data spec and the first/last bar it covered."""
    return f"{spec} {bars.index[0].isoformat()}..{bars.index[-1].isoformat()}"


def register_model(
    model: Any,
    *,
    name: str,
    kind: str,
    input_example: pd.DataFrame,
    artifacts: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tracking_uri: str | None = None,
    root: str | Path = "runs",
    experiment: str = "raytrader-models",
    run_id: str | None = None,
    output_example: pd.DataFrame | None = None,
    timeframe: str | None = None,
) -> str:
    """Log ``model`` as a pyfunc and register it as a new version of ``name``; returns the
    version. The model goes into run ``run_id`` (the training run, which stays as it was) or a new
    run of ``experiment``. ``tags`` should name the data range the model was trained on;
    ``timeframe`` (default: the spacing of the input example's bar times) is tagged."""
    import mlflow

    from raytrader.tracking import experiment_id, using_uri

    uri, client = wiring.mlflow(tracking_uri, root)
    all_tags = {
        "raytrader.kind": kind,
        "raytrader.feature_service": FEATURE_SERVICE,
        TIMEFRAME_TAG: example_timeframe(input_example) if timeframe is None else timeframe,
        **(tags or {}),
    }
    if run_id is None:
        exp = experiment_id(client, experiment, Path(root), uri)
        start: dict[str, Any] = {"experiment_id": exp, "run_name": f"{name}-{kind}"}
    else:
        status = client.get_run(run_id).info.status
        start = {"run_id": run_id}
    with using_uri(uri), mlflow.start_run(**start, tags=all_tags):
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            artifacts=artifacts,
            signature=_signature(input_example, output_example),
            input_example=input_example.head(5),
            registered_model_name=name,
        )
    if run_id is not None:  # start_run(run_id=...) ends it FINISHED; keep what it was
        client.set_terminated(run_id, status=status)
    version = str(info.registered_model_version)
    for key, value in all_tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def _history_tag(alias: str) -> str:
    """The model tag that keeps the versions ``alias`` pointed at before (for :func:`rollback`)."""
    return f"raytrader.alias.{alias}.history"


def promote(
    name: str,
    version: str | int,
    alias: str,
    *,
    tracking_uri: str | None = None,
    root: str | Path = "runs",
) -> str | None:
    """Point ``alias`` (``challenger`` or ``champion``) of model ``name`` at ``version``; returns
    the version it pointed at before (kept in the model's alias history for :func:`rollback`)."""
    from mlflow.exceptions import MlflowException

    if alias not in ALIASES:
        raise ConfigError(f"alias must be one of {list(ALIASES)}, got {alias!r}")
    client = wiring.mlflow_client(tracking_uri, root)
    try:
        client.get_model_version(name, str(version))
        model = client.get_registered_model(name)
        previous = model.aliases.get(alias)
        if previous is not None and str(previous) != str(version):
            history = [*json.loads(model.tags.get(_history_tag(alias), "[]")), str(previous)]
            client.set_registered_model_tag(name, _history_tag(alias), json.dumps(history[-50:]))
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise ConfigError(f"model {name!r} version {version}: {exc.message}") from exc
    return None if previous is None else str(previous)


def rollback(
    name: str, alias: str, *, tracking_uri: str | None = None, root: str | Path = "runs"
) -> tuple[str, str | None]:
    """Point ``alias`` back at the version it pointed at before the last :func:`promote`;
    returns (the version it now points at, the one it pointed at). A :class:`ConfigError` when
    the alias has no earlier version."""
    from mlflow.exceptions import MlflowException

    if alias not in ALIASES:
        raise ConfigError(f"alias must be one of {list(ALIASES)}, got {alias!r}")
    client = wiring.mlflow_client(tracking_uri, root)
    try:
        model = client.get_registered_model(name)
        history = json.loads(model.tags.get(_history_tag(alias), "[]"))
        if not history:
            raise NothingToRollBack(
                f"model {name!r}: alias {alias!r} has no earlier version to roll back to"
            )
        target, current = history.pop(), model.aliases.get(alias)
        client.get_model_version(name, target)
        client.set_registered_model_alias(name, alias, target)
        client.set_registered_model_tag(name, _history_tag(alias), json.dumps(history))
    except MlflowException as exc:
        raise ConfigError(f"model {name!r}: {exc.message}") from exc
    return target, None if current is None else str(current)


class NothingToRollBack(ConfigError):
    """An alias without an earlier version."""


def list_models(
    *, tracking_uri: str | None = None, root: str | Path = "runs"
) -> list[dict[str, Any]]:
    """Every registered model: name, latest version, aliases, kind, and its versions (number,
    MLflow run, creation time in UTC, tags)."""
    client = wiring.mlflow_client(tracking_uri, root)
    out = []
    for m in client.search_registered_models():
        versions = client.search_model_versions(f"name='{m.name}'")
        latest = max((int(v.version) for v in versions), default=0)
        kind = next(
            (v.tags.get("raytrader.kind", "") for v in versions if int(v.version) == latest), ""
        )
        described = [
            {
                "version": str(v.version),
                "run_id": v.run_id or None,
                "created_at": (
                    datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat()
                    if v.creation_timestamp
                    else None
                ),
                "tags": dict(v.tags),
            }
            for v in sorted(versions, key=lambda v: int(v.version), reverse=True)
        ]
        out.append({
            "name": m.name, "latest": latest, "aliases": dict(m.aliases),
            "kind": kind, "versions": described,
        })  # fmt: skip
    return sorted(out, key=lambda r: r["name"])


def rl_artifacts(checkpoint: str | Path, normalizer: Any, env_config: Any) -> dict[str, str]:
    """Artifacts of :class:`RLPolicyModel` from a :func:`raytrader.training.rl.train_rl`
    checkpoint: the RLModule and a JSON with the normalizer and the env config."""
    from raytrader.models.rl_policy import policy_dir

    policy = policy_dir(checkpoint)
    if not policy.is_dir():
        raise ConfigError(f"{checkpoint}: no RLModule checkpoint at {policy}")
    meta = Path(tempfile.mkdtemp(prefix="raytrader-rl-")) / "meta.json"
    meta.write_text(
        json.dumps({"normalizer": normalizer.to_dict(), "env": env_config.model_dump(mode="json")})
    )
    return {"policy": str(policy.resolve()), "meta": str(meta)}


def supervised_artifacts(model: Any) -> dict[str, str]:
    """Artifacts of :class:`SupervisedModel`: the trained model, pickled by value."""
    path = Path(tempfile.mkdtemp(prefix="raytrader-sup-")) / "model.pkl"
    with open(path, "wb") as fh:
        _cloudpickle().dump(model, fh)
    return {"model": str(path)}


def _cloudpickle() -> Any:
    """cloudpickle, imported untyped (it ships no type information)."""
    import importlib

    return importlib.import_module("cloudpickle")
