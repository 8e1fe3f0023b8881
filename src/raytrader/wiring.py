"""Where raytrader's processes get their clients: MLflow, Ray, Feast and Kafka, each built from
:mod:`raytrader.settings` (so an unset setting is the local default or, in cluster mode, an
error naming it) and nowhere else.

The decision service's replicas, the feature consumer, training, search, the ensemble and the
registry helpers all connect through these functions; none of them imports the local stack
(``raytrader.stack``), which only writes settings (``make lint`` enforces both).

Heavy clients are imported when first asked for: the batch paths never pay for MLflow or Ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from raytrader import settings
from raytrader.errors import ConfigError, RaytraderError

if TYPE_CHECKING:
    from feast import FeatureStore
    from mlflow.tracking import MlflowClient

# glibc serves arrays of tens of MiB with fresh mmaps and unmaps them on free, so a worker process
# page-faults its way through every task's indicator and simulation arrays. Keeping such blocks on
# the heap lets the next task reuse them: on the runner benchmark (8 x 4M-bar backtests) this cut
# worker page faults 320k -> 63k and wall time 1.77 s -> 1.37 s. The price is that a worker keeps
# up to ~1 GiB of freed memory for reuse. Applied to the local Ray :func:`ray` starts; a cluster
# sets its own worker environment.
LOCAL_WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(256 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}


def mlflow(
    tracking_uri: str | None = None, root: str | os.PathLike[str] | None = None
) -> tuple[str, MlflowClient]:
    """The tracking URI (:func:`raytrader.settings.tracking_uri`: ``tracking_uri``, else
    ``MLFLOW_TRACKING_URI``, else in local mode the embedded store under ``root``) and an MLflow
    client for it."""
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri(tracking_uri, root)
    return uri, MlflowClient(tracking_uri=uri)


T = TypeVar("T")


def mlflow_client(
    tracking_uri: str | None = None, root: str | os.PathLike[str] | None = None
) -> MlflowClient:
    """:func:`mlflow`'s client alone."""
    return mlflow(tracking_uri, root)[1]


def ray(address: str | None = None) -> Any:
    """The ``ray`` module, connected: to ``address``, else ``RAY_ADDRESS``, else (local mode) to
    a Ray started here with this machine's CPUs (:func:`raytrader.settings.ray_address`)."""
    import ray as ray_module

    if not ray_module.is_initialized():
        addr = settings.ray_address(address)
        if addr:
            ray_module.init(address=addr, log_to_driver=False)
        else:
            ray_module.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": LOCAL_WORKER_ENV},
            )
    return ray_module


def ray_tasks(
    function: Callable[..., T],
    calls: Sequence[tuple[Any, ...]],
    describe: Callable[[int], str],
    *,
    address: str | None = None,
    on_result: Callable[[int, T], None] | None = None,
) -> list[T]:
    """``function(*calls[i])`` as one Ray task each (1 CPU, no retries), the results in ``calls``
    order; ``on_result(i, result)`` as each finishes. A failing task cancels the others and raises
    :class:`ConfigError` (when the task failed on one) or :class:`RaytraderError`, saying
    ``"<describe(i)> failed: <cause>"``. Put large shared arguments in the object store first
    (``ray(address).put``) and pass their references."""
    ray_module = ray(address)
    remote = ray_module.remote(num_cpus=1, max_retries=0)(function)
    refs = [remote.remote(*args) for args in calls]
    position = {ref: i for i, ref in enumerate(refs)}
    results: dict[int, T] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray_module.wait(pending, num_returns=1)
        i = position[ready[0]]
        try:
            results[i] = ray_module.get(ready[0])
        except Exception as exc:  # RayTaskError wraps the worker's exception as .cause
            for ref in pending:
                ray_module.cancel(ref)
            cause = getattr(exc, "cause", None) or exc
            kind = ConfigError if isinstance(cause, ConfigError) else RaytraderError
            raise kind(f"{describe(i)} failed: {cause}") from exc
        if on_result is not None:
            on_result(i, results[i])
    return [results[i] for i in range(len(calls))]


def feature_store(
    profile: str = "redis",
    *,
    repo: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    redis: str | None = None,
) -> FeatureStore:
    """Feast's store for a profile (``redis``: the stack's and the cluster's online store,
    ``sqlite``: embedded); unset arguments come from settings (``RAYTRADER_FEAST_REPO``,
    ``RAYTRADER_FEAST_DATA``, ``RAYTRADER_REDIS_CONNECTION``)."""
    from raytrader.features import feast_repo

    return feast_repo.store(profile, repo=repo, data=data, redis=redis)


def kafka(bootstrap: str | None = None) -> settings.KafkaSettings:
    """Kafka's servers and security for every client (producer, consumer, dead letters, admin):
    :meth:`~raytrader.settings.KafkaSettings.client_config` is librdkafka's configuration."""
    return settings.kafka(bootstrap)


__all__ = ["LOCAL_WORKER_ENV", "feature_store", "kafka", "mlflow", "mlflow_client", "ray"]
