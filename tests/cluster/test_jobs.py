"""The chart's RayJobs on the cluster (``release``): a hyperparameter search and a supervised
training run to completion, each on the Ray cluster KubeRay starts for it from the chart's
``rayCluster`` spec; both log to the in-cluster MLflow and register a model. An ensemble of the
searched rule is then registered and moved to the alias the RayService follows, under steady load:
the decisions' model version changes, and no request fails.

The jobs are the chart's own (``jobs.hyperopt``, ``jobs.train``), enabled by ``helm upgrade`` with
``ci/jobs-values.yaml`` (which the kind workflow uses too): the example configs of
``pipelines/configs`` made small enough for 2 cores (a few trials, one model). The default image
runs them (its ``search`` extra: Tune, Optuna, scikit-learn).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import CHART, NAMESPACE, RELEASE, Cluster
from tests.cluster.platform import forward, http, move_alias_under_load, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS_VALUES = CHART / "ci" / "jobs-values.yaml"
SEARCHED = "tuned-ma-cross"  # the search's registered rule (jobs-values.yaml)
TRAINED = "supervised-analyst_1h"  # the training job's registered classifier
JOB_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def jobs(serving: Cluster) -> Iterator[dict[str, Any]]:
    """Both RayJobs run to the end, with a new run id (a RayJob runs once); each one's final
    status. The release goes back to the CI values afterwards (the RayJobs deleted)."""
    run_id = str(int(time.time()))
    ids = (f"--set=jobs.{job}.runId={run_id}" for job in ("hyperopt", "train"))
    serving.helm_upgrade("-f", str(JOBS_VALUES), *ids)
    try:
        names = {job: f"{RELEASE}-{job}-{run_id}" for job in ("hyperopt", "train")}
        t0 = time.monotonic()
        statuses: dict[str, dict[str, Any]] = {}

        def finished() -> bool:
            for job, name in names.items():
                status = serving.json("-n", NAMESPACE, "get", f"rayjob/{name}").get("status", {})
                if status.get("jobDeploymentStatus") in ("Complete", "Failed"):
                    statuses.setdefault(job, {**status, "seconds": round(time.monotonic() - t0)})
            return len(statuses) == len(names)

        wait_for("both RayJobs to finish", finished, JOB_TIMEOUT_S)
        for job, name in names.items():
            status = statuses[job]
            print(f"rayjob {job}: {status['jobStatus']} after {status['seconds']} s")
            if status.get("jobStatus") != "SUCCEEDED":
                logs = serving.kubectl("-n", NAMESPACE, "logs", f"job/{name}", check=False)
                raise AssertionError(f"RayJob {name}: {json.dumps(status)}\n{logs[-4000:]}")
        yield statuses
    finally:
        serving.helm_upgrade()


def _registered(url: str, name: str) -> dict[str, Any]:
    """The newest version of registered model ``name``, with its run, from MLflow's REST API."""
    query = urllib.parse.urlencode({"filter": f"name='{name}'", "order_by": "version_number DESC"})
    status, body = http(f"{url}/api/2.0/mlflow/model-versions/search?{query}")
    assert status == 200, body
    versions = json.loads(body).get("model_versions", [])
    assert versions, f"no version of {name} is registered"
    version = versions[0]
    status, body = http(f"{url}/api/2.0/mlflow/runs/get?run_id={version['run_id']}")
    assert status == 200, body
    return {**version, "run": json.loads(body)["run"]}


def test_the_search_and_the_training_job_register_their_models(
    jobs: dict[str, Any], serving: Cluster
) -> None:
    with forward(serving, f"svc/{RELEASE}-mlflow", 5000) as url:
        searched, trained = _registered(url, SEARCHED), _registered(url, TRAINED)
    for version in (searched, trained):
        assert version["run"]["info"]["status"] == "FINISHED"
        assert version["run"]["data"].get("metrics"), f"{version['name']}'s run logged no metric"
        # the run was made now, by the job
        assert int(version["creation_timestamp"]) / 1000 > time.time() - JOB_TIMEOUT_S - 600
    params = {p["key"]: p["value"] for p in searched["run"]["data"].get("params", [])}
    print(
        f"registered: {SEARCHED} v{searched['version']} {params}, {TRAINED} v{trained['version']}"
    )


def test_an_ensemble_of_the_searched_rule_is_served_when_the_alias_moves(
    jobs: dict[str, Any], serving: Cluster
) -> None:
    build = (
        "python -c 'from mlflow.tracking import MlflowClient; "
        "from raytrader.ensemble import EnsembleConfig, Member, build_ensemble; "
        f'uri = "http://{RELEASE}-mlflow:5000"; '
        f'name = "name=" + chr(39) + "{SEARCHED}" + chr(39); '
        "v = max(int(m.version) for m in MlflowClient(uri).search_model_versions(name)); "
        f'print(build_ensemble(EnsembleConfig(members=(Member(name="{SEARCHED}", version=v),), '
        'data="goog", alias="champion", output_dir="/tmp/ensemble", tracking_uri=uri))["version"])\''
    )  # fmt: skip
    summary = move_alias_under_load(serving, "ensemble-of-searched", build, "load-jobs-alias")
    assert len(summary["versions"]) == 2, summary["versions"]  # the version before, the new one
