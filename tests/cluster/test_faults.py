"""Faults on the installed chart (``release``): pods deleted while the platform works.

* The stream consumer's pod deleted mid-replay: its Deployment starts another, which resumes from
  the committed offsets; every bar ends in Feast's offline store once and equal to the batch
  features, exactly. (Delivery is at-least-once; the store is keyed by symbol, timeframe and bar,
  so a bar delivered twice is stored once.)
* The Kafka and PostgreSQL pods deleted: their StatefulSets bring them back on their volumes, and
  with no manual step the consumer (never restarted) streams new bars again and MLflow's registry
  answers from PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from raytrader.data import load_bars
from tests.cluster.conftest import NAMESPACE, RELEASE, Cluster
from tests.cluster.platform import (
    REGISTER,
    assert_equal_to_batch,
    forward,
    http,
    job_from_the_consumer,
    offline_rows,
    run_job,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER = f"deployment/{RELEASE}-stream-1d"


def _replay(spec: str, speed: str) -> str:
    return f"raytrader stream replay --data {spec} --speed {speed} --bootstrap {RELEASE}-kafka:9092"


def _all_rows(cluster: Cluster, symbol: str, n: int) -> Any:
    wait_for(f"{n} {symbol} rows offline", lambda: len(offline_rows(cluster, symbol)) >= n, 300)
    return offline_rows(cluster, symbol)


def test_a_consumer_pod_deleted_mid_replay_leaves_every_bar_in_feast_once(release: Cluster) -> None:
    spec = "synthetic:n_bars=3000,timeframe=1d,seed=11,symbol=FAULTA"
    consumer = release.json("-n", NAMESPACE, "get", CONSUMER)
    selector = ",".join(f"{k}={v}" for k, v in consumer["spec"]["selector"]["matchLabels"].items())
    before = release.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "name").split()
    name = "replay-faulta"
    release.kubectl("-n", NAMESPACE, "delete", "job", name, "--ignore-not-found")
    release.apply(job_from_the_consumer(release, name, _replay(spec, "150/s")))  # ~20 s of bars
    wait_for("the first FAULTA rows offline", lambda: len(offline_rows(release, "FAULTA")) > 0, 240)
    partial = len(offline_rows(release, "FAULTA"))
    release.kubectl("-n", NAMESPACE, "delete", "pod", "-l", selector, "--wait=false")
    release.wait(
        "-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=Complete", "--timeout=300s",
        timeout=360,
    )  # fmt: skip
    release.wait("-n", NAMESPACE, "rollout", "status", CONSUMER, "--timeout=300s", timeout=360)
    after = release.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "name").split()
    assert set(after).isdisjoint(before)  # a new consumer pod did the rest
    assert partial < 3000, "the replay ended before the pod was deleted: the test proves nothing"
    assert_equal_to_batch(_all_rows(release, "FAULTA", 3000), load_bars(spec))


def test_kafka_and_postgresql_pods_deleted_the_platform_reconnects(release: Cluster) -> None:
    # a model version in the registry before the faults: it must still be there after them
    version = run_job(release, "register-before-faults", REGISTER).strip().splitlines()[-1]
    for pod in (f"{RELEASE}-kafka-0", f"{RELEASE}-postgresql-0"):
        release.kubectl("-n", NAMESPACE, "delete", "pod", pod, "--wait=true", timeout=300)
    for statefulset in (f"{RELEASE}-kafka", f"{RELEASE}-postgresql"):
        release.wait(
            "-n", NAMESPACE, "rollout", "status", f"statefulset/{statefulset}", "--timeout=300s",
            timeout=360,
        )  # fmt: skip
    # the consumer, never restarted, streams new bars through the new Kafka pod
    spec = "synthetic:n_bars=300,timeframe=1d,seed=12,symbol=FAULTB"
    run_job(release, "replay-faultb", _replay(spec, "max"))
    assert_equal_to_batch(_all_rows(release, "FAULTB", 300), load_bars(spec))
    # and MLflow's registry reads PostgreSQL again, with the version registered before
    with forward(release, f"svc/{RELEASE}-mlflow", 5000) as url:
        alias = (
            f"{url}/api/2.0/mlflow/registered-models/alias?name=raytrader-ensemble&alias=champion"
        )
        _, body = wait_for("MLflow's registry answering", lambda: _ok(http(alias)), 120)
    assert json.loads(body)["model_version"]["version"] == version


def _ok(answer: tuple[int, str]) -> tuple[int, str] | None:
    return answer if answer[0] == 200 else None
