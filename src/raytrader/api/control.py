"""The experiment API's control routes: registered models (list, promote, roll back), Ray jobs
(resubmit a stored run's or search's config, list, stop) and the system's health.

==================================================  ==============================================
``GET /api/v1/models``                              registered models, versions and aliases
``POST /api/v1/models/{name}/promote``              point an alias at a version (admin)
``POST /api/v1/models/{name}/rollback``             point it back at the one before (admin; 409
                                                    when there is none)
``GET /api/v1/jobs``                                Ray jobs and their status
``POST /api/v1/jobs``                               a stored run's (``rl``, ``supervised``) or
                                                    search's config submitted again (admin)
``POST /api/v1/jobs/{job_id}/stop``                 stop one (admin)
``GET /api/v1/system``                              store, MLflow, Ray, decision service and
                                                    stream consumer: up or not, and their numbers
==================================================  ==============================================

Where each lives (:class:`Backends`): MLflow at ``MLFLOW_TRACKING_URI`` (in local mode also the
local stack's, else the demo's embedded ``runs/mlflow.db``); Ray's job API at
``RAY_API_SERVER_ADDRESS`` with the token at ``RAY_AUTH_TOKEN_PATH``; the decision service at
``RAYTRADER_SERVE_URL`` with its API token; the stream consumer's metrics at
``RAYTRADER_STREAM_METRICS_URL`` (default ``http://127.0.0.1:9401/metrics``). A backend that does
not answer is a 503 naming it (the system page shows it as down), never a 500.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from raytrader import settings
from raytrader.db import engine as db_engine
from raytrader.db.models import Optimization, Run
from raytrader.errors import ConfigError, RaytraderError

PREFIX = "/api/v1"
STREAM_METRICS_ENV = "RAYTRADER_STREAM_METRICS_URL"
JOB_PYTHON_ENV = "RAYTRADER_JOB_PYTHON"
DEFAULT_STREAM_METRICS = "http://127.0.0.1:9401/metrics"
PROBE_TIMEOUT_S = 3.0
ModelName = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,200}$", description="a registered model's name")
]
JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,200}$", description="a Ray job's id")]


class BackendDown(RaytraderError):
    """A backend (MLflow, Ray) did not answer: a 503 naming it."""


# ------------------------------------------------------------------------------------ schemas
class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelVersion(BaseModel):
    version: str
    run_id: str | None
    created_at: dt.datetime | None
    tags: dict[str, str]


class RegisteredModel(BaseModel):
    name: str
    kind: str
    latest: int
    aliases: dict[str, str]
    versions: list[ModelVersion]


class ModelList(BaseModel):
    items: list[RegisteredModel]


class Promote(_In):
    version: str = Field(pattern=r"^[1-9][0-9]{0,8}$", description="the version to point at")
    alias: Literal["champion", "challenger"] = "champion"


class Rollback(_In):
    alias: Literal["champion", "challenger"] = "champion"


class AliasMoved(BaseModel):
    name: str
    alias: str
    version: str
    previous: str | None


class Job(BaseModel):
    job_id: str
    status: str
    entrypoint: str
    submitted_at: dt.datetime | None
    message: str | None


class JobList(BaseModel):
    items: list[Job]


class SubmitRun(_In):
    """Submit a stored ``rl`` or ``supervised`` run's config again."""

    run_id: int = Field(ge=1, le=2**63 - 1)


class SubmitOptimization(_In):
    """Submit a stored search's config again."""

    optimization_id: int = Field(ge=1, le=2**63 - 1)


Submit = SubmitRun | SubmitOptimization


class Component(BaseModel):
    name: str
    ok: bool
    url: str | None
    detail: str
    values: dict[str, float | str | None]


class System(BaseModel):
    components: list[Component]


