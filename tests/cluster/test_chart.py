"""The Helm chart installed on the real cluster (``conftest.py``) with the KubeRay operator.

The session's raytrader image (``tests/support/image.py``) is imported into the node's containerd;
``helm upgrade --install`` with ``charts/raytrader/ci/cluster-values.yaml`` (sized for 2 cores,
images built here) must bring every Deployment and StatefulSet to Ready and every hook Job to
completion, the RayService to ``Ready``, and ``helm test`` must pass. Through the decision Service
(``kubectl port-forward``): ``/healthz`` answers, ``/v1/decisions`` is 401 without the token, and
``/metrics`` is scrapeable; the MLflow server, the experiment API (with its token) and the
dashboard answer through their Services too.

The data path, in the cluster: a Job registers the default ensemble in the in-cluster MLflow at the
alias the RayService follows, another replays GOOG's daily bars into the in-cluster Kafka; the
consumer's offline rows (read from the data volume) and the online row (read by a Job from Redis)
equal the batch features exactly, and the service answers 200 with the token, deciding from the
last replayed bar with the registered version.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from raytrader.data import load_bars
from raytrader.features import feast_repo
from raytrader.features.engine import compute_features
from tests.cluster.conftest import NAMESPACE, RELEASE, Cluster
from tests.cluster.platform import (
    REGISTER,
    assert_equal_to_batch,
    forward,
    http,
    offline_rows,
    run_job,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_workload_is_ready_and_every_hook_job_completed(release: Cluster) -> None:
    for deployment in release.json("-n", NAMESPACE, "get", "deployments")["items"]:
        status = deployment["status"]
        assert status.get("availableReplicas") == deployment["spec"]["replicas"], deployment[
            "metadata"
        ]["name"]
    for statefulset in release.json("-n", NAMESPACE, "get", "statefulsets")["items"]:
        status = statefulset["status"]
        assert status.get("readyReplicas") == statefulset["spec"]["replicas"], statefulset[
            "metadata"
        ]["name"]
    for job in release.json("-n", NAMESPACE, "get", "jobs")["items"]:
        assert job["status"].get("succeeded") == 1, job["metadata"]["name"]
    pvcs = release.json("-n", NAMESPACE, "get", "pvc")["items"]
    assert pvcs
    assert {p["status"]["phase"] for p in pvcs} == {"Bound"}


def test_the_rayservice_is_ready_on_a_ready_ray_cluster(release: Cluster) -> None:
    service = release.json("-n", NAMESPACE, "get", f"rayservice/{RELEASE}-inference")
    ready = {c["type"]: c["status"] for c in service["status"]["conditions"]}
    assert ready["Ready"] == "True"
    clusters = release.json("-n", NAMESPACE, "get", "rayclusters")["items"]
    assert [c["status"].get("state") for c in clusters] == ["ready"]


def test_helm_test_passes(release: Cluster) -> None:
    out = release.run(
        "helm", "test", RELEASE, "-n", NAMESPACE, "--logs", "--timeout", "5m", timeout=400
    )
    assert "Phase:          Succeeded" in out


def test_the_decision_service_answers_through_its_service(release: Cluster) -> None:
    with forward(release, f"svc/{RELEASE}-inference", 8000) as url:
        assert http(f"{url}/healthz")[0] == 200
        status, _ = http(f"{url}/v1/decisions", {"symbols": ["GOOG"]})
        assert status == 401
        status, body = http(f"{url}/metrics")
        assert status == 200
        assert "raytrader_" in body


def test_mlflow_answers_through_its_service(release: Cluster) -> None:
    with forward(release, f"svc/{RELEASE}-mlflow", 5000) as url:
        assert http(f"{url}/health") == (200, "OK")


def test_the_experiment_api_and_the_dashboard_answer_through_their_services(
    release: Cluster,
) -> None:
    """The API migrated the in-cluster store (readyz), refuses a request without its token, and
    with the read token from its Secret lists runs and sees the store and MLflow up; the
    dashboard's Streamlit server answers."""
    token = release.secret(f"{RELEASE}-experiment-api-tokens", "read-token")
    with forward(release, f"svc/{RELEASE}-experiment-api", 8080) as url:
        assert http(f"{url}/readyz")[0] == 200
        assert http(f"{url}/api/v1/runs")[0] == 401
        status, body = http(f"{url}/api/v1/runs", token=token)
        assert status == 200, body
        assert "items" in json.loads(body)
        status, body = http(f"{url}/api/v1/system", token=token)
        assert status == 200, body
        up = {c["name"]: c["ok"] for c in json.loads(body)["components"]}
        assert up["store"], body
        assert up["mlflow"], body
    with forward(release, f"svc/{RELEASE}-dashboard", 8501) as url:
        assert http(f"{url}/_stcore/health") == (200, "ok")


ONLINE = (
    "python -c 'import json; from raytrader.features import feast_repo as f; "
    'row = f.online_rows(f.store(), ["GOOG"], "1d").iloc[0]; '
    "print(json.dumps({k: float(row[k]) for k in f.FEATURE_NAMES}))'"
)


def test_replayed_bars_reach_feast_and_a_decision_of_the_registered_ensemble(
    release: Cluster,
) -> None:
    goog = load_bars("goog")
    batch = compute_features(goog)
    # a model in the in-cluster registry at the alias the RayService follows, then every GOOG bar
    # through the in-cluster Kafka to the consumer
    version = run_job(release, "register-ensemble", REGISTER).strip().splitlines()[-1]
    replay = json.loads(run_job(release, "replay-goog", "raytrader stream replay --data goog "
                                 "--bootstrap raytrader-kafka:9092 --json").splitlines()[-1])  # fmt: skip
    assert replay["sent"] == len(goog)

    token = release.secret(f"{RELEASE}-api-tokens", "api-token")
    last_close = (goog.index[-1] + goog.timeframe.delta).to_pydatetime()
    with forward(release, f"svc/{RELEASE}-inference", 8000) as url:

        def decided() -> dict[str, Any] | None:
            status, body = http(f"{url}/v1/decisions", {"symbols": ["GOOG"]}, token)
            if status != 200:
                return None
            decision = json.loads(body)["decisions"][0]
            fresh = datetime.fromisoformat(decision["feature_time"]) == last_close
            return decision if fresh and decision["model"]["version"] == version else None

        decision = wait_for(
            "a decision on the last replayed bar by the registered version", decided, 600
        )
    assert decision["stale"] is True  # 2013's bar, served with `stale: flag`
    assert decision["action"] in {"buy", "sell", "hold", "keep"}

    # every offline row the consumer wrote (the data volume) equals the batch computation, exactly
    assert_equal_to_batch(offline_rows(release, "GOOG"), goog)
    # and so does the online row the service decided from
    online = json.loads(run_job(release, "read-online", ONLINE).splitlines()[-1])
    last = batch.iloc[-1]
    for name in feast_repo.FEATURE_NAMES:
        assert np.array_equal(online[name], last[name], equal_nan=True), name
