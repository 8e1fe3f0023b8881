"""The Helm chart installed on the real cluster (``conftest.py``) with the KubeRay operator.

The session's raytrader image (``tests/support/image.py``) is imported into the node's containerd;
``helm upgrade --install`` with ``charts/raytrader/ci/cluster-values.yaml`` (sized for 2 cores,
images built here) must bring every Deployment and StatefulSet to Ready and every hook Job to
completion, the RayService to ``Ready``, and ``helm test`` must pass. Through the decision Service
(``kubectl port-forward``): ``/healthz`` answers, ``/v1/decisions`` is 401 without the token, and
``/metrics`` is scrapeable; the MLflow server answers through its Service too.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

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