# ------------------------------------------------------------------------------------ backends
@dataclass
class Backends:
    """Where the control routes find MLflow, Ray's job API, the decision service and the stream
    consumer's metrics (module docstring); every field can be given for tests."""

    mlflow_uri: str | None = None
    ray_dashboard: str | None = None
    ray_token_path: str | None = None
    serve_url: str | None = None
    serve_token: str | None = None
    stream_metrics: str | None = None

    @classmethod
    def from_settings(cls) -> Backends:
        mlflow = settings.lookup(settings.MLFLOW_ENV)
        if mlflow is None and settings.mode() == "local":
            mlflow = settings.embedded_tracking_uri("runs")
        return cls(
            mlflow_uri=mlflow,
            ray_dashboard=settings.lookup("RAY_API_SERVER_ADDRESS"),
            ray_token_path=settings.lookup("RAY_AUTH_TOKEN_PATH"),
            serve_url=settings.lookup(settings.SERVE_URL_ENV)
            or (settings.DEFAULT_SERVE_URL if settings.mode() == "local" else None),
            serve_token=settings.client_token(),
            stream_metrics=settings.lookup(STREAM_METRICS_ENV)
            or (DEFAULT_STREAM_METRICS if settings.mode() == "local" else None),
        )

    def mlflow(self) -> str:
        if not self.mlflow_uri:
            raise BackendDown(f"no model registry: {settings.MLFLOW_ENV} is not set")
        return self.mlflow_uri

    def jobs(self) -> Any:
        """Ray's ``JobSubmissionClient`` on the dashboard, with the cluster's token."""
        if not self.ray_dashboard:
            raise BackendDown("no Ray cluster: RAY_API_SERVER_ADDRESS is not set")
        headers = {}
        if self.ray_token_path:
            try:
                token = Path(self.ray_token_path).read_text().strip()
            except OSError as exc:
                raise BackendDown(f"Ray's token {self.ray_token_path}: {exc.strerror}") from None
            headers["Authorization"] = f"Bearer {token}"
        from ray.job_submission import JobSubmissionClient

        try:
            return JobSubmissionClient(self.ray_dashboard, headers=headers)
        except Exception as exc:  # the SDK raises ConnectionError, RuntimeError, ...
            raise BackendDown(f"Ray's job API at {self.ray_dashboard}: {exc}") from None


