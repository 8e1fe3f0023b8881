"""The real one-node Kubernetes cluster the tests of this package run on.

``scripts/cluster/build.sh`` builds Kubernetes, etcd, CoreDNS, crictl, local-path-provisioner and
the KubeRay operator from the Go module proxy, and every image the cluster runs without a registry
(cached under ``~/.cache/raytrader/k8s-cluster``); ``scripts/cluster/up.sh`` runs ``kubeadm init``
with a kubelet and Debian's containerd inside a network and mount namespace of their own. The
package-scoped fixture brings the cluster up (or uses one that is already up, and then leaves it
up) and takes it down after this package, checking that the machine is as it was: no network
namespace, no veth, no cgroups, the same sysctls, no new mount points. A build or start past its
hard time limit fails the session with a message saying which.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.image import Built

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "cluster"
CHART = REPO / "charts" / "raytrader"
VALUES = CHART / "ci" / "cluster-values.yaml"
RELEASE = NAMESPACE = "raytrader"
INSTALL_TIMEOUT = "15m"  # 2 cores: Kafka's JVM, MLflow, Feast and a Ray head start together
BUILD_TIMEOUT_S = 45 * 60  # cold: ~25 CPU-minutes of Go on 2 cores; warm: a second
UP_TIMEOUT_S = 10 * 60


def pin(name: str) -> str:
    """A setting of scripts/cluster/lib.sh (one place for each)."""
    found = re.search(rf"^{name}=(\S+)", (SCRIPTS / "lib.sh").read_text(), re.MULTILINE)
    assert found, f"{name} is not set in scripts/cluster/lib.sh"
    return found.group(1)


K8S_VERSION = pin("K8S_VERSION")
NODE = pin("CLUSTER_NAME")
CGROUP_ROOT = pin("CGROUP_ROOT")
BUSYBOX = "raytrader.local/busybox:1"
# the host settings the kubelet would change machine-wide, and the ones up.sh changes and restores
SHIELDED_SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory")
RESTORED_SYSCTLS = ("fs/inotify/max_user_instances", "fs/inotify/max_user_watches")


def read_sysctls(names: tuple[str, ...]) -> dict[str, str]:
    return {name: Path("/proc/sys", name).read_text().strip() for name in names}


def _machine_state() -> dict[str, Any]:
    """What must be the same before up and after down."""
    netns = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {
        "sysctls": read_sysctls(SHIELDED_SYSCTLS + RESTORED_SYSCTLS),
        "netns": sorted(line.split()[0] for line in netns.splitlines() if line.strip()),
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")),
        # our dockerd (started inside the package by the image fixture, kept for tests/deploy)
        # mounts its own netns under its exec root: not the cluster's
        "mounts": sorted(
            mount
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if not (mount := line.split()[1]).startswith("/run/raytrader-docker/")
        ),
    }


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]
    host_sysctls: dict[str, str]  # the shielded ones, read before the kubelet first ran

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            ["kubectl", "--request-timeout=60s", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done.stdout

    def run(self, *cmd: str, timeout: float = 300) -> str:
        """stdout of ``cmd`` with the cluster's environment (helm, crictl, ...); fails on an error."""
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr[-4000:]}")
        return done.stdout

    def load_image(self, docker_env: dict[str, str], tag: str) -> None:
        """Docker's image ``tag`` into the node's containerd (scripts/cluster/load-image.sh: nothing
        to do when it holds that image id already)."""
        docker = {k: v for k, v in docker_env.items() if k.startswith("DOCKER_")}
        env = {**self.env, **docker}
        done = subprocess.run(
            ["bash", str(SCRIPTS / "load-image.sh"), tag], env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def helm_upgrade(self, *extra: str) -> None:
        """``helm upgrade --install`` of the chart with the CI values and ``extra`` flags (more
        values, ``--set``), waiting for every workload."""
        self.run(
            "helm", "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE,
            "-f", str(VALUES), *extra, "--wait", "--timeout", INSTALL_TIMEOUT, timeout=20 * 60,
        )  # fmt: skip

    def wait_served(self) -> None:
        """The RayService Ready with no upgrade pending (a changed Serve config starts a new Ray
        cluster that takes over when it is ready)."""
        for condition in ("Ready", "UpgradeInProgress=False"):
            self.wait(
                "-n", NAMESPACE, "wait", f"rayservice/{RELEASE}-inference",
                f"--for=condition={condition}", f"--timeout={INSTALL_TIMEOUT}", timeout=20 * 60,
            )  # fmt: skip

    def wait(self, *args: str, timeout: float) -> None:
        """A waiting ``kubectl`` command (wait, rollout status); when it fails, the failure carries
        what the pods and the scheduler said, so that a CI log explains a timeout."""
        try:
            self.kubectl(*args, timeout=timeout)
        except (AssertionError, subprocess.TimeoutExpired) as failed:
            raise AssertionError(f"{failed}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """Every pod with its phase and node, the node's allocated requests, and the namespace's
        last warnings (a Pending pod's FailedScheduling says which resource is short)."""
        parts = []
        for args in (
            ("get", "pods", "-A", "-o", "wide"),
            ("describe", "node"),
            ("-n", NAMESPACE, "get", "events", "--field-selector", "type=Warning",
             "--sort-by=.lastTimestamp"),
        ):  # fmt: skip
            out = self.kubectl(*args, check=False)
            if args[0] == "describe":
                out = out[out.find("Allocated resources:") :]
            parts.append(f"$ kubectl {' '.join(args)}\n{out[-6000:]}")
        return "\n".join(parts)

    def secret(self, name: str, key: str, namespace: str = "raytrader") -> str:
        data = self.json("-n", namespace, "get", "secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: dict[str, Any]) -> None:
        done = subprocess.run(
            ["kubectl", "apply", "-f", "-"],
            input=json.dumps(manifest),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


def _run_script(name: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / name)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/cluster/{name} did not finish within {timeout:.0f} s (hard limit)")
    if done.returncode != 0:
        pytest.fail(f"scripts/cluster/{name}: exit {done.returncode}\n{done.stderr[-4000:]}")
    return done.stdout


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (namespaces, cgroups, containerd)")
    was_up = subprocess.run(["bash", str(SCRIPTS / "env.sh")], capture_output=True).returncode == 0
    before = None if was_up else _machine_state()
    sysctls = read_sysctls(SHIELDED_SYSCTLS)
    _run_script("build.sh", BUILD_TIMEOUT_S)
    lines = _run_script("up.sh", UP_TIMEOUT_S)
    env = dict(os.environ)
    for line in lines.splitlines():
        if line.startswith("export "):
            for assignment in line.removeprefix("export ").split("  #")[0].split():
                key, _, value = assignment.partition("=")
                env[key] = value.replace("$PATH", env["PATH"])
    yield Cluster(env, sysctls)
    if before is None:
        return  # somebody's cluster: leave it as it was found
    _run_script("down.sh", 300)
    assert _machine_state() == before


@pytest.fixture(scope="package")
def release(cluster: Cluster, image: Built) -> Iterator[Cluster]:
    """The chart installed (``helm upgrade --install``) with the RayService Ready; uninstalled
    afterwards unless ``RAYTRADER_TEST_KEEP_RELEASE=1`` (then a rerun upgrades it in seconds)."""

    cluster.load_image(image.env, image.tag)
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "namespace.yaml"))
    cluster.helm_upgrade()
    cluster.wait_served()
    yield cluster
    if os.environ.get("RAYTRADER_TEST_KEEP_RELEASE") == "1":  # iterating on one test: keep it
        return
    cluster.run("helm", "uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=600)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", timeout=600)


@pytest.fixture(scope="module")
def serving(release: Cluster) -> Cluster:
    """A model at the alias and GOOG's features online — what test_chart.py's data path leaves,
    made here when a module runs alone."""
    from tests.cluster.platform import REGISTER, SERVICE, forward, http, run_job, wait_for

    token = release.secret(f"{RELEASE}-api-tokens", "api-token")
    with forward(release, f"svc/{SERVICE}", 8000) as url:

        def answers() -> bool:
            return http(f"{url}/v1/decisions", {"symbols": ["GOOG"]}, token)[0] == 200

        if not answers():
            run_job(release, "register-ensemble", REGISTER)
            replay = f"raytrader stream replay --data goog --bootstrap {RELEASE}-kafka:9092"
            run_job(release, "replay-goog", replay)
            wait_for("a decision for GOOG", answers, 600)
    return release
