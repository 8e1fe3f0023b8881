"""Parity through the real data path: bars replayed into Kafka, features computed by the stream
consumer into Feast (Redis online, Parquet offline), decisions asked of the decision service — bar
for bar the decisions and explanations of the registered meta ensemble's own backtest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.meta.test_model import RULES
from tests.serving.conftest import API, AUTH
from tests.support.stack_fixture import stack  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.integration

# its own timeframe: no other test writes bars.2h, so the consumer reads only these bars
DATA = "synthetic:n_bars=500,timeframe=2h,seed=8,symbol=METAK"
LIVE = 12  # bars streamed one at a time at the end


def _service(root: Path, uri: str, redis: str) -> Any:
    from fastapi.testclient import TestClient

    from raytrader.serving.config import ServiceConfig, Tokens
    from raytrader.serving.model import ModelHolder
    from raytrader.serving.service import DecisionService, LocalModel, create_app

    config = ServiceConfig(
        model_uri="models:/raytrader-meta@champion",
        tracking_uri=uri,
        feast_profile="redis",
        feast_data=str(root / "feast"),
        redis=redis,
        timeframe="2h",
        poll_interval_s=0,
        stale="flag",
    )
    holder = ModelHolder(config)
    assert holder.check().startswith("swapped to"), holder.record.last_failure
    service = DecisionService(config, LocalModel(holder), tokens=Tokens(api=API, admin=None))
    return TestClient(create_app(service))


def _decide(client: Any) -> dict[str, Any]:
    r = client.post("/v1/decisions", json={"symbols": ["METAK"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    (d,) = r.json()["decisions"]
    return dict(d)


def test_decisions_through_kafka_and_feast_equal_the_backtest_bar_for_bar(
    stack,  # noqa: F811
    tmp_path: Path,
) -> None:
    from raytrader.data.sources import load_bars
    from raytrader.ensemble import Member, register_rules
    from raytrader.features import feast_repo as fr
    from raytrader.kafka_admin import create_topics
    from raytrader.meta.model import MetaEnsembleConfig, build_meta
    from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
    from raytrader.streaming.producer import BarProducer, bar_messages
    from raytrader.streaming.sinks import default_sink
    from raytrader.tracking import embedded_uri

    cfg = stack.config
    uri = embedded_uri(tmp_path)
    versions = register_rules(RULES, tracking_uri=uri, root=tmp_path, data=DATA)
    built = build_meta(
        MetaEnsembleConfig(
            members=tuple(Member(name=n, version=versions[n]) for n, _, _ in RULES),
            data=DATA,
            alias="champion",
            output_dir=str(tmp_path),
            tracking_uri=uri,
        )
    )
    backtest = built["decisions"]
    bars = load_bars(DATA)
    n = len(bars)
    fr.apply(fr.store("redis", redis=cfg.redis_connection, data=tmp_path / "feast"))
    consumer = FeatureConsumer(
        ConsumerConfig(
            bootstrap=cfg.kafka_bootstrap,
            timeframe="2h",
            group_id="t-meta-parity",
            state_dir=str(tmp_path / "state"),
            writer="thread",
        ),
        default_sink(cfg.redis_connection, str(tmp_path / "feast")),
    )
    create_topics(cfg.kafka_bootstrap, {"bars.2h": 1})  # the stack creates its default topics
    producer = BarProducer(cfg.kafka_bootstrap)
    messages = list(bar_messages(bars, "synthetic"))
    producer.replay(messages[: n - LIVE])
    assert consumer.run(max_messages=n - LIVE, idle_timeout_s=60) == n - LIVE

    def same(i: int, d: dict[str, Any]) -> None:
        want = backtest.iloc[i]
        target = float(want["target"])
        assert (d["target"] is None and math.isnan(target)) or d["target"] == target, i
        assert d["feature_time"].startswith((bars.index[i] + bars.timeframe.delta).isoformat()[:19])
        expected = json.loads(want["explanation"])
        got = dict(d["explanation"])
        got.pop("caught_up"), expected.pop("caught_up")
        assert got == expected, i

    client = _service(tmp_path, uri, cfg.redis_connection)
    first = _decide(client)  # a cold replica: the state is rebuilt from the offline store
    assert first["explanation"]["caught_up"] == n - LIVE - 1
    same(n - LIVE - 1, first)
    for i in range(n - LIVE, n):  # then one bar at a time, as live bars arrive
        producer.replay(messages[i : i + 1])
        assert consumer.run(max_messages=1, idle_timeout_s=60) == 1
        d = _decide(client)
        assert d["explanation"]["caught_up"] == 0
        same(i, d)
    consumer.close()
    # a second replica that saw none of it decides the same at the last bar
    other = _decide(_service(tmp_path, uri, cfg.redis_connection))
    assert other["explanation"]["caught_up"] == n - 1
    same(n - 1, other)
