"""The experiment API: read-only REST over the experiment store (:mod:`raytrader.db`).

* :mod:`raytrader.api.app` — :func:`~raytrader.api.app.create_app`, the routes;
* :mod:`raytrader.api.schemas` — the response bodies (the OpenAPI schema);
* :mod:`raytrader.api.auth` — the read and admin bearer tokens;
* :mod:`raytrader.api.cli` — ``raytrader api up|down|status|token`` (a local uvicorn).
"""
