"""The decision service: the registered ensemble behind Ray Serve, fed by the Feast online store.

* :mod:`~raytrader.serving.config` — :class:`ServiceConfig` (the Serve app's args) and tokens;
* :mod:`~raytrader.serving.model` — :class:`ModelHolder`: follow an alias, validate, swap;
* :mod:`~raytrader.serving.features` — the Feast online read;
* :mod:`~raytrader.serving.service` — the FastAPI app (routes, auth, errors, metrics);
* :mod:`~raytrader.serving.app` — the Ray Serve deployments (``import_path: raytrader.serving.app:build``);
* :mod:`~raytrader.serving.cli` — ``raytrader serve up|down|status`` and ``raytrader decide``.
"""

from raytrader.serving.config import ServiceConfig

__all__ = ["ServiceConfig"]
