"""A session-scoped pytest fixture ``stack``: the real local stack on non-default test ports.

Use it from any test package::

    from tests.support.stack_fixture import stack  # noqa: F401

    @pytest.mark.integration
    def test_something(stack):
        producer = Producer({"bootstrap.servers": stack.config.kafka_bootstrap})

The stack comes up once per test session (on first use) and goes down at the session's end. Its
ports are the defaults moved into a high block so that a developer's own stack keeps running:
``port = RAYTRADER_TEST_STACK_PORT_BASE (default 21000) + default % 10000`` — Kafka 30092/30093,
PostgreSQL 26432, Redis 27379, MLflow 26000, Ray GCS 27380, dashboard 29265, client 21001, agent
29266, Feast 27566, Serve 29000, metrics 30400-30409, Ray workers 21100-21199: above Ray's default worker port
range (10002-19999, used by any local ``ray.init()``) and below the kernel's ephemeral ports
(32768+). The state dir is
``/tmp/raytrader-test-stack-<base>``: a session first stops whatever a crashed earlier session left
there, then starts from an empty state dir. The Kafka jars come from the normal cache
(``~/.cache/raytrader``), so only the very first run downloads them. A second test session with the
same port base waits for the first to finish (``/tmp/raytrader-test-stack-<base>.lock``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from raytrader.stack import Stack, StackConfig

PORT_BASE_ENV = "RAYTRADER_TEST_STACK_PORT_BASE"
SESSION_LOCK_TIMEOUT_S = 900.0


def port_base() -> int:
    return int(os.environ.get(PORT_BASE_ENV, "21000"))


def stack_test_ports(base: int | None = None) -> dict[str, int]:
    """The :class:`StackConfig` port fields for the test stack."""
    b = port_base() if base is None else base
    defaults = StackConfig.model_fields
    out = {
        name: b + int(defaults[name].default) % 10000
        for name in (
            "postgres_port",
            "redis_port",
            "kafka_port",
            "kafka_controller_port",
            "mlflow_port",
            "ray_gcs_port",
            "ray_dashboard_port",
            "ray_client_port",
            "ray_dashboard_agent_port",
            "feast_port",
            "serve_port",
        )
    }
    out.update(
        metrics_port_first=b + 9400,
        metrics_port_last=b + 9409,
        ray_min_worker_port=b + 100,
        ray_max_worker_port=b + 199,
    )
    return out


def stack_test_state_dir(base: int | None = None) -> Path:
    return Path("/tmp") / f"raytrader-test-stack-{port_base() if base is None else base}"  # noqa: S108


def stack_test_config(state_dir: Path | None = None, **overrides: Any) -> StackConfig:
    """The test stack's config: test ports, a small Ray object store, short timeouts."""
    fields: dict[str, Any] = {
        "state_dir": state_dir or stack_test_state_dir(),
        **stack_test_ports(),
        "ray_num_cpus": 2,
        "ray_object_store_mb": 256,
        "kafka_heap_mb": 512,
        "start_timeout_s": 150.0,
        "stop_grace_s": 10.0,
    }
    fields.update(overrides)
    return StackConfig(**fields)


def fresh_test_stack() -> Stack:
    """A stack on the test ports over an empty state dir (leftovers of a crashed run stopped)."""
    cfg = stack_test_config()
    if cfg.state_dir.exists():
        Stack(cfg).down()
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    return Stack(cfg)


# Each test module that imports ``stack`` gets its own copy of the fixture definition (pytest caches
# a session fixture per definition), so the stack itself is shared here and reference-counted: it
# comes up on first use and goes down when the last user is finalized at the end of the session.
_SHARED: dict[str, Any] = {"stack": None, "users": 0, "lock": None}


def _session_lock() -> IO[str]:
    """Exclusive use of the test ports across pytest processes (waits for another session)."""
    lock_path = Path(str(stack_test_state_dir()) + ".lock")
    lock = lock_path.open("w")
    deadline = time.monotonic() + SESSION_LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                pytest.fail(f"another test session holds {lock_path}; set {PORT_BASE_ENV}")
            time.sleep(1.0)


def _acquire() -> Stack:
    if _SHARED["stack"] is not None:
        _SHARED["users"] += 1
        st: Stack = _SHARED["stack"]
        return st
    lock = _session_lock()
    _SHARED.update(lock=lock, users=1)
    try:
        st = fresh_test_stack()
        _SHARED["stack"] = st
        t0 = time.monotonic()
        st.up()
    except BaseException:
        _release()  # takes down whatever did start, frees the ports and the lock
        raise
    print(f"\n[stack timing] up from an empty state dir: {time.monotonic() - t0:.1f} s")
    return st


def _release() -> None:
    _SHARED["users"] -= 1
    if _SHARED["users"] > 0:
        return
    st: Stack | None = _SHARED["stack"]
    _SHARED["stack"] = None
    try:
        if st is not None:
            st.down()
            shutil.rmtree(st.config.state_dir, ignore_errors=True)
    finally:
        lock = _SHARED["lock"]
        _SHARED["lock"] = None
        if lock is not None:
            lock.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The local stack, up on the test ports for the whole session."""
    st = _acquire()
    try:
        yield st
    finally:
        _release()
