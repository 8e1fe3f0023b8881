"""The one node ``tests/cluster/`` runs on (scripts/cluster/up.sh), as the scheduler sees it.

The chart's cluster values (charts/raytrader/ci/cluster-values.yaml) must fit it: a pod whose
requests do not fit stays Pending, and a Ray cluster upgrade that waits on a Pending head never
ends. ``tests/deploy/test_chart.py`` adds the values' requests up offline;
``tests/cluster/test_node.py`` checks these numbers against the real node.
"""

from __future__ import annotations

#: the CI machine's cores: the node's allocatable CPU, in millicores
NODE_CPU_M = 2000
#: what the node requests before the chart: kubeadm's control plane (API server 250m, controller
#: manager 200m, scheduler 100m, etcd 100m), two CoreDNS pods (100m each) and the KubeRay operator
#: (100m); kube-proxy and local-path-provisioner request nothing
SYSTEM_CPU_REQUESTS_M = 950
#: the namespaces holding those pods
SYSTEM_NAMESPACES = ("kube-system", "local-path-storage", "ray-system")


def millicores(quantity: str | int | float) -> int:
    """A Kubernetes CPU quantity ("50m", "1", 0.5) in millicores."""
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1])
    return round(float(text) * 1000)
