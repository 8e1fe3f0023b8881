"""A real Kafka broker that takes only SASL_SSL: SCRAM-SHA-512 users and a TLS certificate signed
by a CA made for the test session.

The broker is the local stack's (the same Maven jars, KRaft, Java 17), on two free loopback ports,
with its own data directory; ``openssl`` makes the CA and the broker's certificate (names
``localhost`` and ``127.0.0.1``, so clients verify the host name), packed into a PKCS#12 keystore.
The SCRAM users are written into the metadata when the storage is formatted (``--add-scram``):
``admin`` (the broker's own) and ``raytrader``. Clients find everything in :attr:`SecureKafka.env`:
the ``RAYTRADER_KAFKA_*`` settings of :mod:`raytrader.settings`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raytrader.stack.config import StackConfig
from raytrader.stack.kafka import ensure_kafka_jars, find_java, new_cluster_id

USER = "raytrader"
LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca: Path
    password_file: Path
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """A client's settings (:class:`raytrader.settings.KafkaSettings`)."""
        return {
            "RAYTRADER_KAFKA_BOOTSTRAP": self.bootstrap,
            "RAYTRADER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "RAYTRADER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "RAYTRADER_KAFKA_SASL_USERNAME": USER,
            "RAYTRADER_KAFKA_SASL_PASSWORD_FILE": str(self.password_file),
            "RAYTRADER_KAFKA_SSL_CA_LOCATION": str(self.ca),
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(tls: Path, keystore_password: str) -> None:
    """ca.pem (the CA clients trust) and broker.p12 (the broker's key and certificate)."""
    days = "2"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", days, "-subj", "/CN=raytrader test CA", cwd=tls)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=localhost", cwd=tls)  # fmt: skip
    (tls / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "broker.pem", "-days", days, "-extfile", "san.cnf",
             cwd=tls)  # fmt: skip
    _openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-out", "broker.p12",
             "-passout", f"pass:{keystore_password}", cwd=tls)  # fmt: skip


def _properties(data: Path, tls: Path, port: int, controller: int, secret: str) -> str:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="admin" password="{secret}";'
    )
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_SSL://localhost:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={tls / 'broker.p12'}",
        f"ssl.keystore.password={secret}",
        f"ssl.key.password={secret}",
        "ssl.truststore.type=PEM",  # the broker checks its own certificate against the CA
        f"ssl.truststore.location={tls / 'ca.pem'}",
        f"log.dirs={data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ])  # fmt: skip


def _answers(kafka: SecureKafka) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"log_level": 0,
        "bootstrap.servers": kafka.bootstrap, "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
        "sasl.password": kafka.password_file.read_text().strip(),
        "ssl.ca.location": str(kafka.ca),
    })  # fmt: skip
    try:
        return bool(admin.list_topics(timeout=5).brokers)
    except Exception:  # not up yet
        return False


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    root = tmp_path_factory.mktemp("secure-kafka")
    tls, data = root / "tls", root / "data"
    tls.mkdir()
    secret = "broker-" + new_cluster_id()
    _certificates(tls, secret)
    password = root / "password"
    password.write_text("pw-" + new_cluster_id() + "\n")
    port, controller = _free_port(), _free_port()
    properties = root / "server.properties"
    properties.write_text(_properties(data, tls, port, controller, secret))
    log = root / "kafka.log"
    (root / "log4j.properties").write_text(LOG4J)
    libs = ensure_kafka_jars(StackConfig(), log)
    java = find_java()
    assert java is not None, "java not found: apt-get install openjdk-17-jre-headless"
    classpath = [f"-Dlog4j.configuration=file:{root / 'log4j.properties'}", "-cp", f"{libs}/*"]
    users = [f"SCRAM-SHA-512=[name=admin,password={secret}]",
             f"SCRAM-SHA-512=[name={USER},password={password.read_text().strip()}]"]  # fmt: skip
    subprocess.run(
        [str(java), *classpath, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(),
         "-c", str(properties), *(a for u in users for a in ("--add-scram", u))],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    kafka = SecureKafka(f"localhost:{port}", tls / "ca.pem", password, log)
    with log.open("a") as out:
        broker = subprocess.Popen(
            [str(java), "-Xmx512m", *classpath, "kafka.Kafka", str(properties)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(kafka):
            assert broker.poll() is None, f"the broker exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no SASL_SSL broker: {log.read_text()[-3000:]}"
            time.sleep(1)
        yield kafka
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