# ------------------------------------------------------------------------------------ jobs
def job_command(session: Session, body: Submit, now: dt.datetime) -> tuple[str, str]:
    """(entrypoint, what) resubmitting a stored config as a new run: a fresh output directory
    (or search name) stamped with ``now``, so it never resumes or collides with the stored one."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    if isinstance(body, SubmitRun):
        run = session.get(Run, body.run_id)
        if run is None:
            raise HTTPException(404, f"no run with id {body.run_id}")
        config = dict(run.config)
        if run.kind == "rl":
            config["output_dir"] = f"{config.get('output_dir', 'runs/rl')}-{stamp}"
            module = "raytrader.training.rl"
        elif run.kind == "supervised":
            out = run.key.split(":", 2)[1] if run.key.count(":") >= 2 else "runs/supervised"
            config = {"models": [config], "output_dir": f"{out}-{stamp}"}
            module = "raytrader.training.supervised"
        else:
            raise HTTPException(
                422, f"body.run_id: run {run.id} is a {run.kind!r} run; rl and supervised runs "
                "can be resubmitted"
            )  # fmt: skip
        what = f"run {run.id} ({run.kind})"
    else:
        opt = session.get(Optimization, body.optimization_id)
        if opt is None:
            raise HTTPException(404, f"no optimization with id {body.optimization_id}")
        config = dict(opt.config)
        config["name"] = f"{config.get('name', opt.name)}-{stamp}"
        module = "raytrader.training.tune"
        what = f"optimization {opt.id} ({opt.target})"
    entry = f"{job_python()} -m {module} --config-json {shlex.quote(json.dumps(config))}"
    return entry, what


def job_python() -> str:
    """The interpreter a job runs: ``RAYTRADER_JOB_PYTHON``, else (local mode: the Ray head runs
    on this machine) this process's, else the image's ``python``."""
    explicit = os.environ.get(JOB_PYTHON_ENV)
    if explicit:
        return shlex.quote(explicit)
    return shlex.quote(sys.executable) if settings.mode() == "local" else "python"


def _job(info: Any) -> Job:
    start = getattr(info, "start_time", None)
    return Job(
        job_id=str(info.submission_id or info.job_id),
        status=str(getattr(info.status, "value", info.status)),
        entrypoint=str(info.entrypoint)[:2000],
        submitted_at=dt.datetime.fromtimestamp(start / 1000, dt.UTC) if start else None,
        message=info.message,
    )


# ------------------------------------------------------------------------------------ system
def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    import httpx

    r = httpx.get(url, headers=headers or {}, timeout=PROBE_TIMEOUT_S)
    return r.status_code, r.text


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's ``histogram_quantile``: the ``q`` quantile from cumulative (upper bound,
    count) buckets, linear within the bucket (``None`` without observations)."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == float("inf"):
                return lower
            width = count - below
            return lower + (upper - lower) * ((rank - below) / width if width else 0.0)
        lower, below = upper, count
    return lower


def _probe(
    name: str, url: str | None, fn: Callable[[str], tuple[str, dict[str, Any]]]
) -> Component:
    if not url:
        return Component(name=name, ok=False, url=None, detail="not configured", values={})
    try:
        detail, values = fn(url)
        return Component(name=name, ok=True, url=url, detail=detail, values=values)
    except Exception as exc:  # a probe reports any failure as "down", with its reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Component(name=name, ok=False, url=url, detail=reason[:300], values={})


def system(engine: Engine, b: Backends) -> System:
    """Every component's state (module docstring), probed with a short timeout each."""

    def store(url: str) -> tuple[str, dict[str, Any]]:
        db_engine.check_current(engine)
        return "migrated to the code's revision", {"revision": db_engine.head_revision()}

    def mlflow(uri: str) -> tuple[str, dict[str, Any]]:
        if not uri.startswith("http"):
            return "embedded store", {}
        code, _ = _get(f"{uri.rstrip('/')}/health")
        if code != 200:
            raise BackendDown(f"/health answered {code}")
        return "tracking server answers", {}

    def ray(url: str) -> tuple[str, dict[str, Any]]:
        client = b.jobs()
        jobs = client.list_jobs()
        running = sum(1 for j in jobs if str(getattr(j.status, "value", j.status)) == "RUNNING")
        return f"Ray {client.get_version()} job API answers", {
            "jobs": len(jobs), "jobs_running": running
        }  # fmt: skip

    def serve(url: str) -> tuple[str, dict[str, Any]]:
        code, body = _get(f"{url}/readyz")
        headers = {"Authorization": f"Bearer {b.serve_token}"} if b.serve_token else {}
        values: dict[str, Any] = {}
        mcode, mbody = _get(f"{url}/v1/model", headers)
        if mcode == 200:
            model = json.loads(mbody)
            values.update(model=model.get("name"), version=model.get("version"))
        pcode, pbody = _get(f"{url}/metrics", headers)
        if pcode == 200:
            buckets = [
                (float(labels["le"]), v)
                for labels, v in _samples(pbody).get(
                    "raytrader_http_request_duration_seconds_bucket", []
                )
                if labels.get("route") == "/v1/decisions"
            ]
            for q in (0.5, 0.95):
                est = histogram_quantile(buckets, q)
                values[f"decision_latency_p{int(q * 100)}_ms"] = None if est is None else est * 1000
        if code != 200:
            raise BackendDown(f"/readyz answered {code}: {body[:200]}")
        return "ready", values

    def stream(url: str) -> tuple[str, dict[str, Any]]:
        code, body = _get(url)
        if code != 200:
            raise BackendDown(f"{url} answered {code}")
        s = _samples(body)
        lag = sum(v for _, v in s.get("raytrader_stream_consumer_lag", []))
        fresh = [
            (float(labels["le"]), v)
            for labels, v in s.get("raytrader_stream_feature_freshness_seconds_bucket", [])
        ]
        age = s.get("raytrader_stream_last_poll_age_seconds", [({}, float("nan"))])[0][1]
        p95 = histogram_quantile(fresh, 0.95)
        return "consumer metrics answer", {
            "consumer_lag": lag, "freshness_p95_s": p95, "last_poll_age_s": age
        }  # fmt: skip

    where = db_engine.redacted(engine.url.render_as_string(hide_password=False))
    return System(
        components=[
            _probe("store", where, store),
            _probe("mlflow", b.mlflow_uri, mlflow),
            _probe("ray", b.ray_dashboard, ray),
            _probe("decision_service", b.serve_url, serve),
            _probe("stream", b.stream_metrics, stream),
        ]
    )


