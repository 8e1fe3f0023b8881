"""The decision API: one FastAPI app, served by Ray Serve (:mod:`raytrader.serving.app`) or, for
the benchmark's reference, by plain uvicorn around a local :class:`ModelHolder`.

Routes (``/docs`` and ``/openapi.json`` describe them):

=====================================  ===========================================================
``POST /v1/decisions``                 ``{"symbols": [...]}``: the latest ``ensemble_v1`` row of
                                       each symbol from Feast, one decision each
``POST /v1/decisions:with-features``   the same with the caller's own feature rows
``GET /v1/model``                      the version serving and its swap record
``POST /v1/admin/reload``              check the alias now (admin token)
``GET /healthz``                       the process answers
``GET /readyz``                        a model is loaded and Feast answers (503 otherwise)
``GET /metrics``                       Prometheus (:mod:`raytrader.serving.metrics`)
=====================================  ===========================================================

Every ``/v1`` route needs ``Authorization: Bearer <token>`` (constant-time comparison; 401
otherwise). Client mistakes are 4xx with a ``detail`` naming the problem: 422 malformed body or
feature row, 404 a symbol the online store has never seen (at the service's ``timeframe``), 413 more
than ``max_symbols``. 503 when a decision cannot be had honestly: features older than the age limit
(two bars of the timeframe unless ``max_feature_age_s`` says otherwise; ``stale: flag`` decides and
flags them instead), a row whose look-backs are not full (``unwarm: flag`` likewise), no model
loaded yet, or the online store down.

A decision whose members all have no decision for a row (NaN targets: the one NaN rule, "no
decision, keep the position") answers ``target: null`` and action ``keep``; members without a
decision are listed in ``members_missing`` and left out of the combination.
"""

from __future__ import annotations

import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from raytrader.errors import ConfigError
from raytrader.serving.config import ServiceConfig, Tokens
from raytrader.serving.features import OnlineFeatures, inline_frame
from raytrader.serving.metrics import CONTENT_TYPE, ServiceMetrics
from raytrader.serving.model import ModelHolder, ModelUnavailable
from raytrader.serving.schemas import (
    Account,
    Decision,
    DecisionRequest,
    DecisionResponse,
    FeaturesRequest,
    MemberOutput,
    ModelRef,
    ModelStatus,
    Problem,
)
from raytrader.webapi import name_invalid_fields


class ModelClient(Protocol):
    """How the API reaches the model: a Serve handle or a local holder."""

    async def decide(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]: ...
    async def status(self) -> dict[str, Any]: ...
    async def reload(self) -> dict[str, Any]: ...


class LocalModel:
    """A :class:`ModelHolder` in this process (plain uvicorn, tests)."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    async def decide(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        return decide_on(self.holder, frame)  # ~1.5 ms: inline, as the Serve replica runs it

    async def status(self) -> dict[str, Any]:
        return self.holder.status()

    async def reload(self) -> dict[str, Any]:
        outcome = await run_in_threadpool(self.holder.check)
        return {"outcome": outcome, **self.holder.status()}


class ModelRefused(RuntimeError):
    """The model raised on the features it was given (named for the caller)."""


def decide_on(holder: ModelHolder, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The model side of one request (also what the Serve model deployment runs)."""
    try:
        out, loaded = holder.decide(frame)
    except ModelUnavailable:
        raise
    except Exception as exc:  # the model's own error about these inputs
        raise ModelRefused(f"{type(exc).__name__}: {exc}") from exc
    status = holder.status()
    status["version"] = loaded.version  # the version that decided, even if a swap just happened
    status["members"] = list(loaded.members)
    return out, status


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


