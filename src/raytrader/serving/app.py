"""The Ray Serve application: a FastAPI ingress deployment and a model deployment.

``import_path: raytrader.serving.app:build`` with ``args`` = :class:`ServiceConfig` fields, in
``pipelines/serve/serve_config.yaml`` (the ``serveConfigV2`` the Kubernetes RayService embeds)::

    DecisionAPI  (ingress; FastAPI; Feast reads, auth, metrics)
        └── DecisionModel  (the ensemble; follows the registry alias; autoscaled on its own)

The model deployment's ``user_config`` reaches :meth:`DecisionModel.reconfigure` on every
``serve deploy`` without restarting replicas: ``model_uri`` / ``poll_interval_s`` /
``latency_budget_ms`` override the args, and a changed ``reload`` value makes every replica check
the alias at once.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from ray import serve
from ray.serve.handle import DeploymentHandle

from raytrader.logs import configure_from_env
from raytrader.serving.config import ServiceConfig
from raytrader.serving.model import ModelHolder
from raytrader.serving.service import DecisionService, create_app, decide_on

log = logging.getLogger("raytrader.serving")
RECONFIGURABLE = ("model_uri", "poll_interval_s", "latency_budget_ms")


def _replica() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a replica (tests): a fixed name
        return "local"


@serve.deployment(name="DecisionModel", ray_actor_options={"num_cpus": 0.5})
class DecisionModel:
    def __init__(self, config: dict[str, Any]) -> None:
        configure_from_env()  # a replica is a Ray worker: no CLI ran in its process
        self.base = ServiceConfig.model_validate(config)
        self.holder = ModelHolder(self.base, replica=_replica())
        self.holder.check()  # a failure is recorded; the poller keeps trying
        self.holder.start()
        self._reload: Any = None

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        unknown = sorted(set(user_config) - {*RECONFIGURABLE, "reload"})
        if unknown:
            raise ValueError(
                f"user_config: unknown key(s) {unknown}; known {[*RECONFIGURABLE, 'reload']}"
            )
        updates = {k: user_config[k] for k in RECONFIGURABLE if k in user_config}
        config = ServiceConfig.model_validate({**self.base.model_dump(), **updates})
        reload = user_config.get("reload")
        if config != self.holder.config or reload != self._reload:
            self._reload = reload
            self.holder.retarget(config)  # wakes the poller: the check runs in the background

    async def decide(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        # ~1.5 ms of CPU: run on the replica's loop rather than hop to its thread pool
        return decide_on(self.holder, frame)

    async def status(self) -> dict[str, Any]:
        return self.holder.status()

    def reload(self) -> dict[str, Any]:
        outcome = self.holder.check()
        return {"outcome": outcome, **self.holder.status()}

    def __del__(self) -> None:  # Serve deletes the replica's object on shutdown
        self.holder.stop()

    def check_health(self) -> None:
        if not self.holder.polling:
            raise RuntimeError("the alias poller stopped")


class ServeModel:
    """The API's view of the model deployment."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self.handle = handle

    async def decide(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        result: tuple[pd.DataFrame, dict[str, Any]] = await self.handle.decide.remote(frame)
        return result

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.handle.status.remote()
        return result

    async def reload(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.handle.reload.remote()
        return result


@serve.deployment(name="DecisionAPI", ray_actor_options={"num_cpus": 0.5})
@serve.ingress()
class DecisionAPI:
    def __init__(self, model: DeploymentHandle[Any], config: dict[str, Any]) -> None:
        configure_from_env()
        # the tokens are read here, in the replica, from its environment: a missing token fails
        # the deployment (the service refuses to start), named in `serve status`
        self.service = DecisionService(ServiceConfig.model_validate(config), ServeModel(model))
        _ = self.service.features.store  # open Feast now, not on the first request
        import gc

        gc.collect()  # the heap as it stays, out of the collector's reach (serving.model)
        gc.freeze()

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.service)


def build(args: dict[str, Any]) -> Any:
    """The application for ``serve deploy`` / ``serve run``: ``args`` are :class:`ServiceConfig`."""
    config = ServiceConfig.parse(dict(args or {}), where="serve args")
    dumped = config.model_dump()
    # @serve.deployment turned both classes into Deployments, which mypy cannot see
    model = DecisionModel.bind(dumped)  # type: ignore[attr-defined]
    return DecisionAPI.bind(model, dumped)  # type: ignore[attr-defined]
