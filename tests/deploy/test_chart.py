"""The Helm chart, checked offline: lint, render, schemas, policy, unit suites and invariants.

Every check runs against four values sets: the defaults, ``ci/ci-values.yaml``,
``ci/external-values.yaml`` (every dependency external) and ``ci/cluster-values.yaml`` (what
``tests/cluster/`` installs on the real cluster). The tools come from
``scripts/install-k8s-tools.sh`` (``make test`` runs it first), pinned and cached under
``$RAYTRADER_K8S_TOOLS`` (default ``~/.cache/raytrader/k8s-tools``); a missing tool fails the test
and says to run the installer, it never skips.

* ``helm lint --strict`` and ``helm template`` for the Kubernetes version whose schemas we have
  (``--kube-version``), with ``--api-versions`` standing in for the KubeRay operator's API.
* kubeconform ``-strict`` on every rendered manifest, offline: built-in kinds from the
  ``kubernetes-validate`` wheel's schemas, KubeRay's and the Prometheus operator's kinds from their
  CRDs (scripts/crd-to-jsonschema.py). No kind may lack a schema.
* checkov over the rendered manifests: no failed check. Checkov's severities come from Prisma
  Cloud (an API key), so offline every check counts; a check the chart skips carries its reason in a
  ``checkov.io/skipN: CKV_K8S_N=reason`` annotation.
* ``helm unittest`` runs the chart's suites (charts/raytrader/tests/).
* An invalid value fails with the schema's message; a cluster without KubeRay's API gets a message
  naming the operator.
* Invariants checkov cannot see inside KubeRay's custom resources: every container has requests and
  limits and a restricted securityContext, every pod runs as non-root under RuntimeDefault seccomp,
  the RayService serves pipelines/serve/serve_config.yaml, RayJob entry points exist, Ray's
  dashboard/GCS/client ports stay ClusterIP, and a default-deny NetworkPolicy exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.node import NODE_CPU_M, SYSTEM_CPU_REQUESTS_M, millicores

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "raytrader"
SERVE_CONFIG = REPO / "pipelines" / "serve" / "serve_config.yaml"
INSTALLER = "scripts/install-k8s-tools.sh"
TOOLS = Path(os.environ.get("RAYTRADER_K8S_TOOLS", "~/.cache/raytrader/k8s-tools")).expanduser()

RELEASE, NAMESPACE = "raytrader", "raytrader"
IMAGE_WORKDIR = "/app"  # the image's working directory, holding pipelines/ (see the Dockerfile)
# the APIs of the operators the chart builds on; a real install asks the cluster (.Capabilities)
API_VERSIONS = ("ray.io/v1", "monitoring.coreos.com/v1")
VALUES_SETS = {
    "default": (),
    "ci": ("ci/ci-values.yaml",),
    "external": ("ci/external-values.yaml",),
    "cluster": ("ci/cluster-values.yaml",),  # what tests/cluster/ installs on the real cluster
    "jobs": ("ci/cluster-values.yaml", "ci/jobs-values.yaml"),  # + its RayJobs (test_jobs.py)
}
# Ray's dashboard / job API, GCS and client server: unauthenticated by default, never beyond
# ClusterIP (FIELD.md, "Safety facts")
RAY_PRIVATE_PORTS = {8265, 6379, 10001}
RAY_PRIVATE_PORT_NAMES = {"dashboard", "gcs", "gcs-server", "client"}


# -- tools ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubeconform: Path
    checkov: Path
    plugins: Path
    kube_version: str
    k8s_schemas: Path
    crd_schemas: Path

    def kubeconform_args(self) -> list[str]:
        return [
            str(self.kubeconform),
            "-strict",
            "-summary",
            "-output=json",
            # one worker: with more, each compiles the same kinds' schemas before the cache fills
            "-n=1",
            f"-kubernetes-version={self.kube_version}",
            # built-in kinds: deployment-apps-v1.json, service-v1.json, ...
            "-schema-location=" + str(self.k8s_schemas) + "/{{.ResourceKind}}{{.KindSuffix}}.json",
            # custom resources: ray.io/rayservice_v1.json, ...
            "-schema-location="
            + str(self.crd_schemas)
            + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
        ]


@cache
def tools() -> Tools:
    env_file = TOOLS / "tools.env"
    if not env_file.is_file():
        pytest.fail(f"{env_file} is missing: run {INSTALLER} (make test runs it)")
    pins = dict(
        line.split("=", 1)
        for line in env_file.read_text().splitlines()
        if line and not line.startswith("#")
    )
    wanted = dict(re.findall(r"^(\w+_VERSION)=([^$\s]\S*)", (REPO / INSTALLER).read_text(), re.M))
    stale = {k: (pins.get(k), v) for k, v in wanted.items() if k in pins and pins[k] != v}
    if stale:
        pytest.fail(f"the cached tools are not the pinned ones {stale}: run {INSTALLER}")
    kube_version = pins["KUBE_VERSION"]
    found = Tools(
        helm=TOOLS / "bin" / "helm",
        kubeconform=TOOLS / "bin" / "kubeconform",
        checkov=TOOLS / "bin" / "checkov",
        plugins=TOOLS / "helm-plugins",
        kube_version=kube_version,
        k8s_schemas=TOOLS / "schemas" / "kubernetes" / f"v{kube_version}",
        crd_schemas=TOOLS / "schemas" / "crds",
    )
    missing = [
        str(p)
        for p in (found.helm, found.kubeconform, found.checkov, found.plugins / "unittest")
        if not p.exists()
    ]
    missing += [str(p) for p in (found.k8s_schemas, found.crd_schemas) if not p.is_dir()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run {INSTALLER} (make test runs it)")
    return found


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs a tool; the result carries stdout and stderr as text."""
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """helm's environment: our plugins only, no user repositories, caches or kubeconfig."""
    home = tmp_path_factory.mktemp("helm")
    return {
        **os.environ,
        "HELM_PLUGINS": str(tools().plugins),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }


