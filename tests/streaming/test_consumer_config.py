"""ConsumerConfig: the /metrics bind address is an IP address, loopback unless told otherwise."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
from raytrader.streaming.sinks import NullSink


def test_metrics_bind_loopback_by_default_and_take_only_an_ip_address(tmp_path: Path) -> None:
    assert ConsumerConfig(state_dir=str(tmp_path)).metrics_host == "127.0.0.1"
    assert ConsumerConfig(state_dir=str(tmp_path), metrics_host="0.0.0.0").metrics_host == "0.0.0.0"  # noqa: S104
    with pytest.raises(ValidationError, match="metrics_host 'localhost' is not an IP address"):
        ConsumerConfig(state_dir=str(tmp_path), metrics_host="localhost")


def test_metrics_are_served_on_the_configured_address(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ConsumerConfig(
        bootstrap="127.0.0.1:9",
        state_dir=str(tmp_path),
        metrics_port=port,
        metrics_host="127.0.0.1",
        writer="thread",
    )
    consumer = FeatureConsumer(cfg, NullSink())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert b"raytrader_" in resp.read()
    finally:
        consumer.close()


def test_the_consumer_calendar_is_auto_by_default_and_checked(tmp_path: Path) -> None:
    from raytrader.errors import ConfigError

    assert ConsumerConfig(state_dir=str(tmp_path)).calendar == "auto"
    with pytest.raises(ConfigError, match="calendar"):
        ConsumerConfig.parse({"state_dir": str(tmp_path), "calendar": "nyse"})


def test_liveness_follows_the_poll_loop_not_the_metrics_thread(tmp_path: Path) -> None:
    import json
    import time
    import urllib.error

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ConsumerConfig(
        bootstrap="127.0.0.1:9",
        state_dir=str(tmp_path),
        metrics_port=port,
        writer="thread",
        liveness_max_poll_age_s=30.0,
    )
    consumer = FeatureConsumer(cfg, NullSink())
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        consumer.poll()  # the loop ran just now
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["ok"] is True
        consumer._last_poll = time.monotonic() - 31.0  # a loop stuck for 31 s
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 503
        body = json.loads(err.value.read())
        assert body["ok"] is False
        assert body["last_poll_age_s"] >= 31.0
        # the metrics thread itself still answers, and exports the age
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"raytrader_stream_last_poll_age_seconds" in resp.read()
    finally:
        consumer.close()
