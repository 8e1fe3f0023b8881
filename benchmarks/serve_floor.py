"""Ray Serve's own floor for section 7: the decision service's shape with nothing inside it.

Two applications on the stack's Serve instance, next to ``raytrader`` and behind the same HTTP
proxy, each answering ``POST /v1/decisions`` like the real service (so ``wrk`` sends the very
same request):

``floor-ingress`` (route ``/floor-ingress``)
    a FastAPI ingress deployment that returns the request's symbols: proxy → one replica.
``floor-hop`` (route ``/floor-hop``)
    the same ingress making one handle call to a model deployment that returns its argument:
    proxy → ingress replica → model replica, the topology the issue asks for, with no Feast read,
    no auth, no ensemble and no response model.

Whatever these cost per request is what Ray Serve itself costs on this machine; no change to
raytrader's code can go below it. Run by :mod:`benchmarks.bench_serving` in a subprocess (the
deployments are defined in ``__main__`` so Ray ships them by value; the workers need no copy of
``benchmarks``)::

    python -m benchmarks.serve_floor up      # RAY_ADDRESS: the stack's Ray head
    python -m benchmarks.serve_floor down
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime

import logging
import os
import sys
from typing import Any

APPS = {"floor-ingress": "/floor-ingress", "floor-hop": "/floor-hop"}
#: scheduling only (both apps sit beside ``raytrader`` on a 2-CPU head); it limits nothing
NUM_CPUS = 0.1


def _apps() -> dict[str, Any]:
    from fastapi import FastAPI
    from ray import serve

    ingress_only = FastAPI()
    with_hop = FastAPI()

    @serve.deployment(name="FloorModel", ray_actor_options={"num_cpus": NUM_CPUS})
    class FloorModel:
        async def decide(self, symbols: list[str]) -> list[str]:
            return symbols

    @serve.deployment(name="FloorIngress", ray_actor_options={"num_cpus": NUM_CPUS})
    @serve.ingress(ingress_only)
    class FloorIngress:
        @ingress_only.post("/v1/decisions")
        async def decisions(self, body: dict[str, Any]) -> dict[str, Any]:
            return {"decisions": body.get("symbols", [])}

    @serve.deployment(name="FloorHop", ray_actor_options={"num_cpus": NUM_CPUS})
    @serve.ingress(with_hop)
    class FloorHop:
        def __init__(self, model: Any) -> None:
            self.model = model

        @with_hop.post("/v1/decisions")
        async def decisions(self, body: dict[str, Any]) -> dict[str, Any]:
            return {"decisions": await self.model.decide.remote(body.get("symbols", []))}

    # @serve.deployment turned the classes into Deployments, which mypy cannot see
    return {
        "floor-ingress": FloorIngress.bind(),  # type: ignore[attr-defined]
        "floor-hop": FloorHop.bind(FloorModel.bind()),  # type: ignore[attr-defined]
    }


def main(argv: list[str]) -> int:
    import ray
    from ray import serve

    if argv not in (["up"], ["down"]):
        print("usage: python -m benchmarks.serve_floor up|down", file=sys.stderr)
        return 2
    address = os.environ.get("RAY_ADDRESS")
    if not address:  # never start a Ray of our own: the floor must share the service's proxy
        print("serve_floor: RAY_ADDRESS (the stack's Ray head) is not set", file=sys.stderr)
        return 2
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        if argv == ["up"]:
            for name, app in _apps().items():
                serve.run(app, name=name, route_prefix=APPS[name])
        else:
            for name in APPS:
                serve.delete(name)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
