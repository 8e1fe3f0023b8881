"""Kafka's admin operations, for the local stack and for the chart's topics Job alike: a quiet
admin client, and idempotent topic creation."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from raytrader.errors import ServiceError

#: the bar topics (``bars.<timeframe>``, keyed by symbol) and the dead-letter topic, with their
#: partitions: what the local stack and the chart's topics Job create
DEFAULT_TOPICS: dict[str, int] = {
    "bars.1m": 4,
    "bars.5m": 4,
    "bars.15m": 4,
    "bars.1h": 4,
    "bars.4h": 4,
    "bars.1d": 4,
    "bars.dlq": 1,
}

_SILENT = logging.getLogger("raytrader.kafka_admin")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def admin_client(
    bootstrap: str,
    timeout_s: float = 5.0,
    security: dict[str, Any] | None = None,
    errors: list[str] | None = None,
) -> Any:
    """A confluent-kafka ``AdminClient`` for ``bootstrap`` that does not log connection errors;
    ``security``: librdkafka's security settings
    (:meth:`raytrader.settings.KafkaSettings.security_config`); ``errors`` collects the client's
    own errors (a refused password, an untrusted certificate), which its calls report only as
    "transport failure"."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": int(timeout_s * 1000),
    }
    if errors is not None:
        conf["error_cb"] = lambda err: errors.append(str(err.str() if hasattr(err, "str") else err))
    return AdminClient({**conf, **(security or {})}, logger=_SILENT)


def wait_reachable(
    bootstrap: str,
    *,
    wait_s: float = 0.0,
    security: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Return once a broker of ``bootstrap`` answers (within ``wait_s``, retrying), else a
    :class:`ServiceError` naming the servers and the client's last error (refused, a failed
    SASL login, an untrusted certificate). ``security``: as for :func:`admin_client`."""
    errors: list[str] = []
    admin = admin_client(bootstrap, security=security, errors=errors)
    _wait_for_brokers(
        admin, bootstrap, errors, replication=1, timeout_s=5.0, wait_s=wait_s, progress=progress
    )


def _wait_for_brokers(
    admin: Any,
    bootstrap: str,
    errors: list[str],
    *,
    replication: int,
    timeout_s: float,
    wait_s: float,
    progress: Callable[[str], None] | None,
) -> Any:
    """The cluster's metadata once ``replication`` brokers answer, retrying for ``wait_s``."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + wait_s
    while True:
        try:
            md = admin.list_topics(timeout=timeout_s)
            problem = (
                None
                if len(md.brokers) >= replication
                else f"{len(md.brokers)} broker(s) up, replication factor {replication}"
            )
        except KafkaException as exc:
            problem = _describe(exc)
        if problem is None:
            return md
        if time.monotonic() >= deadline:
            admin.poll(0)  # serves the error callbacks
            cause = f" ({errors[-1]})" if errors else ""
            raise ServiceError(f"kafka at {bootstrap} not ready: {problem}{cause}")
        if progress is not None:
            progress(f"waiting for kafka at {bootstrap}: {problem}")
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def _describe(exc: Exception) -> str:
    """A KafkaException's message without librdkafka's ``KafkaError{code=...}`` wrapping."""
    err: Any = exc.args[0] if exc.args else None
    return str(err.str()) if hasattr(err, "str") else str(exc)


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication: int = 1,
    timeout_s: float = 30.0,
    wait_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
    security: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Create ``topics`` (name → partitions) that do not exist on ``bootstrap``; raise the
    partition count of those with fewer (never lower it). Idempotent.

    ``wait_s``: first wait this long for ``replication`` brokers to be up (a cluster that is
    still starting), telling ``progress`` what it waits for.
    ``security``: as for :func:`admin_client`.
    Returns ``{topic: "created" | "exists" | "grown to N"}``.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.cimpl import NewPartitions, NewTopic

    errors: list[str] = []
    admin = admin_client(bootstrap, security=security, errors=errors)
    md = _wait_for_brokers(
        admin, bootstrap, errors, replication=replication, timeout_s=timeout_s, wait_s=wait_s,
        progress=progress,
    )  # fmt: skip
    result: dict[str, str] = {}
    new = [
        NewTopic(name, num_partitions=n, replication_factor=replication)
        for name, n in topics.items()
        if name not in md.topics
    ]
    grow = [
        NewPartitions(name, n)
        for name, n in topics.items()
        if name in md.topics and len(md.topics[name].partitions) < n
    ]
    for name in topics:
        result[name] = "exists"
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                result[name] = "created"
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise ServiceError(f"kafka: could not create topic {name}: {exc}") from exc
    if grow:
        for name, fut in admin.create_partitions(grow, operation_timeout=timeout_s).items():
            with contextlib.suppress(KafkaException):  # raced with another `up`: re-checked below
                fut.result(timeout=timeout_s)
            result[name] = f"grown to {topics[name]}"
    # A just-created topic can show up in the metadata before its partitions do (KRaft
    # propagates them to the broker's cache asynchronously), so re-read until they agree.
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s)
        have = {
            name: len(md.topics[name].partitions) if name in md.topics else 0 for name in topics
        }
        short = {name: n for name, n in have.items() if n < topics[name]}
        if not short:
            return result
        if time.monotonic() > deadline:
            name, count = next(iter(short.items()))
            raise ServiceError(
                f"kafka: topic {name} has {count} partitions, expected {topics[name]}"
            )
        time.sleep(0.2)


__all__ = ["DEFAULT_TOPICS", "admin_client", "create_topics"]