class DecisionService:
    """Everything behind the routes, transport aside."""

    def __init__(
        self,
        config: ServiceConfig,
        model: ModelClient,
        *,
        features: OnlineFeatures | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.features = features if features is not None else OnlineFeatures(config)
        self.tokens = tokens if tokens is not None else Tokens.load(config)
        self.metrics = ServiceMetrics()

    # ---- decisions ------------------------------------------------------------------------------
    async def decide(self, request: DecisionRequest) -> DecisionResponse:
        accounts = request.accounts()
        self._check_batch(len(accounts))
        symbols = [a.symbol for a in accounts]
        try:  # ~0.3 ms against Redis: cheaper inline than a hop to the thread pool
            rows, took = self.features.latest(list(dict.fromkeys(symbols)))
        except Exception as exc:  # the store is down: the service is not available
            raise HTTPException(503, f"Feast online store unavailable: {exc}") from exc
        self.metrics.feast_latency.observe(took)
        unknown = [str(s) for s in rows.index[rows["event_timestamp"].isna().to_numpy()]]
        if unknown:
            raise HTTPException(404, f"no features in the online store for symbol(s) {unknown}")
        return await self._decide(rows.loc[symbols], accounts)

    async def decide_with(self, request: FeaturesRequest) -> DecisionResponse:
        self._check_batch(len(request.rows))
        try:
            rows = inline_frame(request.rows)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from exc
        return await self._decide(rows, list(request.rows), inline=True)

    def _check_batch(self, n: int) -> None:
        if n > self.config.max_symbols:
            raise HTTPException(
                413, f"{n} symbols in one request, the limit is {self.config.max_symbols}"
            )

    async def _decide(
        self, rows: pd.DataFrame, accounts: list[Account], *, inline: bool = False
    ) -> DecisionResponse:
        from raytrader.ensemble import decision_frame, keyed

        t0 = time.perf_counter()
        now = _utc_now()
        times = pd.DatetimeIndex(rows["event_timestamp"])
        ages = np.asarray((now - times).total_seconds(), dtype=np.float64)
        limit = self.config.feature_age_limit_s
        stale = ages > limit
        unwarm = ~rows["warm"].fillna(False).to_numpy(dtype=bool)
        refused = []
        if stale.any() and self.config.stale == "reject":
            named = ", ".join(
                f"{s} {a:.0f} s" for s, a in zip(rows.index[stale], ages[stale], strict=True)
            )
            refused.append(
                f"stale features ({named}; the limit is {limit:g} s for "
                f"{self.config.timeframe} bars)"
            )
        if unwarm.any() and self.config.unwarm == "reject":
            refused.append(
                f"features not warm yet (look-backs still filling) for {list(rows.index[unwarm])}"
            )
        if refused:
            if stale.any() and self.config.stale == "reject":
                self.metrics.refused.labels("stale").inc()
            if unwarm.any() and self.config.unwarm == "reject":
                self.metrics.refused.labels("unwarm").inc()
            raise HTTPException(503, "no decision: " + "; ".join(refused))
        account = pd.DataFrame(
            {
                "exposure": [a.position for a in accounts],
                "unrealized": [a.unrealized for a in accounts],
                "time_in_position": [a.time_in_position for a in accounts],
            }
        )
        frame = decision_frame(keyed(rows).reset_index(drop=True), account)
        try:
            out, status = await self.model.decide(frame)
        except ModelUnavailable as exc:
            raise HTTPException(503, f"no model is serving: {exc}") from exc
        except ModelRefused as exc:
            if inline:  # the caller's features made the model fail
                raise HTTPException(
                    422, f"the model cannot decide on these features: {exc}"
                ) from exc
            raise
        self.metrics.served_by(status)
        ref = ModelRef(name=status["name"], version=str(status["version"]))
        targets = out["target"].to_numpy(np.float64)
        confidences = out["confidence"].to_numpy(np.float64)
        warm = frame["warm"].to_numpy(bool)
        members = _member_outputs(out, status["members"])
        explanations = (
            [json.loads(e) for e in out["explanation"]]
            if "explanation" in out.columns
            else [None] * len(out)
        )
        decisions = []
        for i, acct in enumerate(accounts):
            decided = bool(np.isfinite(targets[i]))
            action = str(out["action"].iat[i]) if decided else "keep"
            missing = [m.name for m in members[i] if m.target is None]
            self.metrics.decisions.labels(action).inc()
            if missing:
                self.metrics.members_missing.inc(len(missing))
            self.metrics.feature_age.observe(max(float(ages[i]), 0.0))
            decisions.append(
                Decision(
                    symbol=acct.symbol,
                    action=action,
                    target=float(targets[i]) if decided else None,
                    confidence=_finite_or(confidences[i], 0.0),
                    members=members[i],
                    members_missing=missing,
                    model=ref,
                    feature_time=times[i].to_pydatetime(),
                    feature_age_s=float(ages[i]),
                    stale=bool(stale[i]),
                    warm=bool(warm[i]),
                    position=acct.position,
                    explanation=explanations[i],
                )
            )
        took = (time.perf_counter() - t0) * 1000.0
        return DecisionResponse(decisions=decisions, model=ref, latency_ms=round(took, 3))

    # ---- model and health -----------------------------------------------------------------------
    async def model_status(self) -> ModelStatus:
        status = await self.model.status()
        return ModelStatus.model_validate(status)

    async def reload(self) -> dict[str, Any]:
        result = await self.model.reload()
        return {"outcome": result.pop("outcome"), "model": ModelStatus.model_validate(result)}

    async def ready(self) -> list[str]:
        problems = []
        status = await self.model.status()
        if status["version"] is None:
            problems.append(f"no model loaded ({status['last_failure'] or 'not checked yet'})")
        why = await run_in_threadpool(self.features.ping)
        if why is not None:
            problems.append(why)
        return problems

    # ---- auth -----------------------------------------------------------------------------------
    def check_token(
        self, given: HTTPAuthorizationCredentials | None, *, admin: bool = False
    ) -> None:
        expected = self.tokens.admin if admin else self.tokens.api
        if expected is None:
            if admin:
                raise HTTPException(
                    403, "admin actions are disabled: RAYTRADER_ADMIN_TOKEN is not set"
                )
            return  # local-dev mode without a token
        offered = given.credentials if given is not None else ""
        if not hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8")):
            raise HTTPException(
                401,
                "missing or wrong bearer token" + (" (admin)" if admin else ""),
                headers={"WWW-Authenticate": "Bearer"},
            )


def _member_outputs(out: pd.DataFrame, members: list[dict[str, Any]]) -> list[list[MemberOutput]]:
    """Each row's member outputs (members named by the model; for a model that is not a
    raytrader ensemble, by its ``<name>.target`` columns)."""
    if not members:
        names = [c.removesuffix(".target") for c in out.columns if c.endswith(".target")]
        members = [{"name": n, "version": None, "weight": None} for n in names]
    present = [m for m in members if f"{m['name']}.target" in out.columns]
    targets = [out[f"{m['name']}.target"].to_numpy(np.float64) for m in present]
    confidences = [out[f"{m['name']}.confidence"].to_numpy(np.float64) for m in present]
    return [
        [
            MemberOutput(**m, target=_finite_or(t[i], None), confidence=_finite_or(c[i], None))
            for m, t, c in zip(present, targets, confidences, strict=True)
        ]
        for i in range(len(out))
    ]


def _finite_or(value: float, default: Any) -> Any:
    """``value`` as a float, or ``default`` where it is NaN (no decision)."""
    return float(value) if np.isfinite(value) else default


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in (
        (401, "missing or wrong bearer token"),
        (404, "a symbol the online store has never seen at the service's timeframe"),
        (413, "more symbols than max_symbols"),
        (422, "malformed body, unknown or missing feature"),
        (
            503,
            "no honest decision: stale or not yet warm features, no model loaded, or the "
            "online store down",
        ),
    )
}


