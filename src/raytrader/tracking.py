"""MLflow tracking: the stack's tracking server when it is up, an embedded SQLite store otherwise.

Where runs go, in order: an explicit ``tracking_uri``; ``MLFLOW_TRACKING_URI`` (``raytrader stack
env`` exports the stack's server); else, in local mode, an embedded SQLite store
``<root>/mlflow.db`` with its artifacts under ``<root>/mlartifacts`` (both created on first use;
the registry works on it too). Cluster mode has no such fallback (:mod:`raytrader.settings`).

MLflow is imported lazily: the batch and streaming paths never pay for it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from raytrader import settings, wiring
from raytrader.errors import ConfigError

#: the SQLite tracking URI under a root directory
embedded_uri = settings.embedded_tracking_uri


def resolve_uri(tracking_uri: str | None, root: str | os.PathLike[str]) -> str:
    """``tracking_uri`` if given, else ``MLFLOW_TRACKING_URI``, else (local mode) the embedded
    SQLite store under ``root`` (:func:`raytrader.settings.tracking_uri`)."""
    return settings.tracking_uri(tracking_uri, root)


@contextlib.contextmanager
def using_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``mlflow.start_run``, ``log_model``) pointed at ``uri`` for the block.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` into this process's
    environment; both are put back afterwards, so one run's store never leaks into the next."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        unset: Any = None  # set_tracking_uri(None) clears both; its annotation omits None
        mlflow.set_tracking_uri(before if before is not None else unset)


def experiment_id(client: Any, name: str, root: Path, uri: str) -> str:
    """The id of experiment ``name``, created if missing (with an artifact root under ``root``
    for the embedded SQLite store)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    # a server has its own artifact root; the embedded store gets one next to its database
    if uri.startswith("sqlite:"):
        location = (root.resolve() / "mlartifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def log_run(
    *,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    root: str | os.PathLike[str] = "runs",
) -> tuple[str, str]:
    """Record one finished run (params, final metrics, tags, a folder of artifacts).

    Non-finite metrics are skipped (MLflow refuses NaN on some backends) and listed in the tag
    ``raytrader.skipped_metrics``. Returns ``(tracking URI, run id)``; an unreachable server is a
    :class:`ConfigError` naming the URI.
    """
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(tracking_uri, root)
    root_path = Path(root)
    if uri.startswith("sqlite:"):
        root_path.mkdir(parents=True, exist_ok=True)
    client = wiring.mlflow_client(uri)
    try:
        exp = experiment_id(client, experiment, root_path, uri)
        run = client.create_run(exp, run_name=run_name, tags=dict(tags or {}))
    except MlflowException as exc:
        raise ConfigError(f"MLflow at {uri}: {exc.message}") from exc
    run_id = run.info.run_id
    status = "FAILED"
    try:
        for key, value in params.items():
            client.log_param(run_id, key, value)
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        skipped = sorted(set(metrics) - set(finite))
        for key, value in finite.items():
            client.log_metric(run_id, key, value)
        if skipped:
            client.set_tag(run_id, "raytrader.skipped_metrics", ",".join(skipped))
        if artifacts is not None:
            client.log_artifacts(run_id, str(artifacts))
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return uri, run_id


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow parameters: dotted keys, values as strings (≤ 500 chars)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:500]
    return out


__all__ = ["embedded_uri", "experiment_id", "flat_params", "log_run", "resolve_uri", "using_uri"]