# ------------------------------------------------------------------------------------ routes
def add_routes(
    app: FastAPI, read: dict[str, Any], admin: dict[str, Any], b: Backends,
    errors: Callable[..., dict[int | str, dict[str, Any]]],
) -> None:  # fmt: skip
    """The control routes on ``app`` (``read``/``admin``: the route dependencies)."""
    from raytrader import registry

    def registry_call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except registry.NothingToRollBack as exc:
            raise HTTPException(409, str(exc)) from None
        except ConfigError as exc:
            missing = "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc)
            raise HTTPException(404 if missing else 422, str(exc)) from None
        except BackendDown as exc:
            raise HTTPException(503, str(exc)) from None
        except Exception as exc:  # MLflow unreachable: requests' or MLflow's own errors
            raise HTTPException(503, f"model registry {b.mlflow_uri}: {exc}") from None

    @app.get(f"{PREFIX}/models", response_model=ModelList, responses=errors(401, 422, 503), **read)
    def list_models() -> ModelList:
        """Registered models with their versions and aliases (MLflow's registry)."""
        rows = registry_call(lambda: registry.list_models(tracking_uri=b.mlflow(), root="runs"))
        return ModelList(
            items=[
                RegisteredModel.model_validate(
                    {**r, "aliases": {a: str(v) for a, v in r["aliases"].items()}}
                )
                for r in rows
            ]
        )

    @app.post(
        f"{PREFIX}/models/{{name}}/promote", response_model=AliasMoved,
        responses=errors(400, 401, 403, 404, 422, 503), **admin,
    )  # fmt: skip
    def promote(name: ModelName, body: Promote = Body()) -> AliasMoved:  # noqa: B008 - FastAPI's
        """Point an alias at a version; the decision service follows (validated hot swap)."""
        prev = registry_call(
            lambda: registry.promote(name, body.version, body.alias, tracking_uri=b.mlflow())
        )
        return AliasMoved(name=name, alias=body.alias, version=body.version, previous=prev)

    @app.post(
        f"{PREFIX}/models/{{name}}/rollback", response_model=AliasMoved,
        responses=errors(400, 401, 403, 404, 409, 422, 503), **admin,
    )  # fmt: skip
    def rollback(name: ModelName, body: Rollback = Body()) -> AliasMoved:  # noqa: B008
        """Point an alias back at the version before its last promotion (409: none)."""
        now, was = registry_call(
            lambda: registry.rollback(name, body.alias, tracking_uri=b.mlflow())
        )
        return AliasMoved(name=name, alias=body.alias, version=now, previous=was)

    def jobs_call(fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(b.jobs())
        except BackendDown as exc:
            raise HTTPException(503, str(exc)) from None
        except HTTPException:
            raise
        except Exception as exc:  # the SDK's connection and HTTP errors
            raise HTTPException(503, f"Ray's job API {b.ray_dashboard}: {exc}") from None

    @app.get(f"{PREFIX}/jobs", response_model=JobList, responses=errors(401, 422, 503), **read)
    def list_jobs() -> JobList:
        """Ray jobs on the cluster, newest first."""
        jobs = jobs_call(lambda c: c.list_jobs())
        items = sorted((_job(j) for j in jobs), key=_submitted, reverse=True)
        return JobList(items=items)

    @app.post(
        f"{PREFIX}/jobs", response_model=Job, status_code=201,
        responses=errors(400, 401, 403, 404, 422, 503), **admin,
    )  # fmt: skip
    def submit(body: SubmitRun | SubmitOptimization = Body()) -> Job:  # noqa: B008
        """Submit a stored run's or search's config again, as a new Ray job."""
        with Session(app.state.engine) as s:
            entry, what = job_command(s, body, dt.datetime.now(dt.UTC))
        job_id = jobs_call(
            lambda c: c.submit_job(entrypoint=entry, metadata={"raytrader.source": what})
        )
        info = jobs_call(lambda c: c.get_job_info(job_id))
        return _job(info)

    @app.post(
        f"{PREFIX}/jobs/{{job_id}}/stop", response_model=Job,
        responses=errors(400, 401, 403, 404, 422, 503), **admin,
    )  # fmt: skip
    def stop(job_id: JobId) -> Job:
        """Stop a job (a finished one is left as it is)."""

        def do(c: Any) -> Any:
            try:
                c.get_job_info(job_id)
            except RuntimeError as exc:
                raise HTTPException(404, f"no job {job_id!r}") from exc
            c.stop_job(job_id)
            return c.get_job_info(job_id)

        return _job(jobs_call(do))

    @app.get(f"{PREFIX}/system", response_model=System, responses=errors(401, 422), **read)
    def get_system() -> System:
        """Is each component up (store, MLflow, Ray, decision service, stream consumer), and
        its numbers."""
        return system(app.state.engine, b)


def _submitted(job: Job) -> dt.datetime:
    return job.submitted_at or dt.datetime.min.replace(tzinfo=dt.UTC)
