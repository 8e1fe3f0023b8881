"""Helpers for the tests that use the chart installed on the cluster (``release`` in conftest.py):
port-forwards, HTTP calls, Jobs run in the stream consumer's own pod template, steady load on the
decision service from inside the cluster, volume paths."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.cluster.conftest import NAMESPACE, RELEASE, Cluster

SERVICE = f"{RELEASE}-inference"
RATE = 10  # requests/s: steady, well inside what the one replica answers on 2 cores
TIMEOUT_S = 30  # a request without an answer by then fails (a common client default)
# the chart's opt-in labels for a pod of the namespace that calls Kafka, MLflow and Feast's stores
CLIENT_LABELS = {f"raytrader.io/{client}-client": "true" for client in ("kafka", "mlflow", "feast")}

# a Job's command: registers the default ensemble (GOOG's rule members) in the in-cluster MLflow at
# the alias the RayService follows, and prints the version
REGISTER = (
    "python -c 'from raytrader.ensemble import default_ensemble; "
    f'print(default_ensemble("http://{RELEASE}-mlflow:5000", "/tmp/ensemble", data="goog"))\''
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def forward(cluster: Cluster, target: str, port: int) -> Iterator[str]:
    """``kubectl port-forward`` to ``target``'s ``port``; the local base URL."""
    local = free_port()
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


def http(url: str, data: Any = None, token: str | None = None) -> tuple[int, str]:
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


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    """Polls ``check`` every second until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)
    return result


def active_ray_cluster(cluster: Cluster) -> str:
    """The Ray cluster the RayService serves from (after an upgrade KubeRay deletes the old one
    a while later, so two may run)."""
    service = cluster.json("-n", NAMESPACE, "get", f"rayservice/{SERVICE}")
    return str(service["status"]["activeServiceStatus"]["rayClusterName"])


def upgrade_ray_cluster(cluster: Cluster, *extra: str) -> float:
    """``helm upgrade`` with ``extra`` values that change the RayService's Ray cluster (KubeRay
    starts a new one and moves the Service to it when it serves); returns, with the seconds it
    took, once decisions come from the new cluster and the old one is gone (it would hold CPU and
    memory for KubeRay's deletion delay)."""
    t0 = time.monotonic()
    cluster.helm_upgrade(*extra)
    cluster.wait_served()
    token = cluster.secret(f"{RELEASE}-api-tokens", "api-token")
    with forward(cluster, f"svc/{SERVICE}", 8000) as url:
        wait_for(
            "a decision",
            lambda: http(f"{url}/v1/decisions", {"symbols": ["GOOG"]}, token)[0] == 200,
            600,
        )
    switched = time.monotonic() - t0
    active = active_ray_cluster(cluster)

    def alone() -> bool:
        names = [c["metadata"]["name"] for c in cluster.json(
            "-n", NAMESPACE, "get", "rayclusters")["items"]]  # fmt: skip
        return [n for n in names if n.startswith(SERVICE)] == [active]

    wait_for("the old Ray cluster gone", alone, 600)
    return switched


def job_from_the_consumer(cluster: Cluster, name: str, command: str) -> dict[str, Any]:
    """A Job running ``command`` in the stream consumer's pod template: the same image, settings,
    secrets and data volume, so it sees the platform exactly as the consumer does."""
    deployment = cluster.json("-n", NAMESPACE, "get", f"deployment/{RELEASE}-stream-1d")
    template = deployment["spec"]["template"]
    # not one of the release's pods: the chart's NetworkPolicies let it in as a user's pod would be,
    # through the opt-in client labels
    labels = {"app.kubernetes.io/name": "cluster-test", "job": name, **CLIENT_LABELS}
    template["metadata"] = {"labels": labels}
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


def run_job(cluster: Cluster, name: str, command: str, timeout_s: int = 600) -> str:
    cluster.kubectl("-n", NAMESPACE, "delete", "job", name, "--ignore-not-found")
    cluster.apply(job_from_the_consumer(cluster, name, command))
    done = subprocess.run(
        ["kubectl", "-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=Complete",
         f"--timeout={timeout_s}s"],
        env=cluster.env, capture_output=True, text=True, timeout=timeout_s + 60,
    )  # fmt: skip
    logs = cluster.kubectl("-n", NAMESPACE, "logs", f"job/{name}", check=False)
    assert done.returncode == 0, (
        f"job {name} did not complete: {done.stderr}\n{logs[-3000:]}\n{cluster.diagnosis()}"
    )
    return logs


def load_command(rate: int, seconds: int) -> str:
    """One ``serve load`` run against the Service; its JSON summary is the Job log's last line."""
    return (
        f"raytrader serve load --url http://{SERVICE}:8000 --rate {rate} --seconds {seconds} "
        f"--timeout {TIMEOUT_S} --json || true"
    )


def load_job(cluster: Cluster, name: str, *runs: str) -> dict[str, Any]:
    """A Job running the ``serve load`` ``runs`` one after the other, with the API token."""
    job = job_from_the_consumer(cluster, name, f"sh -c '{'; '.join(runs)}'")
    container = job["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("env", []).append({
        "name": "RAYTRADER_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": f"{RELEASE}-api-tokens", "key": "api-token"}},
    })  # fmt: skip
    return job


