"""The local development stack: Kafka, PostgreSQL, Redis, MLflow, a Ray head and Feast on 127.0.0.1.

``raytrader stack up | down | status | logs`` (and ``make stack-up`` / ``make stack-down``) start real
services as detached processes of the current user, each health-checked before ``up`` returns.
``up`` is idempotent: healthy services are left alone. Nothing listens on anything but the
configured loopback address (``host``, default 127.0.0.1; other addresses are refused).

Ports (defaults; every one is a :class:`StackConfig` field, overridable with
``RAYTRADER_STACK_<FIELD>``):

=============================  =====  ==========================================================
field                          port   service
=============================  =====  ==========================================================
``postgres_port``              5432   PostgreSQL (roles + databases ``mlflow``, ``raytrader``)
``redis_port``                 6379   Redis (Feast online store)
``kafka_port``                 9092   Kafka broker (``kafka_bootstrap``)
``kafka_controller_port``      9093   Kafka KRaft controller
``mlflow_port``                5000   MLflow tracking server + model registry
``ray_gcs_port``               6380   Ray GCS = head address for ``ray.init`` (6379 is Redis)
``ray_dashboard_port``         8265   Ray dashboard and Jobs API (``ray job submit``)
``ray_client_port``            10001  Ray Client (``ray://``)
``ray_dashboard_agent_port``   8266   Ray dashboard agent (Jobs API on the node); not Ray's 52365,
                                      which every local ``ray.init()`` takes
``feast_port``                 6566   Feast feature server (HTTP)
``metrics_port_first..last``   9400-  reserved for raytrader's own ``/metrics`` endpoints
                               9499   (nothing is started there yet)
``ray_min/max_worker_port``    10002- Ray worker processes (Ray's default range)
                               19999
=============================  =====  ==========================================================

Kafka topics (``kafka_topics``, replication factor 1): ``bars.1m``, ``bars.5m``, ``bars.15m``,
``bars.1h``, ``bars.4h``, ``bars.1d`` with 4 partitions each and ``bars.dlq`` with 1.

State layout (``state_dir``: ``RAYTRADER_STACK_DIR``, default ``~/.local/share/raytrader/stack``)::

    stack.lock                  one `raytrader stack` command at a time
    logs/<service>.log          stdout+stderr of each service (and of initdb, mvn, feast apply)
    run/<service>.pid           session id (= pid of the started process) of each service
    run/<service>.json          the same pid, its start time (guards against a recycled pid),
                                the UTC start time and the command line
    secrets/                    0700: postgres-mlflow-password, postgres-raytrader-password,
                                pgpass, ray-auth-token (all 0600)
    postgres/data, postgres/run PGDATA and the Unix socket (owned by `postgres` when run as root;
                                a symlink to /var/lib/raytrader/postgres-<hash> if that user
                                cannot reach the state dir)
    redis/                      Redis working dir: its append-only file (--appendonly yes, no RDB)
    kafka/                      cluster.id, server.properties, log4j.properties, data/ (KRaft logs)
    mlartifacts/                MLflow artifacts (served through the tracking server)
    ray/                        Ray's --temp-dir: sessions and Ray's own logs (if the state dir
                                path is long: /tmp/raytrader-ray-<hash>, Unix socket path limit)

Kafka's jars live outside the state dir, in ``~/.cache/raytrader`` (``cache_dir``):
``m2/`` (Maven repository) and ``kafka-<version>/libs`` (see :mod:`raytrader.stack.kafka`).

Ray token authentication. The head runs with ``RAY_AUTH_MODE=token`` and a token generated once into
``<state>/secrets/ray-auth-token``. A client on the same machine needs (``raytrader stack env``
prints them; ``eval "$(raytrader stack env)"``)::

    RAY_ADDRESS=127.0.0.1:6380                RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265
    RAY_AUTH_MODE=token                       RAY_AUTH_TOKEN_PATH=<state>/secrets/ray-auth-token
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

after which ``ray job submit --address http://127.0.0.1:8265 -- python -c "print(1)"`` and
``ray.init(address="127.0.0.1:6380")`` work. The last variable keeps Ray from rewriting a loopback
address to the machine's network IP (Ray does that on Linux by default, which would make the head
listen on every interface and clients dial an address the head does not listen on); it must be set
before ``import ray`` (it also makes the head single-node: no worker node can join). Without
``RAY_AUTH_MODE=token`` a client sends no token and the head answers 401. Ray also reads a token from
``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``; the stack uses its own file so that a developer's other
Ray clusters keep theirs. The head also has its own ``--temp-dir``, so a plain ``ray.init()``
elsewhere on the machine starts its own local Ray instead of attaching to the stack's.

Settings. ``up`` writes the same variables (and the Kafka, Redis, Feast, MLflow and Serve ones) to
``<state>/client.env``; :mod:`raytrader.settings` reads that file in local mode when a variable is
not exported (it never reads Ray's or MLflow's from it: those follow the stack only when exported).
The stack is a development tool that produces settings; code that runs in a pod never imports it.

Reset: ``raytrader stack down --purge`` stops everything and deletes the state dir (PostgreSQL
databases, Kafka topics and messages, MLflow runs and artifacts, tokens and passwords); the next
``up`` starts from scratch (without downloading the Kafka jars again). To re-download the jars,
delete ``~/.cache/raytrader/kafka-<version>``.
"""

from raytrader.stack.base import ServiceStatus
from raytrader.stack.config import SERVICE_NAMES, StackConfig
from raytrader.stack.manager import Stack
from raytrader.stack.process import PrerequisiteError, StackError

__all__ = [
    "SERVICE_NAMES",
    "PrerequisiteError",
    "ServiceStatus",
    "Stack",
    "StackConfig",
    "StackError",
]
