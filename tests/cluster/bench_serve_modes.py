"""Ray Serve's default mode against its throughput-optimized mode, in the cluster, at fixed loads.

Not part of ``make test`` (the file name is not ``test_*``): ``make bench-cluster`` runs it, on the
cluster and release the cluster tests use (built and installed when missing). For each mode the
chart is upgraded (``inference.throughputOptimized``; a changed Ray container environment makes
KubeRay start a new Ray cluster and move the Service to it), then a Job in the cluster sends
decisions open loop at each of :data:`LOADS` (``raytrader serve load``), and the summary is kept:
answered per second, p50, p99, failures. The chart is put back to the default afterwards. The
table goes to stdout and to ``benchmarks/results/serve-modes-cluster.json``, with the date and
the machine.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cluster.conftest import NAMESPACE, Cluster
from tests.cluster.platform import active_ray_cluster, load_command, load_job, upgrade_ray_cluster

#: (requests/s, seconds): inside the one replica's capacity, near it, and past it (about 23/s
#: were answered under overload in the autoscaling drill, the load Job on the same 2 cores)
LOADS = ((10, 60), (20, 60), (40, 60))
OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "serve-modes-cluster.json"


def fixed_load(cluster: Cluster, name: str, rate: int, seconds: int) -> dict[str, Any]:
    cluster.kubectl("-n", NAMESPACE, "delete", "job", name, "--ignore-not-found")
    cluster.apply(load_job(cluster, name, load_command(rate, seconds)))
    cluster.kubectl(
        "-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=Complete",
        f"--timeout={seconds + 240}s", timeout=seconds + 300,
    )  # fmt: skip
    logs = cluster.kubectl("-n", NAMESPACE, "logs", f"job/{name}")
    summary: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
    summary.pop("timeline", None)
    return summary


def switch(cluster: Cluster, throughput: bool) -> float:
    """Upgrade to the mode; seconds until the new Ray cluster serves decisions."""
    switched = upgrade_ray_cluster(
        cluster, "--set", f"inference.throughputOptimized={str(throughput).lower()}"
    )
    (head,) = cluster.json(
        "-n", NAMESPACE, "get", "pods", "-l",
        f"ray.io/cluster={active_ray_cluster(cluster)},ray.io/node-type=head",
    )["items"]  # fmt: skip
    env = {e["name"]: e.get("value") for e in head["spec"]["containers"][0].get("env", [])}
    assert (env.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1") == throughput, env
    return switched


def test_serve_default_against_throughput_mode(serving: Cluster) -> None:
    results: dict[str, Any] = {}
    try:
        for mode, throughput in (("default", False), ("throughput", True)):
            switched_s = switch(serving, throughput)
            results[mode] = {"switch_s": round(switched_s, 1)}
            for rate, seconds in LOADS:
                summary = fixed_load(serving, f"bench-{mode}-{rate}", rate, seconds)
                results[mode][str(rate)] = summary
                print(f"{mode} {rate}/s: " + json.dumps(summary))
    finally:
        upgrade_ray_cluster(serving, "--set", "inference.throughputOptimized=false")
    rows = [
        "| mode | offered | answered/s | failed | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("default", "throughput"):
        for rate, _ in LOADS:
            s = results[mode][str(rate)]
            rows.append(
                f"| {mode} | {rate}/s | {s['answered_per_s']:.1f} | {s['failed']} | "
                f"{1000 * s['latency_p50_s']:.0f} ms | {1000 * s['latency_p99_s']:.0f} ms | "
                f"{1000 * s['latency_max_s']:.0f} ms |"
            )
    print("\n".join(rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                "loads": LOADS,
                "results": results,
                "table": rows,
            },
            indent=2,
        )
    )
    for mode in ("default", "throughput"):
        for rate, _ in LOADS:
            assert results[mode][str(rate)]["failed"] == 0, (mode, rate)
