"""The experiment API: read-only REST over the experiment store (FastAPI).

Routes (``/docs`` and ``/openapi.json`` describe them; every listing is a cursor page, see
:mod:`raytrader.db.queries`):

==================================================  ==============================================
``GET /healthz``                                    the process answers (no token)
``GET /readyz``                                     the store answers and is at the code's schema
                                                    revision (no token; 503 with the reason)
``GET /api/v1/runs``                                runs: ``kind``, ``status``, ``symbol``,
                                                    ``created_after``, ``created_before``
``GET /api/v1/runs/{run_id}``                       one run
``GET /api/v1/runs/{run_id}/episodes``              its episodes (``split``)
``GET /api/v1/runs/{run_id}/model``                 the model it produced (its MLflow run)
``GET /api/v1/runs/{run_id}/backtests``             the backtests it wrote
``GET /api/v1/episodes/{episode_id}``               one episode
``GET /api/v1/episodes/{episode_id}/steps``         its sampled steps by ``t`` (up to 5000 a page)
``GET /api/v1/episodes/{episode_id}/trades``        its round trips
``GET /api/v1/episodes/{episode_id}/operations``    its entries and exits
``GET /api/v1/backtests``                           backtests: ``strategy``, ``symbol``
``GET /api/v1/backtests/{backtest_id}``             one backtest with its equity curve
``GET /api/v1/backtests/{backtest_id}/trades``      its round trips
``GET /api/v1/backtests/{backtest_id}/operations``  its entries and exits
``GET /api/v1/optimization/runs``                   searches: ``target``, ``status``
``GET /api/v1/optimization/runs/{id}``              one search
``GET /api/v1/optimization/runs/{id}/results``      its trials, best first (``sort=score|key``)
``GET /api/v1/evaluation/runs``                     evaluations: ``kind``
``GET /api/v1/evaluation/runs/{id}``                one evaluation
``GET /api/v1/evaluation/runs/{id}/metrics``        its rows (``dataset``, ``role``)
``GET /api/v1/paper/sessions``                      paper-trading sessions: ``status``
``GET /api/v1/paper/sessions/{id}``                 one session, its positions at the last step
``GET /api/v1/paper/sessions/{id}/steps``           its account at each close (up to 5000 a page)
``GET /api/v1/paper/sessions/{id}/decisions``       its decisions, newest first (``symbol``)
``GET /api/v1/paper/sessions/{id}/fills``           its executions, newest first
==================================================  ==============================================

Every ``/api/v1`` route needs ``Authorization: Bearer <token>`` (:mod:`raytrader.api.auth`).
Errors are ``{"detail": ...}`` naming what is at fault: 400 a cursor this listing did not hand out,
401 no or a wrong token, 404 an unknown id (naming the resource and the id), 422 a bad query value
(``query.limit: ...``; also a parameter the route does not take, or one given twice), 503 the
store unreachable or not migrated.

Each request reads in its own session, never committed.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, BeforeValidator
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from raytrader.api import control, schemas
from raytrader.api.auth import ApiTokens, Auth
from raytrader.api.control import Backends
from raytrader.db import engine as db_engine
from raytrader.db import models
from raytrader.db import queries as q
from raytrader.errors import ExperimentStoreError
from raytrader.webapi import name_invalid_fields

PREFIX = "/api/v1"
TITLE = "raytrader experiment API"

_DESCRIPTIONS = {
    400: "a cursor this listing did not hand out, or a body that is not JSON",
    401: "missing or wrong bearer token",
    403: "the read token on an admin route, or admin actions disabled",
    404: "no such resource (the detail names it and the id)",
    409: "nothing to roll back to (the alias has no earlier version)",
    422: "a query or path value out of range or malformed (the detail names it)",
    503: "the experiment store, or a backend the route needs (MLflow, Ray), is unreachable or "
    "not configured",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of these error codes, each a :class:`~schemas.Problem`."""
    return {c: {"model": schemas.Problem, "description": _DESCRIPTIONS[c]} for c in codes}