def values_args(name: str) -> list[str]:
    args = []
    for values_file in VALUES_SETS[name]:
        path = CHART / values_file
        assert path.is_file(), f"{path} is missing"
        args += ["--values", str(path)]
    return args


def helm_template(
    helm_env: dict[str, str], *extra: str, api_versions: tuple[str, ...] = API_VERSIONS
) -> subprocess.CompletedProcess[str]:
    t = tools()
    args = [str(t.helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", t.kube_version]
    for api in api_versions:
        args += ["--api-versions", api]
    return run([*args, *extra], env=helm_env)


@dataclass(frozen=True)
class Rendered:
    name: str
    path: Path
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]


class Renders:
    """Each values set rendered once, on first use, and written to a file for kubeconform and
    checkov."""

    def __init__(self, helm_env: dict[str, str], out_dir: Path) -> None:
        self.helm_env, self.out_dir = helm_env, out_dir
        self.done: dict[str, Rendered] = {}

    def __getitem__(self, name: str) -> Rendered:
        if name not in self.done:
            proc = helm_template(self.helm_env, *values_args(name))
            assert proc.returncode == 0, f"helm template ({name}) failed:\n{proc.stderr}"
            path = self.out_dir / f"{name}.yaml"
            path.write_text(proc.stdout)
            docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
            self.done[name] = Rendered(name, path, docs)
        return self.done[name]

    def all(self) -> list[Rendered]:
        return [self[name] for name in VALUES_SETS]


@pytest.fixture(scope="session")
def renders(helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(helm_env, tmp_path_factory.mktemp("rendered"))


@pytest.fixture(params=list(VALUES_SETS))
def rendered(request: pytest.FixtureRequest, renders: Renders) -> Rendered:
    return renders[request.param]


def where(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# -- helm -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", list(VALUES_SETS))
def test_helm_lint_strict_passes(values: str, helm_env: dict[str, str]) -> None:
    t = tools()
    args = [str(t.helm), "lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    args += ["--kube-version", t.kube_version, *values_args(values)]
    proc = run(args, env=helm_env)
    assert proc.returncode == 0, f"helm lint --strict ({values}):\n{proc.stdout}\n{proc.stderr}"


def test_every_values_set_renders_ray_workloads(rendered: Rendered) -> None:
    kinds = {d["kind"] for d in rendered.docs}
    assert kinds & {"RayService", "RayCluster", "RayJob"}, f"{rendered.name}: no Ray resource"


def test_helm_unittest_suites_pass(helm_env: dict[str, str]) -> None:
    suites = sorted((CHART / "tests").glob("*_test.yaml"))
    assert suites, f"no helm-unittest suites under {CHART / 'tests'}"
    proc = run([str(tools().helm), "unittest", str(CHART)], env=helm_env)
    assert proc.returncode == 0, f"helm unittest failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        # a misspelt key is an error, not a value silently ignored
        ("inferenc.enabled=true", "at '': additional properties 'inferenc' not allowed"),
        (
            "inference.ingressAutoscaling.maxReplicas=many",
            "at '/inference/ingressAutoscaling/maxReplicas': got string, want integer",
        ),
    ],
)
def test_invalid_value_fails_with_the_schema_message(
    setting: str, message: str, helm_env: dict[str, str]
) -> None:
    proc = helm_template(helm_env, "--set", setting)
    assert proc.returncode != 0, f"--set {setting} rendered without error"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_template_without_the_kuberay_api_names_the_operator(helm_env: dict[str, str]) -> None:
    """Rendering for a cluster that does not serve ray.io/v1 fails and says what to install."""
    proc = helm_template(helm_env, api_versions=())
    assert proc.returncode != 0, "rendered without the ray.io/v1 API"
    assert "ray.io/v1" in proc.stderr, proc.stderr
    assert "KubeRay operator" in proc.stderr, proc.stderr


# -- kubeconform ----------------------------------------------------------------------------------


def kubeconform(*paths: Path) -> tuple[int, dict[str, Any], str]:
    proc = run([*tools().kubeconform_args(), *map(str, paths)])
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"kubeconform printed no JSON:\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, report, proc.stderr


@pytest.fixture(scope="session")
def kubeconform_report(renders: Renders) -> dict[str, Any]:
    """One kubeconform run over every values set (it compiles each kind's schema once per run)."""
    rendered = renders.all()
    _, report, stderr = kubeconform(*(r.path for r in rendered))
    summary = report["summary"]
    total = sum(len(r.docs) for r in rendered)
    assert sum(summary[k] for k in ("valid", "invalid", "errors", "skipped")) == total, summary
    return {"resources": report.get("resources", []), "stderr": stderr}


def test_kubeconform_strict_accepts_every_rendered_manifest(
    rendered: Rendered, kubeconform_report: dict[str, Any]
) -> None:
    """Every resource has a schema and meets it. Valid resources are not listed (no -verbose)."""
    problems = [
        f"{r.get('kind')}/{r.get('name')}: {r.get('status')}: {r.get('msg')}"
        for r in kubeconform_report["resources"]
        if Path(r["filename"]).name == rendered.path.name and r.get("status") != "statusValid"
    ]
    assert not problems, "\n".join([*problems, kubeconform_report["stderr"]])


MISSPELT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: misspelt}
spec:
  replica: 1
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: x}]
---
apiVersion: ray.io/v1
kind: RayService
metadata: {name: misspelt}
spec:
  serveConfigV3: ""
  rayClusterConfig:
    headGroupSpec:
      rayStartParams: {}
      template: {spec: {containers: [{name: ray-head, image: x}]}}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: misspelt}
