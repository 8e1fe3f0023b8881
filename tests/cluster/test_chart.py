"""The Helm chart installed on the real cluster (``conftest.py``) with the KubeRay operator.

The session's raytrader image (``tests/support/image.py``) is imported into the node's containerd;
``helm upgrade --install`` with ``charts/raytrader/ci/cluster-values.yaml`` (sized for 2 cores,
images built here) must bring every Deployment and StatefulSet to Ready and every hook Job to
completion, the RayService to ``Ready``, and ``helm test`` must pass. Through the decision Service
(``kubectl port-forward``): ``/healthz`` answers, ``/v1/decisions`` is 401 without the token, and
``/metrics`` is scrapeable; the MLflow server answers through its Service too.

The data path, in the cluster: a Job registers the default ensemble in the in-cluster MLflow at the
alias the RayService follows, another replays GOOG's daily bars into the in-cluster Kafka; the
consumer's offline rows (read from the data volume) and the online row (read by a Job from Redis)
equal the batch features exactly, and the service answers 200 with the token, deciding from the
last replayed bar with the registered version.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raytrader.data import load_bars
from raytrader.features import feast_repo
from raytrader.features.engine import compute_features
from tests.cluster.conftest import REPO, Cluster
from tests.support.image import Built

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHART = REPO / "charts" / "raytrader"
VALUES = CHART / "ci" / "cluster-values.yaml"
RELEASE = NAMESPACE = "raytrader"
INSTALL_TIMEOUT = "15m"  # 2 cores: Kafka's JVM, MLflow, Feast and a Ray head start together


@pytest.fixture(scope="package")
def release(cluster: Cluster, image: Built) -> Iterator[Cluster]:
    cluster.load_image(image.env, image.tag)
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "namespace.yaml"))
    helm = ["helm", "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(VALUES)]
    cluster.run(*helm, "--wait", "--timeout", INSTALL_TIMEOUT, timeout=20 * 60)
    cluster.kubectl(
        "-n", NAMESPACE, "wait", f"rayservice/{RELEASE}-inference", "--for=condition=Ready",
        f"--timeout={INSTALL_TIMEOUT}", timeout=20 * 60,
    )  # fmt: skip
    yield cluster
    cluster.run("helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=600)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _forward(cluster: Cluster, target: str, port: int) -> Iterator[str]:
    """``kubectl port-forward`` to ``target``'s ``port``; the local base URL."""
    local = _free_port()
    proc = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "port-forward", target, f"{local}:{port}"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:<local> -> <port>"
        assert "Forwarding from" in line, proc.stderr.read() if proc.stderr else line
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _http(url: str, data: Any = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - loopback
    for attempt in range(30):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if attempt == 29:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (result := check()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(2)
    return result


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
    with _forward(release, f"svc/{RELEASE}-inference", 8000) as url:
        assert _http(f"{url}/healthz")[0] == 200
        status, _ = _http(f"{url}/v1/decisions", {"symbols": ["GOOG"]})
        assert status == 401
        status, body = _http(f"{url}/metrics")
        assert status == 200
        assert "raytrader_" in body


def test_mlflow_answers_through_its_service(release: Cluster) -> None:
    with _forward(release, f"svc/{RELEASE}-mlflow", 5000) as url:
        assert _http(f"{url}/health") == (200, "OK")


def _job_from_the_consumer(cluster: Cluster, name: str, command: str) -> dict[str, Any]:
    """A Job running ``command`` in the stream consumer's pod template: the same image, settings,
    secrets and data volume, so it sees the platform exactly as the consumer does."""
    deployment = cluster.json("-n", NAMESPACE, "get", f"deployment/{RELEASE}-stream-1d")
    template = deployment["spec"]["template"]
    template["metadata"] = {"labels": {"app.kubernetes.io/name": "cluster-test", "job": name}}
    spec = template["spec"]
    spec["restartPolicy"] = "Never"
    container = spec["containers"][0]
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "ports"):
        container.pop(key, None)
    container["args"] = [f". /etc/raytrader/bin/secret-env.sh && exec {command}"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600, "template": template},
    }


def _run_job(cluster: Cluster, name: str, command: str, timeout_s: int = 600) -> str:
    cluster.kubectl("-n", NAMESPACE, "delete", "job", name, "--ignore-not-found")
    cluster.apply(_job_from_the_consumer(cluster, name, command))
    done = subprocess.run(
        ["kubectl", "-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=Complete",
         f"--timeout={timeout_s}s"],
        env=cluster.env, capture_output=True, text=True, timeout=timeout_s + 60,
    )  # fmt: skip
    logs = cluster.kubectl("-n", NAMESPACE, "logs", f"job/{name}", check=False)
    assert done.returncode == 0, f"job {name} did not complete: {done.stderr}\n{logs[-3000:]}"
    return logs


def _volume_path(cluster: Cluster, claim: str) -> Path:
    """Where local-path keeps a PersistentVolumeClaim's files on this machine."""
    volume = cluster.json("-n", NAMESPACE, "get", "pvc", claim)["spec"]["volumeName"]
    source = cluster.json("get", "pv", volume)["spec"]
    return Path((source.get("hostPath") or source["local"])["path"])


REGISTER = (
    "python -c 'from raytrader.ensemble import default_ensemble; "
    'print(default_ensemble("http://raytrader-mlflow:5000", "/tmp/ensemble", data="goog"))\''
)
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
    version = _run_job(release, "register-ensemble", REGISTER).strip().splitlines()[-1]
    replay = json.loads(_run_job(release, "replay-goog", "raytrader stream replay --data goog "
                                 "--bootstrap raytrader-kafka:9092 --json").splitlines()[-1])  # fmt: skip
    assert replay["sent"] == len(goog)

    token = release.secret(f"{RELEASE}-api-tokens", "api-token")
    last_close = (goog.index[-1] + goog.timeframe.delta).to_pydatetime()
    with _forward(release, f"svc/{RELEASE}-inference", 8000) as url:

        def decided() -> dict[str, Any] | None:
            status, body = _http(f"{url}/v1/decisions", {"symbols": ["GOOG"]}, token)
            if status != 200:
                return None
            decision = json.loads(body)["decisions"][0]
            fresh = datetime.fromisoformat(decision["feature_time"]) == last_close
            return decision if fresh and decision["model"]["version"] == version else None

        decision = _wait_for(
            "a decision on the last replayed bar by the registered version", decided, 600
        )
    assert decision["stale"] is True  # 2013's bar, served with `stale: flag`
    assert decision["action"] in {"buy", "sell", "hold", "keep"}

    # every offline row the consumer wrote (the data volume) equals the batch computation, exactly
    data = _volume_path(release, f"{RELEASE}-data") / "feast"
    offline = feast_repo.read_offline("GOOG", data, timeframe="1d")
    expected = feast_repo.feature_rows(goog, batch)
    assert len(offline) == len(goog)
    for column in feast_repo.FEATURE_NAMES:
        got, want = offline[column].to_numpy(float), expected[column].to_numpy(float)
        assert np.array_equal(got, want, equal_nan=True), column
    for column in (feast_repo.WARM_COLUMN, feast_repo.BAR_OPEN_TIME, feast_repo.EVENT_TIMESTAMP):
        assert list(offline[column]) == list(expected[column]), column
    # and so does the online row the service decided from
    online = json.loads(_run_job(release, "read-online", ONLINE).splitlines()[-1])
    last = batch.iloc[-1]
    for name in feast_repo.FEATURE_NAMES:
        assert np.array_equal(online[name], last[name], equal_nan=True), name
