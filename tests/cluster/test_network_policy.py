"""The chart's NetworkPolicies, enforced: the node runs kube-router's firewall controller
(``scripts/cluster/up.sh``), so a policy that lets too much or too little through shows up here.

Three probe pods dial every port that matters, by pod IP (a Service only adds kube-proxy's DNAT in
front of the same rules):

* an *outsider* in the release's namespace with none of the chart's opt-in labels,
* a *client* in the same namespace labelled as a Ray, Kafka, MLflow and Feast client,
* a *foreigner* in another namespace carrying the same labels (opt-in labels count only inside the
  release's namespace).

Only the decision service's port is open to the outsider; the client reaches the Ray dashboard and
Ray client ports, MLflow, Kafka, Redis and PostgreSQL, but never Ray's GCS; the foreigner reaches
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import BUSYBOX, NAMESPACE, RELEASE, Cluster
from tests.cluster.platform import CLIENT_LABELS, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FOREIGN = "cluster-test-foreign"
OPT_IN = {**CLIENT_LABELS, "raytrader.io/ray-client": "true"}
# target -> the port, and whether the outsider and the client may open it
PORTS = {
    "ray dashboard": ("head", 8265, False, True),
    "ray client": ("head", 10001, False, True),
    "ray gcs": ("head", 6379, False, False),
    "decision service": ("head", 8000, True, True),
    "mlflow": ("mlflow", 5000, False, True),
    "kafka": ("kafka", 9092, False, True),
    "redis": ("redis", 6379, False, True),
    "postgresql": ("postgresql", 5432, False, True),
}


def _probe(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "cluster-test", "probe": name, **labels},
        },
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": BUSYBOX,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }


@pytest.fixture(scope="module")
def probes(release: Cluster) -> Iterator[Cluster]:
    release.kubectl("delete", "namespace", FOREIGN, "--ignore-not-found", timeout=300)
    release.kubectl("create", "namespace", FOREIGN)
    pods = [
        _probe("np-outsider", NAMESPACE, {}),
        _probe("np-client", NAMESPACE, OPT_IN),
        _probe("np-foreigner", FOREIGN, OPT_IN),
    ]
    for pod in pods:
        release.apply(pod)
    for pod in pods:
        meta = pod["metadata"]
        release.kubectl(
            "-n", meta["namespace"], "wait", "--for=condition=Ready", f"pod/{meta['name']}",
            "--timeout=120s", timeout=180,
        )  # fmt: skip
    yield release
    release.kubectl("-n", NAMESPACE, "delete", "pod", "np-outsider", "np-client", "--wait=false")
    release.kubectl("delete", "namespace", FOREIGN, "--wait=false")


def _pod_ip(cluster: Cluster, selector: str) -> str:
    pods = cluster.json("-n", NAMESPACE, "get", "pods", "-l", selector)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, f"no running pod matches {selector}"
    return str(running[0]["status"]["podIP"])


def _targets(cluster: Cluster) -> dict[str, str]:
    release = f"app.kubernetes.io/instance={RELEASE}"
    ips = {
        "head": _pod_ip(cluster, "raytrader.io/ray-cluster=inference,raytrader.io/ray-node=head")
    }
    for component in ("mlflow", "kafka", "redis", "postgresql"):
        ips[component] = _pod_ip(cluster, f"{release},app.kubernetes.io/component={component}")
    return ips


def _opens(cluster: Cluster, probe: tuple[str, str], address: str) -> bool:
    namespace, pod = probe
    out = cluster.kubectl(
        "-n", namespace, "exec", pod, "--", "netcheck", "dial", address, check=False, timeout=30
    )
    return out.strip() == "open"


def test_only_the_allowed_pods_reach_ray_and_the_stores(probes: Cluster) -> None:
    ips = _targets(probes)
    outsider, client = (NAMESPACE, "np-outsider"), (NAMESPACE, "np-client")
    foreigner = (FOREIGN, "np-foreigner")
    # what must open first: kube-router adds a new pod to the policies' sets on its next sync, so a
    # closed port before that proves nothing
    for name, (target, port, outsider_may, client_may) in PORTS.items():
        address = f"{ips[target]}:{port}"
        for probe, may in ((outsider, outsider_may), (client, client_may)):
            if may:
                wait_for(f"{probe[1]} to reach {name} ({address})",
                         lambda p=probe, a=address: _opens(probes, p, a), 90)  # fmt: skip
    seen = {
        name: (
            _opens(probes, outsider, f"{ips[target]}:{port}"),
            _opens(probes, client, f"{ips[target]}:{port}"),
            _opens(probes, foreigner, f"{ips[target]}:{port}"),
        )
        for name, (target, port, _, _) in PORTS.items()
    }
    expected = {name: (o, c, False) for name, (_, _, o, c) in PORTS.items()}
    print("reachable (outsider, client, foreigner): " + repr(seen))
    assert seen == expected


def test_the_node_enforces_with_kube_router(cluster: Cluster) -> None:
    """The enforcement is a real policy controller on the node, not an assumption."""
    holder = Path(cluster.env["KUBECONFIG"]).parent / "holder.pid"
    chains = cluster.run(
        "nsenter", "-t", holder.read_text().strip(), "-m", "-n",
        "iptables", "-w", "5", "-S", "KUBE-ROUTER-FORWARD", timeout=60,
    )  # fmt: skip
    assert "KUBE-POD-FW-" in chains