spec:
  selector: {}
  endpoint: [{port: metrics}]
"""


def test_kubeconform_schemas_are_offline_and_strict(tmp_path: Path) -> None:
    """A misspelt field in a built-in kind, a KubeRay and a Prometheus operator resource is an
    error: the schemas were found (offline) and forbid unknown fields."""
    path = tmp_path / "misspelt.yaml"
    path.write_text(MISSPELT)
    rc, report, _ = kubeconform(path)
    assert rc != 0
    by_kind = {r["kind"]: r for r in report["resources"]}
    for kind, field in [
        ("Deployment", "replica"),
        ("RayService", "serveConfigV3"),
        ("ServiceMonitor", "endpoint"),
    ]:
        assert by_kind[kind]["status"] == "statusInvalid", by_kind[kind]
        assert field in by_kind[kind]["msg"], by_kind[kind]


# -- checkov --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov_report(renders: Renders) -> dict[str, Any]:
    """One checkov run over every values set's manifests (its start-up takes seconds)."""
    args = [str(tools().checkov), "--framework", "kubernetes", "--skip-download", "--quiet"]
    args += ["--output", "json", "--soft-fail"]
    for r in renders.all():
        args += ["--file", str(r.path)]
    proc = run(args, timeout=600)
    assert proc.returncode == 0, f"checkov failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    for rep in reports:
        assert rep["summary"]["parsing_errors"] == 0, rep["summary"]
        assert rep["summary"]["resource_count"] > 0, rep["summary"]
    failed = [c for rep in reports for c in rep.get("results", {}).get("failed_checks", [])]
    return {"failed": failed, "summary": [rep["summary"] for rep in reports]}