def under_load(
    cluster: Cluster, name: str, seconds: int, change: Callable[[], object]
) -> dict[str, Any]:
    """Runs a load Job at :data:`RATE` for ``seconds``; once it answers, ``change()`` runs. The
    load's summary (printed to the test log)."""
    cluster.kubectl("-n", NAMESPACE, "delete", "job", name, "--ignore-not-found")
    cluster.apply(load_job(cluster, name, load_command(RATE, seconds)))
    selector = f"batch.kubernetes.io/job-name={name}"
    pods = ("-n", NAMESPACE, "get", "pod", "-l", selector, "-o", "name")
    # `kubectl wait -l` fails at once while the Job controller has not created the pod yet
    wait_for(f"a pod of job {name}", lambda: cluster.kubectl(*pods).strip(), 60)
    cluster.wait(
        "-n", NAMESPACE, "wait", "pod", "-l", f"batch.kubernetes.io/job-name={name}",
        "--for=condition=Ready", "--timeout=180s", timeout=240,
    )  # fmt: skip
    time.sleep(15)  # steady state first
    change()
    cluster.wait(
        "-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=Complete",
        f"--timeout={seconds + 120}s", timeout=seconds + 180,
    )  # fmt: skip
    logs = cluster.kubectl("-n", NAMESPACE, "logs", f"job/{name}")
    summary = json.loads(logs.strip().splitlines()[-1])
    print(f"{name}: " + json.dumps({k: v for k, v in summary.items() if k != "timeline"}))
    print(f"{name} timeline: " + json.dumps(summary["timeline"]))
    return dict(summary)


def move_alias_under_load(cluster: Cluster, job: str, command: str, load: str) -> dict[str, Any]:
    """Runs ``command`` (registers a version and moves the alias; prints the version last) as Job
    ``job`` while load Job ``load`` runs; checks no request failed and the new version is what
    the service answers with at the end. The load's summary, with ``new``: that version."""
    registered: list[str] = []

    def register_and_move() -> None:
        registered.append(run_job(cluster, job, command).strip().splitlines()[-1])

    summary = under_load(cluster, load, 100, register_and_move)
    (new,) = registered
    assert summary["failed"] == 0, summary["first_errors"]
    assert summary["sent"] == 100 * RATE
    assert all(s["versions"] == [new] for s in summary["timeline"][-10:]), summary["timeline"]
    return {**summary, "new": new}


def volume_path(cluster: Cluster, claim: str) -> Path:
    """Where local-path keeps a PersistentVolumeClaim's files on this machine."""
    volume = cluster.json("-n", NAMESPACE, "get", "pvc", claim)["spec"]["volumeName"]
    source = cluster.json("get", "pv", volume)["spec"]
    return Path((source.get("hostPath") or source["local"])["path"])


def offline_rows(cluster: Cluster, symbol: str) -> Any:
    """The consumer's offline Feast rows of ``symbol`` (1d), read from the data volume."""
    from raytrader.features import feast_repo

    data = volume_path(cluster, f"{RELEASE}-data") / "feast"
    return feast_repo.read_offline(symbol, data, timeframe="1d")


def assert_equal_to_batch(rows: Any, bars: Any) -> None:
    """Every offline row equals the batch computation on ``bars``, exactly, one row per bar."""
    import numpy as np

    from raytrader.features import feast_repo
    from raytrader.features.engine import compute_features

    expected = feast_repo.feature_rows(bars, compute_features(bars))
    assert len(rows) == len(bars)
    for column in feast_repo.FEATURE_NAMES:
        got, want = rows[column].to_numpy(float), expected[column].to_numpy(float)
        assert np.array_equal(got, want, equal_nan=True), column
    for column in (feast_repo.WARM_COLUMN, feast_repo.BAR_OPEN_TIME, feast_repo.EVENT_TIMESTAMP):
        assert list(rows[column]) == list(expected[column]), column