class _Measure:
    """Count and time every request by route template, method and status (a plain ASGI
    middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(path, scope["method"]).observe(time.perf_counter() - t0)


def create_app(service: DecisionService) -> FastAPI:
    """The FastAPI app around ``service``."""
    import raytrader

    app = FastAPI(
        title="raytrader decision service",
        version=raytrader.__version__,
        description="Trading decisions from the registered ensemble on the latest Feast features.",
    )
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="RAYTRADER_API_TOKEN")
    metrics = service.metrics

    def user(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        service.check_token(cred)

    def admin(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        service.check_token(cred, admin=True)

    name_invalid_fields(app)

    app.add_middleware(_Measure, metrics=metrics)

    decision_route: dict[str, Any] = {
        "response_model": DecisionResponse,
        "responses": ERRORS,
        "dependencies": [Depends(user)],
    }

    @app.post("/v1/decisions", summary="Decide from the latest online features", **decision_route)
    async def decisions(body: DecisionRequest) -> DecisionResponse:
        return await service.decide(body)

    @app.post(
        "/v1/decisions:with-features",
        summary="Decide on features the caller sends",
        **decision_route,
    )
    async def decisions_with_features(body: FeaturesRequest) -> DecisionResponse:
        return await service.decide_with(body)

    @app.get(
        "/v1/model",
        response_model=ModelStatus,
        responses={401: ERRORS[401]},
        dependencies=[Depends(user)],
        summary="The model version serving and its swap record",
    )
    async def model() -> ModelStatus:
        return await service.model_status()

    @app.post(
        "/v1/admin/reload",
        responses={401: ERRORS[401], 403: {"model": Problem, "description": "admin disabled"}},
        dependencies=[Depends(admin)],
        summary="Check the registry alias now",
    )
    async def reload() -> dict[str, Any]:
        return await service.reload()

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", responses={503: {"model": Problem}}, summary="Model loaded and Feast reachable"
    )
    async def readyz() -> JSONResponse:
        problems = await service.ready()
        if problems:
            return JSONResponse({"detail": "; ".join(problems)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def local_app(config: ServiceConfig, *, start_polling: bool = True) -> FastAPI:
    """The app with the model in this process (the benchmark's plain FastAPI + uvicorn)."""
    holder = ModelHolder(config)
    holder.check()  # freezes the heap after a swap (see raytrader.serving.model)
    if start_polling:
        holder.start()
    return create_app(DecisionService(config, LocalModel(holder)))