def test_checkov_finds_no_failed_check(rendered: Rendered, checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in checkov_report["failed"]
        if Path(c["file_abs_path"]).name == rendered.path.name
    ]
    assert not failed, (
        f"checkov ({rendered.name}): fix the chart, or skip with a reason in the resource's "
        "annotations (checkov.io/skipN: CKV_K8S_N=reason):\n" + "\n".join(sorted(failed))
    )


def test_every_checkov_skip_carries_a_reason(rendered: Rendered) -> None:
    for doc in rendered.docs:
        for holder in annotation_holders(doc):
            for key, value in (holder.get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = str(value).partition("=")
                    assert re.fullmatch(r"CKV2?_K8S_\d+", check), f"{where(doc)}: {key}: {value}"
                    assert len(reason.strip()) >= 10, f"{where(doc)}: {key} gives no reason"


def annotation_holders(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield doc.get("metadata") or {}
    for _, pod in pod_templates(doc):
        yield pod.get("metadata") or {}


# -- invariants -----------------------------------------------------------------------------------


def pod_templates(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod (template) anywhere in a manifest: a mapping whose ``spec`` lists containers.

    Finds the pods of Deployments and StatefulSets as well as those inside KubeRay's resources
    (head and worker groups, a RayJob's submitter, a RayService's cluster).
    """
    if isinstance(node, dict):
        spec = node.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
            yield path or ".", node
        for key, value in node.items():
            yield from pod_templates(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_templates(value, f"{path}[{i}]")


WORKLOAD_KINDS = {
    "Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob",
    "RayCluster", "RayService", "RayJob",
}  # fmt: skip


def test_the_invariants_see_every_workloads_pods(rendered: Rendered) -> None:
    blind = [
        where(d) for d in rendered.docs if d["kind"] in WORKLOAD_KINDS and not any(pod_templates(d))
    ]
    assert not blind, f"no pod template found in {blind}"


def test_every_container_has_requests_limits_and_a_restricted_security_context(
    rendered: Rendered,
) -> None:
    problems = []
    for doc in rendered.docs:
        for path, pod in pod_templates(doc):
            spec = pod["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                at = f"{where(doc)} {path} container {c['name']}"
                resources = c.get("resources") or {}
                for kind in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        if resource not in (resources.get(kind) or {}):
                            problems.append(f"{at}: no {kind}.{resource}")
                sc = c.get("securityContext") or {}
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{at}: allowPrivilegeEscalation is not false")
                if sc.get("privileged"):
                    problems.append(f"{at}: privileged")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{at}: capabilities do not drop ALL")
                if set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
                    problems.append(f"{at}: adds capabilities")
                if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
                    problems.append(f"{at}: may run as root")
                seccomp = (sc.get("seccompProfile") or {}).get("type")
                if seccomp not in (None, "RuntimeDefault", "Localhost"):
                    problems.append(f"{at}: seccomp {seccomp}")
    assert not problems, "\n".join(problems)


def pod_cpu_request_m(spec: dict[str, Any]) -> int:
    """The scheduler's CPU request of a pod: its containers' sum, or its largest init container's
    when that is more."""

    def request(c: dict[str, Any]) -> int:
        return millicores(((c.get("resources") or {}).get("requests") or {}).get("cpu", 0))

    init = [request(c) for c in spec.get("initContainers", [])]
    return max([sum(request(c) for c in spec["containers"]), *init])


def test_the_cluster_values_fit_the_test_node_through_a_ray_cluster_upgrade(
    renders: Renders,
) -> None:
    """What tests/cluster/ does at its peak fits the node's CPU: every long-running pod, plus one Job
    pod (a hook, a load or replay Job), plus the larger of a second Ray head (an upgrade that
    changes the Ray cluster starts a new one beside the old) and the worker pods the autoscaler may
    add. A head that does not fit stays Pending and the upgrade never ends (it failed CI so)."""
    docs = renders["cluster"].docs
    steady: dict[str, int] = {}
    jobs = [0]
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet"):
            replicas = doc["spec"].get("replicas", 1)
            steady[f"{kind}/{name}"] = replicas * pod_cpu_request_m(doc["spec"]["template"]["spec"])
        elif kind == "Job":
            jobs.append(pod_cpu_request_m(doc["spec"]["template"]["spec"]))
    (service,) = [d for d in docs if d["kind"] == "RayService"]
    ray = service["spec"]["rayClusterConfig"]
    head = pod_cpu_request_m(ray["headGroupSpec"]["template"]["spec"])
    if ray.get("enableInTreeAutoscaling"):  # KubeRay adds the autoscaler container to the head
        head += millicores(ray["autoscalerOptions"]["resources"]["requests"]["cpu"])
    workers = sum(
        group["maxReplicas"] * pod_cpu_request_m(group["template"]["spec"])
        for group in ray.get("workerGroupSpecs", [])
    )
    steady["RayService head"] = head
    peak = SYSTEM_CPU_REQUESTS_M + sum(steady.values()) + max(jobs) + max(head, workers)
    assert peak <= NODE_CPU_M, (
        f"the cluster values request {peak}m CPU at their peak on a {NODE_CPU_M}m node "
        f"(system {SYSTEM_CPU_REQUESTS_M}m, one Job {max(jobs)}m, a second head {head}m or "
        f"workers {workers}m): {steady}"
    )


#: containers of the raytrader image that run no raytrader code: MLflow's server, the helm test's
#: probe, and a RayJob's submitter (`ray job submit`; the job's own processes run on its cluster)
NOT_RAYTRADER_PROCESSES = {"mlflow", "healthz", "ray-job-submitter"}


def raytrader_containers(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) of every container running raytrader code, in every pod template."""
    for doc in rendered.docs:
        for path, pod in pod_templates(doc):
            for c in pod["spec"]["containers"]:
                image = c["image"].rsplit("/", 1)[-1]
                if image.startswith("raytrader:") and c["name"] not in NOT_RAYTRADER_PROCESSES:
                    yield f"{where(doc)} {path} container {c['name']}", c


def test_every_raytrader_process_logs_json_at_the_chosen_level(rendered: Rendered) -> None:
    missing = []
    for name, c in raytrader_containers(rendered):
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        got = (env.get("RAYTRADER_LOG_FORMAT"), env.get("RAYTRADER_LOG_LEVEL"))
        if got != ("json", "INFO"):
            missing.append(f"{name}: {got}")
    assert not missing, "\n".join(missing)


def test_every_raytrader_process_runs_in_cluster_mode(rendered: Rendered) -> None:
    """raytrader.settings' cluster mode: a missing setting is an error, not 127.0.0.1."""
    local = [
        name
        for name, c in raytrader_containers(rendered)
        if {"name": "RAYTRADER_MODE", "value": "cluster"} not in (c.get("env") or [])
    ]
    assert not local, "\n".join(local)


KAFKA_FILES = "/etc/raytrader/kafka"  # the kafka-client volume: the SASL password and the CA


def test_an_external_kafka_s_security_reaches_every_kafka_client(renders: Renders) -> None:
    """external-values.yaml: SASL_SSL with SCRAM; the consumer, the topics Job and the paper
    trader get the settings, the password and the CA as files of Secrets, never as a value in the
    pod spec."""
    rendered = renders["external"]
    clients = {"consumer", "create-topics", "paper"}
    seen = set()
    for name, c in raytrader_containers(rendered):
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        if c["name"] not in clients:
            assert "RAYTRADER_KAFKA_SECURITY_PROTOCOL" not in env, name
            continue
        seen.add(c["name"])
        assert env["RAYTRADER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["RAYTRADER_KAFKA_SASL_USERNAME"] == "raytrader", name
        files = (env["RAYTRADER_KAFKA_SASL_PASSWORD_FILE"], env["RAYTRADER_KAFKA_SSL_CA_LOCATION"])
        assert files == (f"{KAFKA_FILES}/password", f"{KAFKA_FILES}/ca.crt"), name
        assert "RAYTRADER_KAFKA_SASL_PASSWORD" not in env, name
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["kafka-client"] == KAFKA_FILES, name
    assert seen == clients
    for doc in rendered.docs:
        for _, pod in pod_templates(doc):
            for volume in pod["spec"].get("volumes") or []:
                if volume["name"] == "kafka-client":
                    secrets = {s["secret"]["name"] for s in volume["projected"]["sources"]}
                    assert secrets == {"kafka-raytrader-password", "kafka-ca"}


def test_sasl_without_a_user_and_a_password_secret_is_refused(helm_env: dict[str, str]) -> None:
    proc = helm_template(
        helm_env, *values_args("external"), "--set", "kafka.external.security.saslUsername="
    )
    assert proc.returncode != 0
    assert "protocol SASL_SSL needs saslUsername and saslPasswordSecret" in proc.stderr


def test_every_pod_runs_as_non_root_under_runtime_default_seccomp(rendered: Rendered) -> None:
    problems = []
    for doc in rendered.docs:
        for path, pod in pod_templates(doc):
            at = f"{where(doc)} {path}"
            spec = pod["spec"]
            sc = spec.get("securityContext") or {}
            if sc.get("runAsNonRoot") is not True:
                problems.append(f"{at}: pod securityContext.runAsNonRoot is not true")
            if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: pod seccompProfile is not RuntimeDefault")
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(flag):
                    problems.append(f"{at}: {flag}")
            for volume in spec.get("volumes") or []:
                if "hostPath" in volume:
                    problems.append(f"{at}: hostPath volume {volume['name']}")
    assert not problems, "\n".join(problems)


def effective_values(name: str) -> dict[str, Any]:
    """values.yaml with the values set's files merged over it, as helm does (maps deep-merged)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), v) for k, v in over.items()} | {
                k: v for k, v in base.items() if k not in over
            }
        return over

    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for values_file in VALUES_SETS[name]:
        values = merge(values, yaml.safe_load((CHART / values_file).read_text()) or {})
    return values


ABSENT = "<absent>"


def serve_overrides(values: dict[str, Any], config: dict[str, Any]) -> dict[tuple[Any, ...], Any]:
    """The serveConfigV2 fields the chart documents as overridden (templates/inference/_serve.tpl):
    path in the config -> the value the `inference` values give it. Everything else must equal
    pipelines/serve/serve_config.yaml."""
    inf = values["inference"]
    out: dict[tuple[Any, ...], Any] = {
        ("http_options", "host"): "0.0.0.0",  # noqa: S104 - Serve listens on its pod's address
        ("http_options", "port"): inf["port"],
    }
    if inf.get("proxyLocation"):
        out[("proxy_location",)] = inf["proxyLocation"]
    model = inf["model"]
    uri = f"models:/{model['name']}@{model['alias']}"
    if model.get("version"):
        uri = f"models:/{model['name']}/{model['version']}"
    for i, app in enumerate(config["applications"]):
        if app["import_path"] != "raytrader.serving.app:build":
            continue
        args = ("applications", i, "args")
        out |= {(*args, *path): value for path, value in flatten(inf.get("args") or {}).items()}
        out[(*args, "model_uri")] = uri
        out[(*args, "feast_profile")] = "redis"
        out[(*args, "local_dev")] = ABSENT
        for j, deployment in enumerate(app.get("deployments") or []):
            at = ("applications", i, "deployments", j)
            scaling = {
                "DecisionAPI": inf["ingressAutoscaling"],
                "DecisionModel": inf["autoscaling"],
            }
            if deployment["name"] in scaling:
                values_of = scaling[deployment["name"]]
                out[(*at, "num_replicas")] = ABSENT
                out[(*at, "autoscaling_config", "min_replicas")] = values_of["minReplicas"]
                out[(*at, "autoscaling_config", "max_replicas")] = values_of["maxReplicas"]
                out[(*at, "autoscaling_config", "target_ongoing_requests")] = values_of[
                    "targetOngoingRequests"
                ]
    return out


def flatten(node: Any, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(node, dict):
        out: dict[tuple[Any, ...], Any] = {}
        for key, value in node.items():
            out |= flatten(value, (*prefix, key))
        return out
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out |= flatten(value, (*prefix, i))
        return out
    return {prefix: node}


def test_rayservice_serves_the_repository_serve_config(rendered: Rendered) -> None:
    services = rendered.of_kind("RayService")
    if rendered.name == "default":
        assert services, "the default values deploy the decision service"
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    ours = flatten(config)
    overrides = serve_overrides(effective_values(rendered.name), config)
    for svc in services:
        theirs = flatten(yaml.safe_load(svc["spec"]["serveConfigV2"]))
        unexplained = {
            path: (ours.get(path, ABSENT), theirs.get(path, ABSENT))
            for path in ours.keys() | theirs.keys()
            if path not in overrides and ours.get(path, ABSENT) != theirs.get(path, ABSENT)
        }
        assert not unexplained, (
            f"{where(svc)}: serveConfigV2 differs from {SERVE_CONFIG}: {unexplained}"
        )
        wrong = {
            path: (value, theirs.get(path, ABSENT))
            for path, value in overrides.items()
            if theirs.get(path, ABSENT) != value
        }
        assert not wrong, f"{where(svc)}: overridden fields (expected, rendered): {wrong}"


def entrypoint_files(entrypoint: str) -> list[Path]:
    """The repository files a RayJob entry point names: ``pipelines/x.py`` (relative to the image's
    working directory, or under it) and ``-m pipelines.x``."""
    files = []
    words = shlex.split(entrypoint)
    for i, word in enumerate(words):
        if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("pipelines."):
            files.append(Path(*words[i + 1].split(".")).with_suffix(".py"))
        match = re.fullmatch(rf"(?:{IMAGE_WORKDIR}/)?(pipelines/[\w./-]+)", word.split("=")[-1])
        if match:
            files.append(Path(match.group(1)))
    return files


def test_rayjob_entrypoints_name_real_pipeline_files(renders: Renders) -> None:
    jobs = [job for r in renders.all() for job in r.of_kind("RayJob")]
    assert jobs, "no values set renders a RayJob (ci-values should enable the jobs)"
    for job in jobs:
        entrypoint = job["spec"]["entrypoint"]
        files = entrypoint_files(entrypoint)
        assert files, f"{where(job)}: entrypoint names no pipelines/ file: {entrypoint}"
        for f in files:
            assert (REPO / f).is_file(), f"{where(job)}: {f} does not exist ({entrypoint})"


def test_ray_private_ports_never_leave_cluster_ip(rendered: Rendered) -> None:
    problems = []
    for doc in rendered.docs:
        kind = doc["kind"]
        if kind == "Service":
            spec = doc["spec"]
            exposed = spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("externalIPs")
            for port in spec.get("ports") or []:
                named = {port.get("name"), port.get("targetPort")}
                numbers = {port.get("port"), port.get("targetPort"), port.get("nodePort")}
                if exposed and (numbers & RAY_PRIVATE_PORTS or named & RAY_PRIVATE_PORT_NAMES):
                    problems.append(f"{where(doc)} ({spec.get('type')}) exposes {port}")
        for path, head in ray_head_groups(doc):
            service_type = head.get("serviceType", "ClusterIP")
            if service_type != "ClusterIP":
                problems.append(f"{where(doc)} {path}: head serviceType {service_type}")
            head_service = (head.get("headService") or {}).get("spec") or {}
            if head_service.get("type", "ClusterIP") != "ClusterIP":
                problems.append(f"{where(doc)} {path}: headService is not ClusterIP")
        if kind == "Ingress":
            for backend in ingress_backends(doc["spec"]):
                port = (backend.get("service") or {}).get("port") or {}
                if (
                    port.get("number") in RAY_PRIVATE_PORTS
                    or port.get("name") in RAY_PRIVATE_PORT_NAMES
                ):
                    problems.append(f"{where(doc)} routes to {backend}")
    assert not problems, "\n".join(problems)


def ray_head_groups(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "headGroupSpec" and isinstance(value, dict):
                yield f"{path}.{key}", value
            else:
                yield from ray_head_groups(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from ray_head_groups(value, f"{path}[{i}]")


def ingress_backends(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if spec.get("defaultBackend"):
        yield spec["defaultBackend"]
    for rule in spec.get("rules") or []:
        for p in (rule.get("http") or {}).get("paths") or []:
            yield p["backend"]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects pods with ``labels``."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def test_every_pod_is_under_a_default_deny_network_policy(rendered: Rendered) -> None:
    """A NetworkPolicy without rules denies ingress and egress to every pod of the release; the
    other policies only open what each component needs."""
    deny = [
        p["spec"]
        for p in rendered.of_kind("NetworkPolicy")
        if {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{rendered.name}: no NetworkPolicy denies ingress and egress by default"
    loose = [
        f"{where(doc)} {path}"
        for doc in rendered.docs
        for path, pod in pod_templates(doc)
        if not any(
            selects(d.get("podSelector"), (pod.get("metadata") or {}).get("labels") or {})
            for d in deny
        )
    ]
    assert not loose, "pods no default-deny NetworkPolicy selects:\n" + "\n".join(loose)


def test_only_the_dashboard_reaches_the_experiment_api(rendered: Rendered) -> None:
    """Every NetworkPolicy that selects the experiment API's pods admits, if anything, the
    dashboard's pods only (its admin routes promote models and submit Ray jobs)."""
    apis = [
        d
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "experiment-api"
    ]
    if rendered.name == "default":
        assert apis, "the default values deploy the experiment API"
    for api in apis:
        labels = api["spec"]["template"]["metadata"]["labels"]
        peers = [
            peer
            for p in rendered.of_kind("NetworkPolicy")
            if selects(p["spec"].get("podSelector"), labels)
            for rule in p["spec"].get("ingress") or []
            for peer in rule.get("from") or [{}]
        ]
        wrong = [
            peer
            for peer in peers
            if set(peer) != {"podSelector"}
            or (peer["podSelector"].get("matchLabels") or {}).get("app.kubernetes.io/component")
            != "dashboard"
        ]
        assert not wrong, f"{where(api)}: admitted besides the dashboard: {wrong}"


def _component(doc: dict[str, Any]) -> str | None:
    return (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component")


def test_every_paper_session_is_a_config_its_pod_runs(renders: Renders) -> None:
    """ci- and external-values' sessions: one Deployment each, running `raytrader paper run` on
    its ConfigMap entry, which parses as a PaperConfig (the pod's own check) named after it."""
    from raytrader.paper.config import PaperConfig

    for name in ("ci", "external"):
        docs = renders[name].docs
        (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and _component(d) == "paper"]
        traders = [d for d in docs if d["kind"] == "Deployment" and _component(d) == "paper"]
        assert len(traders) == len(configmap["data"]) >= 1
        for key, text in configmap["data"].items():
            config = PaperConfig.model_validate(yaml.safe_load(text))
            assert key == f"{config.session}.yaml"
        for d in traders:
            session = d["metadata"]["labels"]["raytrader.io/paper-session"]
            (c,) = d["spec"]["template"]["spec"]["containers"]
            assert f"--config /etc/raytrader/paper/{session}.yaml" in " ".join(c["args"])
            env = {e["name"] for e in c["env"]}
            assert {"RAYTRADER_KAFKA_BOOTSTRAP", "RAYTRADER_MODE"} <= env
            assert d["spec"]["strategy"]["type"] == "Recreate"
            assert d["spec"]["replicas"] == 1


def test_the_paper_traders_reach_kafka_their_store_and_the_decision_service(
    renders: Renders,
) -> None:
    docs = renders["ci"].docs
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    paper = {"app.kubernetes.io/component": "paper"}

    def admits(policy: str) -> bool:
        rules = policies[f"{RELEASE}-np-{policy}"]["spec"].get("ingress") or []
        peers = [p for rule in rules for p in rule.get("from") or []]
        return any(
            paper.items() <= ((p.get("podSelector") or {}).get("matchLabels") or {}).items()
            for p in peers
        )

    assert admits("postgresql")
    assert admits("kafka")
    assert admits("inference")
    egress = policies[f"{RELEASE}-np-paper"]["spec"]["egress"]
    ports = {port["port"] for rule in egress for port in rule["ports"]}
    assert {9092, 5432, 8000} <= ports


def test_paper_sessions_without_the_experiment_store_are_refused(helm_env: dict[str, str]) -> None:
    proc = helm_template(
        helm_env, *values_args("ci"), "--set", "experimentApi.enabled=false",
        "--set", "dashboard.enabled=false",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "paper.sessions need the experiment store" in proc.stderr
