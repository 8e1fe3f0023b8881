"""The served model: follows a registry alias, validates a new version, swaps it in atomically.

:class:`ModelHolder` is the whole mechanism, free of Ray Serve (the plain-FastAPI benchmark and the
unit tests use it directly; the Serve model deployment wraps one per replica).

A check (:meth:`ModelHolder.check`: on an interval in a background thread, on
``POST /v1/admin/reload``, on a Serve ``reconfigure``) resolves the alias to a version. When that
differs from the one being served it downloads and loads the candidate **while the old version
keeps serving**, validates it, and only then swaps the reference (one assignment: a decision runs
entirely on the old or entirely on the new model). Validation:

1. the version's ``raytrader.feature_service`` tag is ``ensemble_v1``, its ``raytrader.timeframe``
   tag is the service's ``timeframe`` (a 1h model is never handed 1m rows), and its signature takes
   every ``bar_features_v1`` column and ``warm`` and returns ``target``, ``confidence`` and
   ``action``;
2. a smoke decision on the features stored with the version (its input example) and on the current
   online rows of the configured ``probe_symbols`` returns one row per input row with ``target`` in
   [-1, 1] and a known action, and on every **warm** row a decision from the model and from each
   of its members (NaN is "no decision": allowed while look-backs fill, a broken model on a warm
   row);
3. one-row decisions take at most ``latency_budget_ms`` (median of five).

A model that keeps a state per symbol (the meta ensemble, :mod:`raytrader.meta.model`) is
smoke-tested on the bars stored with it instead (a fresh state stepped through them must decide on
the last five), its state is cleared after validation, and it gets the offline store
(:class:`raytrader.serving.features.OfflineHistory`) to catch a symbol's state up on bars it
missed.

A candidate that fails any step is never served: the failure is counted and logged, reported on
``/v1/model`` (``last_failure``, ``failed_version``), and that version is not retried until the
alias moves again. Rolling back is moving the alias back.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raytrader import settings, wiring
from raytrader.contract import KEY_COLUMNS
from raytrader.errors import ConfigError
from raytrader.serving.config import ServiceConfig

log = logging.getLogger("raytrader.serving")

SMOKE_TRIES = 5


@dataclass(frozen=True)
class Loaded:
    """One loaded version; replaced whole, never changed."""

    name: str
    version: str
    model: Any
    members: tuple[dict[str, Any], ...]
    loaded_at: datetime
    path: str
    #: what a decision calls: raytrader's own pyfunc class directly (its input was checked against
    #: the signature when the version was validated, and the service always builds the same
    #: frame), any other model through MLflow's checked ``predict``
    predict: Any = None


@dataclass
class SwapRecord:
    swaps: int = 0
    failures: int = 0
    last_failure: str | None = None
    failed_version: str | None = None
    checked_at: datetime | None = None
    history: list[str] = field(default_factory=list)


def _members(model: Any) -> tuple[dict[str, Any], ...]:
    """Name, version and weight of each member of a raytrader ensemble (none for other models)."""
    from raytrader.registry import own_pyfunc

    inner = own_pyfunc(model)
    ensemble = getattr(inner, "ensemble", None)
    if ensemble is None:
        return ()
    # a meta ensemble's weights change by bar: each decision's explanation carries them
    moving = hasattr(inner, "attach_history")
    return tuple(
        {"name": m.name, "version": m.version, "weight": None if moving else m.weight}
        for m in ensemble.config.members
    )


def _direct(model: Any) -> Any:
    """The predict a decision calls (:func:`raytrader.registry.own_pyfunc`, else MLflow's)."""
    from raytrader.registry import own_pyfunc

    inner = own_pyfunc(model)
    if inner is not None:
        return lambda frame: inner.predict(None, frame)
    schema = model.metadata.get_input_schema()
    named = set(schema.input_names()) if schema is not None else set()
    extra = [c for c in KEY_COLUMNS if c not in named]  # MLflow would warn on every decision
    return lambda frame: model.predict(frame.drop(columns=extra, errors="ignore"))


def _prepare(model: Any, config: ServiceConfig) -> None:
    """For a model that keeps a state per symbol (the meta ensemble): drop what the smoke
    decisions left in it, and give it the offline store to catch a symbol's state up from."""
    from raytrader.registry import own_pyfunc
    from raytrader.serving.features import OfflineHistory

    inner = own_pyfunc(model)
    reset = getattr(inner, "reset", None)
    if reset is not None:
        reset()
    attach = getattr(inner, "attach_history", None)
    if attach is not None:
        attach(OfflineHistory(config))


def validate(
    model: Any,
    tags: dict[str, str],
    config: ServiceConfig,
    probe_rows: pd.DataFrame | None = None,
) -> None:
    """Raise :class:`ConfigError` saying why ``model`` must not serve (module docstring);
    ``probe_rows`` are online rows (the feature columns and ``warm``) it must also decide on."""
    from raytrader.contract import FEATURE_SERVICE
    from raytrader.ensemble import decision_frame, keyed
    from raytrader.features import BAR_FEATURES_V1, WARM_COLUMN
    from raytrader.registry import TIMEFRAME_TAG

    service = tags.get("raytrader.feature_service")
    if service != FEATURE_SERVICE:
        raise ConfigError(
            f"feature service tag is {service!r}, the service serves {FEATURE_SERVICE!r}"
        )
    timeframe = tags.get(TIMEFRAME_TAG)
    if timeframe != config.timeframe:
        raise ConfigError(
            f"the version reads {timeframe!r} bars ({TIMEFRAME_TAG} tag), the service serves "
            f"{config.timeframe!r} features"
        )
    inputs = model.metadata.get_input_schema()
    outputs = model.metadata.get_output_schema()
    if inputs is None or outputs is None:
        raise ConfigError("the version has no signature")
    missing = [c for c in (*BAR_FEATURES_V1.names, WARM_COLUMN) if c not in inputs.input_names()]
    if missing:
        raise ConfigError(f"its signature lacks {len(missing)} served column(s): {missing[:5]}")
    lacking = [c for c in ("target", "confidence", "action") if c not in outputs.input_names()]
    if lacking:
        raise ConfigError(f"its output signature lacks {lacking}")
    example = model.input_example
    if not isinstance(example, pd.DataFrame) or example.empty:
        raise ConfigError("the version stores no input example to smoke-test on")
    stateful = _stateful(model)
    if stateful is not None:
        # a state per symbol (the meta ensemble) decides once it has seen bars: its stored bars
        # in order, and a decision on the last five; probe symbols would need their history,
        # which the service attaches only to the version it serves
        smoke = stateful.smoke_frame()
        frames = [("its stored bars", decision_frame(smoke, smoke))]
        decided_from = len(smoke) - 5
    else:
        frames = [("its input example", decision_frame(example.tail(5), example.tail(5)))]
        decided_from = 0
        if probe_rows is not None and len(probe_rows):
            probes = decision_frame(keyed(probe_rows))
            frames.append((f"the online rows of {list(probe_rows.index)}", probes))
    for where, frame in frames:
        _smoke(model, frame, where, decided_from)
    one = frames[0][1].tail(1)
    took = []
    for _ in range(SMOKE_TRIES):
        t0 = time.perf_counter()
        model.predict(one)
        took.append((time.perf_counter() - t0) * 1000.0)
    median = float(np.median(took))
    if median > config.latency_budget_ms:
        raise ConfigError(
            f"a one-row decision takes {median:.1f} ms, budget {config.latency_budget_ms:g} ms"
        )


def _stateful(model: Any) -> Any | None:
    """The raytrader model inside when it keeps a state per symbol, else None."""
    from raytrader.registry import own_pyfunc

    inner = own_pyfunc(model)
    return inner if hasattr(inner, "attach_history") else None


def _smoke(model: Any, frame: pd.DataFrame, where: str, decided_from: int = 0) -> None:
    """One smoke decision on ``frame`` (see the module docstring, step 2)."""
    from raytrader.ensemble import ACTIONS

    try:
        out = model.predict(frame)
    except Exception as exc:  # any failure of the candidate is a failed validation
        raise ConfigError(f"smoke decision on {where} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, pd.DataFrame) or len(out) != len(frame):
        raise ConfigError(f"smoke decision returned {type(out).__name__}, not {len(frame)} rows")
    for col in ("target", "confidence", "action"):
        if col not in out.columns:
            raise ConfigError(f"smoke decision has no {col!r} column")
    warm = frame["warm"].to_numpy(dtype=bool)
    warm[:decided_from] = False  # rows a stateful model may still be warming up on
    columns = ["target"] + [c for c in out.columns if str(c).endswith(".target")]
    for col in columns:
        values = out[col].to_numpy(dtype=np.float64)
        if np.isinf(values).any():
            raise ConfigError(f"smoke decision on {where}: {col} is infinite")
        undecided = warm & np.isnan(values)
        if undecided.any():
            who = "the model" if col == "target" else f"member {col.removesuffix('.target')}"
            raise ConfigError(
                f"smoke decision on {where}: {who} has no decision (NaN) on "
                f"{int(undecided.sum())} warm row(s)"
            )
    target = out["target"].to_numpy(dtype=np.float64)
    confidence = out["confidence"].to_numpy(dtype=np.float64)
    decided = np.isfinite(target)
    if (np.abs(target[decided]) > 1.0).any():
        raise ConfigError("smoke decision's target is out of [-1, 1]")
    c = confidence[decided]
    if not np.isfinite(c).all() or (c < 0.0).any() or (c > 1.0).any():
        raise ConfigError("smoke decision's confidence is not in [0, 1]")
    if not set(out["action"][decided]) <= set(ACTIONS):
        raise ConfigError(
            f"smoke decision's actions {sorted(set(out['action']))} are not {ACTIONS}"
        )


class ModelHolder:
    """The served version of one registered model and the machinery to replace it."""

    def __init__(self, config: ServiceConfig, *, replica: str = "local") -> None:
        self.config = config
        self.replica = replica
        self.current: Loaded | None = None
        self.record = SwapRecord()
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the registry side ----------------------------------------------------------------------
    def _client(self) -> Any:

        return wiring.mlflow_client(self.config.tracking_uri)

    def _tracking_uri(self) -> str:
        return settings.tracking_uri(self.config.tracking_uri)

    def target(self) -> tuple[str, dict[str, str]]:
        """The version the config points at (the alias resolved) and its tags."""
        from mlflow.exceptions import MlflowException

        cfg = self.config
        client = self._client()
        try:
            if cfg.alias is not None:
                mv = client.get_model_version_by_alias(cfg.model_name, cfg.alias)
            else:
                mv = client.get_model_version(cfg.model_name, str(cfg.pinned_version))
        except MlflowException as exc:
            raise ConfigError(f"{cfg.model_uri}: {exc.message}") from exc
        return str(mv.version), dict(mv.tags)

    def _load(self, version: str) -> tuple[Any, str]:
        """The candidate loaded from its own download folder (removed when it stops serving)."""
        import tempfile

        import mlflow
        from mlflow.artifacts import download_artifacts

        from raytrader.tracking import using_uri

        folder = tempfile.mkdtemp(prefix=f"raytrader-serve-v{version}-")
        uri = self._tracking_uri()
        try:
            # models:/ URIs resolve against the process's registry URI, not the tracking_uri
            # argument; decisions never touch MLflow's globals, so setting them here is safe
            with using_uri(uri):
                path = download_artifacts(
                    artifact_uri=f"models:/{self.config.model_name}/{version}",
                    dst_path=folder,
                    tracking_uri=uri,
                )
                return mlflow.pyfunc.load_model(str(Path(path))), folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    # ---- checking and swapping ------------------------------------------------------------------
    def check(self) -> str:
        """Follow the alias once: returns ``unchanged``, ``swapped to <v>``, ``skipped <v>`` (a
        version that already failed) or ``failed <v>: <why>``. Never raises for a bad candidate."""
        with self._check_lock:
            now = datetime.now(UTC)
            self.record.checked_at = now
            try:
                version, tags = self.target()
            except ConfigError as exc:
                return self._failed(None, str(exc))
            served = self.current.version if self.current is not None else None
            if version == served:
                return "unchanged"
            if version == self.record.failed_version:
                return f"skipped {version}"
            try:  # the store's trouble, not the candidate's: not held against the version
                probes = self._probe_rows()
            except Exception as exc:
                return self._failed(
                    None, f"the probe symbols' online rows: {type(exc).__name__}: {exc}"
                )
            folder = None
            try:
                model, folder = self._load(version)
                validate(model, tags, self.config, probes)
                _prepare(model, self.config)
            except Exception as exc:  # a candidate must never take the service down
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                return self._failed(version, f"{type(exc).__name__}: {exc}")
            old = self.current
            self.current = Loaded(  # the atomic swap: one reference assignment
                name=self.config.model_name,
                version=version,
                model=model,
                members=_members(model),
                loaded_at=datetime.now(UTC),
                path=folder,
                predict=_direct(model),
            )
            _freeze()
            if old is not None:  # decisions in flight hold the old model object, not its files
                shutil.rmtree(old.path, ignore_errors=True)
            self.record.swaps += 1
            self.record.failed_version = None
            outcome = f"swapped to {version}" + (f" from {served}" if served else "")
            self.record.history.append(outcome)
            log.info("%s: %s", self.config.model_uri, outcome)
            return outcome

    def _probe_rows(self) -> pd.DataFrame | None:
        """The current online rows of the configured probe symbols that have one (a symbol the
        store has never seen is logged and left out)."""
        symbols = list(self.config.probe_symbols)
        if not symbols:
            return None
        from raytrader.serving.features import OnlineFeatures

        rows, _ = OnlineFeatures(self.config).latest(symbols)
        known = rows["event_timestamp"].notna().to_numpy()
        if not known.all():
            log.warning("probe symbols without online rows: %s", list(rows.index[~known]))
        return rows[known]

    def _failed(self, version: str | None, why: str) -> str:
        self.record.failures += 1
        self.record.last_failure = why
        if version is not None:
            self.record.failed_version = version
        kept = self.current.version if self.current else "nothing"
        log.error(
            "%s version %s rejected (serving %s): %s", self.config.model_uri, version, kept, why
        )
        return f"failed {version}: {why}"

    def retarget(self, config: ServiceConfig) -> None:
        """Follow another URI / interval from now on (Serve ``reconfigure``)."""
        self.config = config
        self.record.failed_version = None
        self._wake.set()

    # ---- the poller -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="raytrader-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.current is not None:  # the download folder goes with the holder
            shutil.rmtree(self.current.path, ignore_errors=True)

    def wake(self) -> None:
        """Check now (in the background)."""
        self._wake.set()

    @property
    def polling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _poll(self) -> None:
        while not self._stop.is_set():
            interval = self.config.poll_interval_s
            self._wake.wait(timeout=interval if interval > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # the poller must outlive any one check
                log.exception("model check failed")

    # ---- serving --------------------------------------------------------------------------------
    def decide(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, Loaded]:
        current = self.current  # one read: the whole decision uses this version
        if current is None:
            raise ModelUnavailable(self.status()["last_failure"] or "no version loaded yet")
        return current.predict(frame), current

    def status(self) -> dict[str, Any]:
        cur, rec = self.current, self.record
        return {
            "name": self.config.model_name,
            "uri": self.config.model_uri,
            "version": cur.version if cur else None,
            "loaded_at": cur.loaded_at if cur else None,
            "checked_at": rec.checked_at,
            "swaps": rec.swaps,
            "swap_failures": rec.failures,
            "last_failure": rec.last_failure,
            "failed_version": rec.failed_version,
            "members": list(cur.members) if cur else [],
            "replica": self.replica,
        }


def _freeze() -> None:
    """Move everything alive now (libraries, the loaded model) out of the garbage collector's
    reach: with ~450k tracked objects a full collection takes ~250 ms and stalls every request
    in flight; frozen, it takes under 1 ms.

    Frozen objects are never collected, so the previous freeze is undone first: the replaced
    model's reference cycles become collectable and are freed by the full collection, then
    what is alive now is frozen again. The frozen set stays the size of one loaded model plus
    the libraries however many swaps happen (tested over 20)."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelUnavailable(RuntimeError):
    """No version is loaded (the alias is missing or every candidate failed)."""
