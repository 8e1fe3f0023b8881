"""Kubernetes itself on real pods: the node and every control-plane pod at the pinned version, DNS
through CoreDNS, a ClusterIP Service through kube-proxy's rules, ``kubectl exec`` and logs, a
liveness probe restarting a container, pod cgroups contained under our own root, and the host's
kernel settings untouched while the kubelet runs (the cluster comes from ``conftest.py``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    BUSYBOX,
    CGROUP_ROOT,
    K8S_VERSION,
    NODE,
    SHIELDED_SYSCTLS,
    Cluster,
    read_sysctls,
)
from tests.cluster.platform import wait_for
from tests.support.node import NODE_CPU_M, SYSTEM_CPU_REQUESTS_M, SYSTEM_NAMESPACES, millicores

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pod(name: str, *command: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": name,
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        "command": list(command),
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "cluster-test", "labels": {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1, **spec},
    }


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[Cluster]:
    # a namespace left by an interrupted run is removed first (its pods would answer instead)
    cluster.kubectl("delete", "namespace", "cluster-test", "--ignore-not-found", timeout=300)
    cluster.kubectl("create", "namespace", "cluster-test")
    yield cluster
    cluster.kubectl("delete", "namespace", "cluster-test", timeout=300)


def test_the_node_is_ready_at_the_pinned_version(cluster: Cluster) -> None:
    node = cluster.json("get", "node", NODE)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == K8S_VERSION
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert ready["DiskPressure"] == ready["MemoryPressure"] == "False"
    assert node["spec"].get("taints", []) == []  # one node: it runs the workloads too
    assert cluster.kubectl("version", "-o", "json").count(K8S_VERSION) == 2  # client and server


def test_every_control_plane_pod_runs(cluster: Cluster) -> None:
    pods = cluster.json("-n", "kube-system", "get", "pods")["items"]
    names = {p["metadata"]["name"] for p in pods}
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"{component}-{NODE}" in names  # kubeadm's static pods, mirrored by the kubelet
    for pod in pods:
        phase = pod["status"]["phase"]
        ready = [c["ready"] for c in pod["status"].get("containerStatuses", [])]
        assert (phase, all(ready)) == ("Running", True), pod["metadata"]["name"]
    proxies = [p for p in pods if p["metadata"]["name"].startswith("kube-proxy-")]
    dns = [p for p in pods if p["metadata"]["name"].startswith("coredns-")]
    assert (len(proxies), len(dns)) == (1, 2)


def test_the_node_has_the_cpu_the_chart_s_cluster_values_were_sized_for(cluster: Cluster) -> None:
    """tests/support/node.py's numbers, which the offline chart test adds the values' requests to."""
    node = cluster.json("get", "node", NODE)
    assert millicores(node["status"]["allocatable"]["cpu"]) >= NODE_CPU_M
    requested = 0
    for namespace in SYSTEM_NAMESPACES:
        for pod in cluster.json("-n", namespace, "get", "pods")["items"]:
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            for c in pod["spec"]["containers"]:
                cpu = ((c.get("resources") or {}).get("requests") or {}).get("cpu", 0)
                requested += millicores(cpu)
    assert requested == SYSTEM_CPU_REQUESTS_M


def test_dns_and_a_cluster_ip_service_reach_a_pod(namespace: Cluster) -> None:
    web = _pod("web", "netcheck", "serve", ":8080", "hello-from-web")
    namespace.apply(web)
    namespace.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "cluster-test"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    namespace.kubectl(
        "-n", "cluster-test", "wait", "--for=condition=Ready", "pod/web", "--timeout=120s"
    )
    client = _pod("client", "sleep", "3600")
    namespace.apply(client)
    namespace.kubectl(
        "-n", "cluster-test", "wait", "--for=condition=Ready", "pod/client", "--timeout=120s"
    )

    def fetch() -> str:
        url = "http://web.cluster-test.svc.cluster.local/"
        get = ("netcheck", "get", url)
        return namespace.kubectl("-n", "cluster-test", "exec", "client", "--", *get, check=False)

    assert wait_for("the Service by its DNS name", fetch, timeout=60).strip() == "hello-from-web"


def test_a_failing_liveness_probe_restarts_the_container(namespace: Cluster) -> None:
    # /alive is in the container's own root filesystem
    probe = {"exec": {"command": ["cat", "/alive"]}, "initialDelaySeconds": 2, "periodSeconds": 1}
    probe["failureThreshold"] = 1
    pod = _pod(
        "flaky",
        "sh",
        "-c",
        "echo started; touch /alive; sleep 3; rm /alive; exec sleep 3600",
        container={"livenessProbe": probe},
    )
    namespace.apply(pod)

    def restarted() -> bool:
        status = namespace.json("-n", "cluster-test", "get", "pod", "flaky")["status"]
        return any(c["restartCount"] >= 1 for c in status.get("containerStatuses", []))

    wait_for("a restart by the liveness probe", restarted, timeout=120)
    logs = namespace.kubectl("-n", "cluster-test", "logs", "flaky", "--previous")
    assert logs.strip() == "started"  # the container's log, kept by the kubelet across the restart


def test_pods_are_contained_and_the_host_keeps_its_kernel_settings(namespace: Cluster) -> None:
    pod = namespace.json("-n", "cluster-test", "get", "pod", "client")
    uid = pod["metadata"]["uid"]
    # BestEffort pod: /<root>/kubepods/besteffort/pod<uid> in every v1 hierarchy, nothing at the top
    assert list(Path("/sys/fs/cgroup/memory").glob(f"{CGROUP_ROOT}/kubepods/*/pod{uid}"))
    assert not Path("/sys/fs/cgroup/memory/kubepods").exists()
    # the kubelet wanted panic=10, panic_on_oops=1, overcommit=1; the host keeps its own values
    assert read_sysctls(SHIELDED_SYSCTLS) == namespace.host_sysctls
    # and the node's traffic stays in its own network namespace: no bridge or pod route on the host
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "10.244." not in routes
