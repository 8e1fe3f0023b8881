"""The experiment API's control routes against the real things: MLflow's registry (an embedded
store), Ray's job API (the local stack's head) and the components' own endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from raytrader.api.app import create_app
from raytrader.api.control import Backends, histogram_quantile
from tests.api.conftest import ADMIN_AUTH, AUTH, NOWHERE, TOKENS, Seeded
from tests.support.stack_fixture import stack  # noqa: F401


def registry(tmp_path: Path, versions: int = 3) -> str:
    """An embedded MLflow registry with model ``m`` at ``versions`` versions."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = MlflowClient(uri, uri)
    client.create_registered_model("m")
    for _ in range(versions):
        client.create_model_version("m", source=str(tmp_path), tags={"raytrader.kind": "rule"})
    return uri


def test_promote_and_roll_back_an_alias(seeded: Seeded, tmp_path: Path) -> None:
    uri = registry(tmp_path)
    client = TestClient(create_app(seeded.engine, TOKENS, Backends(mlflow_uri=uri)))
    listed = client.get("/api/v1/models", headers=AUTH).json()["items"]
    assert [(m["name"], m["latest"], m["kind"]) for m in listed] == [("m", 3, "rule")]
    assert [v["version"] for v in listed[0]["versions"]] == ["3", "2", "1"]
    moves = [("1", None), ("3", "1"), ("2", "3")]
    for version, previous in moves:
        r = client.post("/api/v1/models/m/promote", json={"version": version}, headers=ADMIN_AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "name": "m",
            "alias": "champion",
            "version": version,
            "previous": previous,
        }
    back = [("3", "2"), ("1", "3")]
    for version, previous in back:
        r = client.post("/api/v1/models/m/rollback", json={}, headers=ADMIN_AUTH)
        assert r.json() == {
            "name": "m",
            "alias": "champion",
            "version": version,
            "previous": previous,
        }
    assert client.get("/api/v1/models", headers=AUTH).json()["items"][0]["aliases"] == {
        "champion": "1"
    }
    nothing = client.post("/api/v1/models/m/rollback", json={}, headers=ADMIN_AUTH)
    assert nothing.status_code == 409
    assert "no earlier version" in nothing.json()["detail"]
    # the read token cannot promote; unknown models and versions are named
    assert (
        client.post("/api/v1/models/m/promote", json={"version": "2"}, headers=AUTH).status_code
        == 403
    )
    missing = client.post("/api/v1/models/x/promote", json={"version": "1"}, headers=ADMIN_AUTH)
    assert missing.status_code == 404
    bad = client.post(
        "/api/v1/models/m/promote", json={"version": "1", "alias": "prod"}, headers=ADMIN_AUTH
    )
    assert bad.status_code == 422
    assert "alias" in bad.json()["detail"]


def test_backends_that_do_not_answer_are_named_not_500(seeded: Seeded) -> None:
    down = Backends(mlflow_uri=f"{NOWHERE}", ray_dashboard=NOWHERE, serve_url=NOWHERE,
                    stream_metrics=f"{NOWHERE}/metrics")  # fmt: skip
    client = TestClient(create_app(seeded.engine, TOKENS, down))
    jobs = client.get("/api/v1/jobs", headers=AUTH)
    assert jobs.status_code == 503
    assert NOWHERE in jobs.json()["detail"]
    submit = client.post("/api/v1/jobs", json={"run_id": seeded.rl_run_id}, headers=ADMIN_AUTH)
    assert submit.status_code == 503
    components = {
        c["name"]: c for c in client.get("/api/v1/system", headers=AUTH).json()["components"]
    }
    assert components["store"]["ok"]
    for name in ("ray", "decision_service", "stream"):
        assert not components[name]["ok"]
        assert components[name]["url"].startswith(NOWHERE)
    none = TestClient(create_app(seeded.engine, TOKENS, Backends()))
    assert none.get("/api/v1/models", headers=AUTH).status_code == 503
    systems = none.get("/api/v1/system", headers=AUTH).json()["components"]
    assert {c["detail"] for c in systems if c["name"] != "store"} == {"not configured"}


def test_a_stored_run_that_is_not_trainable_is_refused(seeded: Seeded) -> None:
    client = TestClient(create_app(seeded.engine, TOKENS))
    r = client.post("/api/v1/jobs", json={"run_id": seeded.rules_run_id}, headers=ADMIN_AUTH)
    assert r.status_code == 422
    assert "rl and supervised" in r.json()["detail"]
    both = client.post("/api/v1/jobs", json={"run_id": 1, "optimization_id": 1}, headers=ADMIN_AUTH)
    assert both.status_code == 422
    assert (
        client.post("/api/v1/jobs", json={"run_id": 10**9}, headers=ADMIN_AUTH).status_code == 404
    )


def test_histogram_quantile_is_prometheus_s() -> None:
    buckets = [(0.01, 10.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.01 + 0.09 * (40 / 80))
    assert histogram_quantile(buckets, 0.95) == pytest.approx(0.1 + 0.9 * 0.5)
    assert histogram_quantile([], 0.5) is None
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_a_pipeline_takes_its_config_as_json(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "raytrader.training.supervised", "--config-json", "{nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--config-json: not JSON" in bad.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "raytrader.training.supervised", "--config-json", '{"x": 1}'],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "--config-json.x" in unknown.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_a_stored_rl_run_is_submitted_again_as_a_ray_job(
    stack: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Train a tiny RL run (recorded), resubmit its stored config through the API to the stack's
    Ray head, wait for the job, and find the new run in the store; then stop a finished job."""
    from raytrader.db.engine import make_engine, upgrade
    from raytrader.db.store import ExperimentStore, RunSpec

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    store = ExperimentStore(engine)
    config = {"iterations": 1, "checkpoint_every": 1, "train_batch_size": 256,
              "minibatch_size": 64, "num_epochs": 1, "mlflow": False,
              "output_dir": str(tmp_path / "rl")}  # fmt: skip
    run_id = store.start_run(RunSpec(key="rl:seed", kind="rl", name="ppo", config=config))
    env = stack.config.client_env()
    # Ray's SDK prefers RAY_API_SERVER_ADDRESS to the address it is given
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", env["RAY_API_SERVER_ADDRESS"])
    backends = Backends(
        ray_dashboard=env["RAY_API_SERVER_ADDRESS"], ray_token_path=env["RAY_AUTH_TOKEN_PATH"]
    )
    client = TestClient(create_app(engine, TOKENS, backends))
    r = client.post("/api/v1/jobs", json={"run_id": run_id}, headers=ADMIN_AUTH)
    assert r.status_code == 201, r.text
    job = r.json()
    assert "--config-json" in job["entrypoint"]
    deadline = time.monotonic() + 300
    while True:
        listed = {j["job_id"]: j for j in client.get("/api/v1/jobs", headers=AUTH).json()["items"]}
        status = listed[job["job_id"]]["status"]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status == "SUCCEEDED", listed[job["job_id"]]["message"]
    # the job ran the stored config into a fresh output directory, and recorded its own run
    fresh = [p for p in tmp_path.iterdir() if p.name.startswith("rl-")]
    assert len(fresh) == 1
    saved = json.loads((fresh[0] / "config.json").read_text())
    assert saved["iterations"] == 1
    stopped = client.post(f"/api/v1/jobs/{job['job_id']}/stop", headers=ADMIN_AUTH)
    assert stopped.json()["status"] == "SUCCEEDED"  # a finished job is left as it is
    assert client.post("/api/v1/jobs/nope/stop", headers=ADMIN_AUTH).status_code == 404
    engine.dispose()