#: a listing's and a single row's error responses
LISTING = errors(400, 401, 404, 422, 503)
ONE = errors(401, 404, 422, 503)

# ------------------------------------------------------------------------------ query parameters
_NAME = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="the row's id")]
Name = Annotated[str | None, Query(min_length=1, max_length=200, pattern=_NAME)]
Status = Annotated[Literal["running", "finished", "failed"] | None, Query()]
Limit = Annotated[int, Query(ge=1, le=q.MAX_LIMIT, description="rows per page")]
StepLimit = Annotated[int, Query(ge=1, le=q.MAX_STEPS_LIMIT, description="steps per page")]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=q.MAX_CURSOR_CHARS,
        description="the previous page's next_cursor, unchanged",
    ),
]
Order = Annotated[q.Order, Query(description="asc or desc")]


def _iso_text(value: Any) -> Any:
    """A time must be ISO 8601 text: pydantic would also read ``5`` as 1970-01-01T00:00:05Z."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("an ISO 8601 time with a UTC offset, not a number")
    return value


Time = Annotated[
    Annotated[AwareDatetime, BeforeValidator(_iso_text)] | None,
    Query(description="ISO 8601 with a UTC offset"),
]

P = TypeVar("P", bound=BaseModel)


def _session(request: Request) -> Iterator[Session]:
    """The request's session on the app's engine (read-only: never committed)."""
    with Session(request.app.state.engine) as s:
        yield s


Db = Annotated[Session, Depends(_session)]


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route (its endpoint and every dependency) takes."""
    names = {str(p.alias) for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def strict_query(request: Request) -> None:
    """Refuse a query parameter the route does not take, or one given twice: a misspelt filter
    silently ignored, or the last of two values silently used, would answer another question
    than the one asked."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    known = _query_names(dependant) if dependant is not None else set()
    keys = [key for key, _ in request.query_params.multi_items()]
    counts = collections.Counter(keys)
    problems = [
        f"query.{key}: unknown parameter (this route takes {', '.join(sorted(known)) or 'none'})"
        for key in counts
        if key not in known
    ]
    problems += [
        f"query.{key}: given more than once (it takes one value)"
        for key in sorted(k for k, n in counts.items() if n > 1 and k in known)
    ]
    if problems:
        raise HTTPException(422, "; ".join(problems))


def _found(row: Any, what: str, ident: int) -> Any:
    if row is None:
        raise HTTPException(404, f"no {what} with id {ident}")
    return row


def _page(cls: type[P], page: q.Page[Any]) -> P:
    return cls.model_validate(page, from_attributes=True)


def _reason(exc: DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def create_app(
    engine_or_url: Engine | str | None = None,
    tokens: ApiTokens | None = None,
    backends: Backends | None = None,
) -> FastAPI:
    """The API over the store at ``engine_or_url`` (an engine, a URL, or the configured store),
    checking ``tokens`` (default: from the environment; refused without a read token unless in
    local-dev mode), its control routes on ``backends`` (default: from the settings,
    :mod:`raytrader.api.control`)."""
    import raytrader

    tokens = tokens if tokens is not None else ApiTokens.load()
    tokens.require_read_token()
    own_engine = not isinstance(engine_or_url, Engine)
    engine = (
        engine_or_url if isinstance(engine_or_url, Engine) else db_engine.make_engine(engine_or_url)
    )
    where = db_engine.redacted(engine.url.render_as_string(hide_password=False))
    auth = Auth(tokens)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if own_engine:
            engine.dispose()

    app = FastAPI(
        title=TITLE,
        version=raytrader.__version__,
        description="Runs, episodes, backtests, searches and evaluations from the experiment "
        "store, read-only.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.auth = auth

    # ---- errors ---------------------------------------------------------------------------------
    name_invalid_fields(app)

    @app.exception_handler(q.QueryError)
    async def _bad_query(request: Request, exc: q.QueryError) -> JSONResponse:
        code = 400 if isinstance(exc, q.BadCursor) else 422
        return JSONResponse({"detail": f"query.{exc}"}, status_code=code)

    @app.exception_handler(ExperimentStoreError)
    async def _store(request: Request, exc: ExperimentStoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the experiment store {where} failed: {_reason(exc)}"}, status_code=503
        )

    # ---- health ---------------------------------------------------------------------------------
    @app.get("/healthz", response_model=schemas.Health, summary="The process answers")
    def healthz() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get(
        "/readyz",
        response_model=schemas.Health,
        responses=errors(503),
        summary="The store answers and is at the code's schema revision",
    )
    def readyz() -> Any:
        try:
            db_engine.check_current(engine)
        except ExperimentStoreError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except SQLAlchemyError as exc:
            return JSONResponse(
                {"detail": f"the experiment store {where} failed: {exc}"}, status_code=503
            )
        return schemas.Health(status="ready")

    read: dict[str, Any] = {"dependencies": [Depends(auth.require_read), Depends(strict_query)]}

    # ---- runs -----------------------------------------------------------------------------------
    @app.get(f"{PREFIX}/runs", response_model=schemas.RunPage, responses=LISTING, **read)
    def list_runs(
        db: Db,
        kind: Name = None,
        status: Status = None,
        symbol: Name = None,
        created_after: Time = None,
        created_before: Time = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.RunPage:
        """Runs, newest first."""
        page = q.list_runs(
            db, kind=kind, status=status, symbol=symbol, created_after=created_after,
            created_before=created_before, order=order, limit=limit, cursor=cursor,
        )  # fmt: skip
        return _page(schemas.RunPage, page)

    def _run(db: Session, run_id: int) -> models.Run:
        row: models.Run = _found(q.get_run(db, run_id), "run", run_id)
        return row

    @app.get(f"{PREFIX}/runs/{{run_id}}", response_model=schemas.Run, responses=ONE, **read)
    def get_run(db: Db, run_id: Id) -> schemas.Run:
        """One run."""
        return schemas.Run.model_validate(_run(db, run_id))

    @app.get(
        f"{PREFIX}/runs/{{run_id}}/episodes",
        response_model=schemas.EpisodePage,
        responses=LISTING,
        **read,
    )
    def list_episodes(
        db: Db,
        run_id: Id,
        split: Name = None,
        order: Order = "asc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.EpisodePage:
        """A run's episodes in the order they finished."""
        _run(db, run_id)
        page = q.list_episodes(db, run_id, split=split, order=order, limit=limit, cursor=cursor)
        return _page(schemas.EpisodePage, page)

    @app.get(
        f"{PREFIX}/runs/{{run_id}}/model", response_model=schemas.RunModel, responses=ONE, **read
    )
    def run_model(db: Db, run_id: Id) -> schemas.RunModel:
        """The model a run produced: its MLflow run id, kind and config (404 without one)."""
        run = _run(db, run_id)
        if not run.mlflow_run_id:
            raise HTTPException(404, f"run {run_id} has no MLflow run (it produced no model)")
        return schemas.RunModel(
            run_id=run.id, key=run.key, kind=run.kind, name=run.name, status=run.status,
            mlflow_run_id=run.mlflow_run_id, config=run.config, metrics=run.metrics,
            code_version=run.code_version, finished_at=run.finished_at,
        )  # fmt: skip

    @app.get(
        f"{PREFIX}/runs/{{run_id}}/backtests",
        response_model=schemas.BacktestPage,
        responses=LISTING,
        **read,
    )
    def run_backtests(
        db: Db,
        run_id: Id,
        strategy: Name = None,
        symbol: Name = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.BacktestPage:
        """The backtests a run wrote (``run-strategies``), newest first."""
        _run(db, run_id)
        page = q.list_backtests(
            db, run_id=run_id, strategy=strategy, symbol=symbol, order=order, limit=limit,
            cursor=cursor,
        )  # fmt: skip
        return _page(schemas.BacktestPage, page)

    # ---- episodes -------------------------------------------------------------------------------
    def _episode(db: Session, episode_id: int) -> models.Episode:
        row: models.Episode = _found(q.get_episode(db, episode_id), "episode", episode_id)
        return row

    @app.get(
        f"{PREFIX}/episodes/{{episode_id}}", response_model=schemas.Episode, responses=ONE, **read
    )
    def get_episode(db: Db, episode_id: Id) -> schemas.Episode:
        """One episode."""
        return schemas.Episode.model_validate(_episode(db, episode_id))

    @app.get(
        f"{PREFIX}/episodes/{{episode_id}}/steps",
        response_model=schemas.StepPage,
        responses=LISTING,
        **read,
    )
    def list_steps(
        db: Db,
        episode_id: Id,
        order: Order = "asc",
        limit: StepLimit = q.DEFAULT_STEPS_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.StepPage:
        """An episode's sampled steps by ``t``."""
        _episode(db, episode_id)
        page = q.list_steps(db, episode_id, order=order, limit=limit, cursor=cursor)
        return _page(schemas.StepPage, page)

    # ---- backtests ------------------------------------------------------------------------------
    def _backtest(db: Session, backtest_id: int) -> models.Backtest:
        row: models.Backtest = _found(q.get_backtest(db, backtest_id), "backtest", backtest_id)
        return row

    @app.get(f"{PREFIX}/backtests", response_model=schemas.BacktestPage, responses=LISTING, **read)
    def list_backtests(
        db: Db,
        strategy: Name = None,
        symbol: Name = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.BacktestPage:
        """Backtests, newest first (without their equity curves)."""
        page = q.list_backtests(
            db, strategy=strategy, symbol=symbol, order=order, limit=limit, cursor=cursor
        )
        return _page(schemas.BacktestPage, page)

    @app.get(
        f"{PREFIX}/backtests/{{backtest_id}}",
        response_model=schemas.BacktestDetail,
        responses=ONE,
        **read,
    )
    def get_backtest(db: Db, backtest_id: Id) -> schemas.BacktestDetail:
        """One backtest with its metrics and its (sampled) equity curve."""
        row = _backtest(db, backtest_id)
        head = schemas.Backtest.model_validate(row).model_dump()
        points = [schemas.EquityPoint(time=t, equity=v) for t, v in row.equity]
        return schemas.BacktestDetail(**head, equity=points)

    # ---- an episode's or a backtest's trades and operations ----------------------------------------
    for owner, lookup in (("episode", _episode), ("backtest", _backtest)):
        _owned_routes(app, owner, lookup, read)

    # ---- paper trading --------------------------------------------------------------------------
    def _paper(db: Session, session_id: int) -> models.PaperSession:
        row: models.PaperSession = _found(
            q.get_paper_session(db, session_id), "paper session", session_id
        )
        return row

    @app.get(
        f"{PREFIX}/paper/sessions", response_model=schemas.PaperSessionPage, responses=LISTING,
        **read,
    )  # fmt: skip
    def list_paper_sessions(
        db: Db,
        status: Name = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.PaperSessionPage:
        """Paper-trading sessions, newest first."""
        page = q.list_paper_sessions(db, status=status, order=order, limit=limit, cursor=cursor)
        return _page(schemas.PaperSessionPage, page)

    @app.get(
        f"{PREFIX}/paper/sessions/{{session_id}}",
        response_model=schemas.PaperSessionDetail,
        responses=ONE,
        **read,
    )
    def get_paper_session(db: Db, session_id: Id) -> schemas.PaperSessionDetail:
        """One session with every symbol's position at its last step."""
        row = _paper(db, session_id)
        head = schemas.PaperSession.model_validate(row).model_dump()
        positions = q.paper_positions(db, session_id, row.steps - 1) if row.steps else []
        return schemas.PaperSessionDetail(
            **head, positions=[schemas.PaperPosition.model_validate(p) for p in positions]
        )

    @app.get(
        f"{PREFIX}/paper/sessions/{{session_id}}/steps",
        response_model=schemas.PaperStepPage,
        responses=LISTING,
        **read,
    )
    def list_paper_steps(
        db: Db,
        session_id: Id,
        order: Order = "asc",
        limit: StepLimit = q.DEFAULT_STEPS_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.PaperStepPage:
        """A session's account at each close (its equity curve)."""
        _paper(db, session_id)
        page = q.list_paper_steps(db, session_id, order=order, limit=limit, cursor=cursor)
        return _page(schemas.PaperStepPage, page)

    @app.get(
        f"{PREFIX}/paper/sessions/{{session_id}}/decisions",
        response_model=schemas.PaperDecisionPage,
        responses=LISTING,
        **read,
    )
    def list_paper_decisions(
        db: Db,
        session_id: Id,
        symbol: Name = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.PaperDecisionPage:
        """A session's decisions, newest first, with their explanations (or why there was none)."""
        _paper(db, session_id)
        page = q.list_paper_decisions(
            db, session_id, symbol=symbol, order=order, limit=limit, cursor=cursor
        )
        return _page(schemas.PaperDecisionPage, page)

    @app.get(
        f"{PREFIX}/paper/sessions/{{session_id}}/fills",
        response_model=schemas.PaperFillPage,
        responses=LISTING,
        **read,
    )
    def list_paper_fills(
        db: Db,
        session_id: Id,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.PaperFillPage:
        """A session's executions, newest first."""
        _paper(db, session_id)
        page = q.list_paper_fills(db, session_id, order=order, limit=limit, cursor=cursor)
        return _page(schemas.PaperFillPage, page)

    # ---- optimizations --------------------------------------------------------------------------
    def _optimization(db: Session, opt_id: int) -> models.Optimization:
        row: models.Optimization = _found(q.get_optimization(db, opt_id), "optimization", opt_id)
        return row

    @app.get(
        f"{PREFIX}/optimization/runs",
        response_model=schemas.OptimizationPage,
        responses=LISTING,
        **read,
    )
    def list_optimizations(
        db: Db,
        target: Name = None,
        status: Status = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.OptimizationPage:
        """Hyperparameter searches, newest first."""
        page = q.list_optimizations(
            db, target=target, status=status, order=order, limit=limit, cursor=cursor
        )
        return _page(schemas.OptimizationPage, page)

    @app.get(
        f"{PREFIX}/optimization/runs/{{optimization_id}}",
        response_model=schemas.Optimization,
        responses=ONE,
        **read,
    )
    def get_optimization(db: Db, optimization_id: Id) -> schemas.Optimization:
        """One search, with its best trial."""
        return schemas.Optimization.model_validate(_optimization(db, optimization_id))

    @app.get(
        f"{PREFIX}/optimization/runs/{{optimization_id}}/results",
        response_model=schemas.TrialPage,
        responses=LISTING,
        **read,
    )
    def optimization_results(
        db: Db,
        optimization_id: Id,
        sort: Annotated[q.TrialSort, Query(description="score or key")] = "score",
        order: Annotated[
            q.Order | None,
            Query(
                description="default: best first for sort=score (the search's mode), asc for key"
            ),
        ] = None,
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.TrialPage:
        """A search's trials, best first by default; trials without a score last."""
        opt = _optimization(db, optimization_id)
        page = q.list_trials(db, opt, sort=sort, order=order, limit=limit, cursor=cursor)
        return _page(schemas.TrialPage, page)

    # ---- evaluations ----------------------------------------------------------------------------
    def _evaluation(db: Session, evaluation_id: int) -> models.Evaluation:
        row: models.Evaluation = _found(
            q.get_evaluation(db, evaluation_id), "evaluation", evaluation_id
        )
        return row

    @app.get(
        f"{PREFIX}/evaluation/runs",
        response_model=schemas.EvaluationPage,
        responses=LISTING,
        **read,
    )
    def list_evaluations(
        db: Db,
        kind: Name = None,
        order: Order = "desc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.EvaluationPage:
        """Evaluations, newest first."""
        page = q.list_evaluations(db, kind=kind, order=order, limit=limit, cursor=cursor)
        return _page(schemas.EvaluationPage, page)

    @app.get(
        f"{PREFIX}/evaluation/runs/{{evaluation_id}}",
        response_model=schemas.Evaluation,
        responses=ONE,
        **read,
    )
    def get_evaluation(db: Db, evaluation_id: Id) -> schemas.Evaluation:
        """One evaluation with its summary (the verdicts)."""
        return schemas.Evaluation.model_validate(_evaluation(db, evaluation_id))

    @app.get(
        f"{PREFIX}/evaluation/runs/{{evaluation_id}}/metrics",
        response_model=schemas.EvaluationRowPage,
        responses=LISTING,
        **read,
    )
    def evaluation_metrics(
        db: Db,
        evaluation_id: Id,
        dataset: Name = None,
        role: Name = None,
        order: Order = "asc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.EvaluationRowPage:
        """An evaluation's metrics, one row per dataset and candidate."""
        _evaluation(db, evaluation_id)
        page = q.list_evaluation_rows(
            db, evaluation_id, dataset=dataset, role=role, order=order, limit=limit,
            cursor=cursor,
        )  # fmt: skip
        return _page(schemas.EvaluationRowPage, page)

    # ---- models, jobs, system (raytrader.api.control) -------------------------------------------
    admin: dict[str, Any] = {"dependencies": [Depends(auth.require_admin), Depends(strict_query)]}
    control.add_routes(app, read, admin, backends or Backends.from_settings(), errors)
    return app


def _path_named(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The route function with its ``ident`` parameter named ``name`` (what the path and the
    OpenAPI document call it): one function serves ``/episodes/{episode_id}/...`` and
    ``/backtests/{backtest_id}/...``."""

    def rename(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        params = [p.replace(name=name) if p.name == "ident" else p for p in sig.parameters.values()]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            kwargs["ident"] = kwargs.pop(name)
            return fn(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return rename


def _owned_routes(
    app: FastAPI, owner: str, lookup: Callable[[Session, int], Any], read: dict[str, Any]
) -> None:
    """``/{owner}s/{{{owner}_id}}/trades`` and ``.../operations``: the owner's round trips in the
    order they opened, its entries and exits in time order."""
    param = f"{owner}_id"

    @app.get(
        f"{PREFIX}/{owner}s/{{{param}}}/trades",
        response_model=schemas.TradePage,
        responses=LISTING,
        summary=f"A {owner}'s round trips in the order they opened",
        name=f"{owner}_trades",
        **read,
    )
    @_path_named(param)
    def trades(
        db: Db,
        ident: Id,
        order: Order = "asc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.TradePage:
        lookup(db, ident)
        page = q.list_trades(db, order=order, limit=limit, cursor=cursor, **{param: ident})
        return _page(schemas.TradePage, page)

    @app.get(
        f"{PREFIX}/{owner}s/{{{param}}}/operations",
        response_model=schemas.OperationPage,
        responses=LISTING,
        summary=f"A {owner}'s entries and exits in time order",
        name=f"{owner}_operations",
        **read,
    )
    @_path_named(param)
    def operations(
        db: Db,
        ident: Id,
        order: Order = "asc",
        limit: Limit = q.DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> schemas.OperationPage:
        lookup(db, ident)
        page = q.list_operations(db, order=order, limit=limit, cursor=cursor, **{param: ident})
        return _page(schemas.OperationPage, page)


def app_from_env() -> FastAPI:
    """The app over ``RAYTRADER_DB_URL`` with the tokens of the environment (uvicorn's
    ``--factory``, as ``raytrader api up`` starts it)."""
    return create_app()
