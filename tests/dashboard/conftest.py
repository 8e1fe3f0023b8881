"""The dashboard's fixtures: its client over the seeded experiment API (``tests/api``'s store,
served in-process by a Starlette ``TestClient``), over an empty store, and over
:class:`ContractApi`, an in-memory stand-in for the model, job and system routes (the contract
the dashboard is built against, before or besides the real ones).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from raytrader.api.app import create_app
from raytrader.api.control import Backends
from raytrader.dashboard.client import ApiClient
from tests.api import conftest as api_conftest
from tests.api.conftest import ADMIN, READ, TOKENS, Seeded, migrated_sqlite

#: the seeded store of the API's tests (session-scoped)
seeded = api_conftest.seeded

BASE = "http://testserver"


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the API's model routes find an (empty) embedded MLflow registry."""
    return tmp_path_factory.mktemp("mlflow")


def _backends(root: Path) -> Backends:
    """MLflow embedded under ``root``; Ray, the decision service and the stream unconfigured
    (the system route reports them down without probing this machine's ports)."""
    return Backends(mlflow_uri=f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def api(seeded: Seeded, mlflow_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiClient]:
    """The dashboard's client (read token) over the seeded store."""
    monkeypatch.chdir(mlflow_dir)  # the registry's artifact root ("runs") goes there
    app = create_app(seeded.engine, TOKENS, backends=_backends(mlflow_dir))
    with TestClient(app, base_url=BASE) as http:
        yield ApiClient(BASE, READ, http=http)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine = migrated_sqlite(tmp_path_factory.mktemp("empty"))
    yield engine
    engine.dispose()


@pytest.fixture
def empty_api(
    empty_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiClient]:
    """The dashboard's client over a migrated store without a row (and an empty registry)."""
    monkeypatch.chdir(tmp_path)
    app = create_app(empty_store, TOKENS, backends=_backends(tmp_path))
    with TestClient(app, base_url=BASE) as http:
        yield ApiClient(BASE, READ, http=http)


class ContractApi:
    """The model, job and system routes as agreed (``/api/v1/models``, ``.../promote``,
    ``.../rollback``, ``/api/v1/jobs``, ``/api/v1/system``), in memory, with the API's auth
    rules (401 without a known token, 403 the read token on an admin route)."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {
            "ensemble-goog": {
                "name": "ensemble-goog",
                "kind": "ensemble",
                "latest": 2,
                "aliases": {"champion": "1"},
                "versions": [
                    {
                        "version": "1",
                        "run_id": "abc123",
                        "created_at": "2024-05-01T10:00:00Z",
                        "tags": {"raytrader.data": "goog 2012..2019"},
                    },
                    {"version": "2", "run_id": None, "created_at": None, "tags": {}},
                ],
            }
        }
        self.history: dict[tuple[str, str], list[str]] = {}
        self.jobs: list[dict[str, Any]] = [
            {"job_id": "raysubmit_1", "status": "RUNNING", "entrypoint": "raytrader train rl",
             "submitted_at": "2024-05-01T10:00:00Z", "message": ""},
        ]  # fmt: skip
        self.components = [
            {"name": "store", "ok": True, "url": "sqlite:///x.db", "detail": "at head",
             "values": {"runs": 7}},
            {"name": "ray", "ok": True, "url": "ray://head:10001", "detail": "3 nodes",
             "values": {"cpu_total": 48.0, "cpu_available": 12.5, "jobs_running": 1}},
            {"name": "decision_service", "ok": False, "url": "http://serve:8000",
             "detail": "connection refused", "values": {"model": None, "p95_ms": None}},
        ]  # fmt: skip
        self.requests: list[tuple[str, str, Any]] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self, token: str = READ) -> ApiClient:
        return ApiClient(BASE, token, http=httpx.Client(transport=self.transport()))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, path, body))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in (READ, ADMIN):
            return httpx.Response(401, json={"detail": "missing or wrong bearer token"})
        if request.method == "POST" and token != ADMIN:
            return httpx.Response(
                403, json={"detail": "the read token cannot do this: use the admin token"}
            )
        parts = path.strip("/").split("/")[2:]  # after api/v1
        if request.method == "GET" and parts == ["models"]:
            return httpx.Response(200, json={"items": list(self.models.values())})
        if request.method == "GET" and parts == ["jobs"]:
            return httpx.Response(200, json={"items": self.jobs})
        if request.method == "GET" and parts == ["system"]:
            return httpx.Response(200, json={"components": self.components})
        if request.method == "POST" and len(parts) == 3 and parts[0] == "models":
            return self._alias(parts[1], parts[2], body or {})
        if request.method == "POST" and parts == ["jobs"]:
            job = {"job_id": f"raysubmit_{len(self.jobs) + 1}", "status": "PENDING",
                   "entrypoint": json.dumps(body), "submitted_at": None, "message": ""}  # fmt: skip
            self.jobs.append(job)
            return httpx.Response(200, json=job)
        return httpx.Response(404, json={"detail": "Not Found"})

    def _alias(self, name: str, action: str, body: dict[str, Any]) -> httpx.Response:
        model = self.models.get(name)
        if model is None:
            return httpx.Response(404, json={"detail": f"no model {name!r}"})
        alias = body["alias"]
        previous = model["aliases"].get(alias)
        history = self.history.setdefault((name, alias), [])
        if action == "promote":
            version = str(body["version"])
            if previous is not None and previous != version:
                history.append(previous)
        elif action == "rollback":
            if not history:
                return httpx.Response(
                    409,
                    json={"detail": f"model {name!r}: alias {alias!r} has no earlier version "
                          "to roll back to"},
                )  # fmt: skip
            version = history.pop()
        else:
            return httpx.Response(404, json={"detail": "Not Found"})
        model["aliases"][alias] = version
        return httpx.Response(
            200, json={"name": name, "alias": alias, "version": version, "previous": previous}
        )


@pytest.fixture
def contract() -> ContractApi:
    return ContractApi()


def write_token(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    return path
