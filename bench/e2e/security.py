"""What Kafka's security costs, side by side in one run: the same broker, the same
client code, three listeners.

    make up && .venv/bin/python bench/e2e/security.py      (or: make bench-security)

A throwaway Kafka node (its own folder and ports, the stack's jars) listens three
ways at once:

- ``PLAINTEXT``: no authentication and no encryption, as MedStream ran before issue 15
  (its anonymous principal is a super user, so the authoriser waves it through);
- ``SASL_PLAINTEXT``: SCRAM-SHA-512, no TLS (the development flag);
- ``SASL_SSL``: SCRAM-SHA-512 over TLS from the stack's CA, as every MedStream client
  now connects, with the StandardAuthorizer checking the client's literal ACLs.

For each, in interleaved rounds (so drift on this noisy machine hits all three alike):
connection set-up (bootstrap, metadata and the idempotent producer's id), produce
throughput with MedStream's producer settings (idempotent, acks=all) for small records
(a vital-sign event) and large ones (a radiograph), and the produce-to-fetch round trip
of one record at a time. Reported: medians, and each secured figure as a ratio of the
plaintext one. Results: bench/results/kafka-security.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream import stack as local_stack  # noqa: E402
from medstream.kafka import PRODUCER_DEFAULTS, compression  # noqa: E402
from medstream.platform.identities import KafkaGrant  # noqa: E402
from medstream.platform.kafka_acl import (  # noqa: E402
    broker_security_properties,
    reconcile,
    scram_format_arguments,
)
from medstream.platform.tls import ensure_local_ca  # noqa: E402
from medstream.settings import get_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PORTS = {"PLAINTEXT": 39092, "SASL_PLAINTEXT": 39093, "SASL_SSL": 39094}
CONTROLLER_PORT = 39095
USER, PASSWORD = "medstream-bench", "bench-password-not-a-secret"
ADMIN, ADMIN_PASSWORD = "medstream-operator", "bench-operator-password"
BROKER_PASSWORD, CONTROLLER_PASSWORD = "bench-broker-password", "bench-controller-password"
ROUNDS = int(os.environ.get("MEDSTREAM_BENCH_ROUNDS", "7"))
SMALL, SMALL_BYTES = 5000, 1024
LARGE, LARGE_BYTES = 100, 2 * 1024 * 1024
ROUND_TRIPS = 200
CONNECTS = 8


def log(message: str) -> None:
    print(f"[security] {message}", file=sys.stderr, flush=True)


def properties(folder: Path, tls_dir: Path) -> str:
    tls = ensure_local_ca(tls_dir)
    security = broker_security_properties(
        protocol="SASL_SSL",
        broker_password=BROKER_PASSWORD,
        controller_password=CONTROLLER_PASSWORD,
        keystore=str(tls.broker_keystore),
        truststore=str(tls.ca_cert),
    )
    # The controller listener stays plaintext here: it is not on the measured path.
    security = {k: v for k, v in security.items() if "controller" not in k}
    scram = security["listener.name.broker.scram-sha-512.sasl.jaas.config"]
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{CONTROLLER_PORT}",
        "listeners": ",".join(
            [
                f"PLAIN://127.0.0.1:{PORTS['PLAINTEXT']}",
                f"SCRAM://127.0.0.1:{PORTS['SASL_PLAINTEXT']}",
                f"BROKER://127.0.0.1:{PORTS['SASL_SSL']}",
                f"CONTROLLER://127.0.0.1:{CONTROLLER_PORT}",
            ]
        ),
        "advertised.listeners": f"PLAIN://127.0.0.1:{PORTS['PLAINTEXT']},"
        f"SCRAM://127.0.0.1:{PORTS['SASL_PLAINTEXT']},BROKER://127.0.0.1:{PORTS['SASL_SSL']}",
        "listener.security.protocol.map": "PLAIN:PLAINTEXT,SCRAM:SASL_PLAINTEXT,"
        "BROKER:SASL_SSL,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "BROKER",
        "listener.name.scram.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.scram.scram-sha-512.sasl.jaas.config": scram,
        **security,
        # The plaintext listener's clients are anonymous: as before issue 15, they may
        # do anything (a super user skips the ACL lookup).
        "super.users": f"{security['super.users']};User:ANONYMOUS",
        "log.dirs": str(folder / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def start_broker(folder: Path) -> subprocess.Popen[bytes]:
    stack = local_stack.Stack(get_settings().state_dir)
    jars = stack.jars_dir
    if not jars.exists():
        raise SystemExit("Kafka's jars are missing: run `make up` first")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    props = folder / "server.properties"
    props.write_text(properties(folder, stack.tls_dir))
    java = ["java", "-cp", str(jars / "*")]
    tool = [*java, "kafka.tools.StorageTool"]
    cid = subprocess.run(
        [*tool, "random-uuid"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    users = {USER: PASSWORD, ADMIN: ADMIN_PASSWORD, "medstream-broker": BROKER_PASSWORD}
    subprocess.run(
        [*tool, "format", "-t", cid, "-c", str(props), *scram_format_arguments(users)],
        capture_output=True,
        check=True,
    )
    (folder / "logs").mkdir()
    out = (folder / "logs" / "stdout.log").open("wb")
    return subprocess.Popen(
        [
            "java",
            "-Xms256m",
            "-Xmx512m",
            f"-Dlog4j2.configurationFile={ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={folder / 'logs'}",
            *java[1:],
            "kafka.Kafka",
            str(props),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def options(protocol: str, user: str = USER, password: str = PASSWORD) -> dict[str, Any]:
    found: dict[str, Any] = {
        "bootstrap_servers": f"127.0.0.1:{PORTS[protocol]}",
        "security_protocol": protocol,
    }
    if protocol != "PLAINTEXT":
        found |= {
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": password,
        }
    if protocol == "SASL_SSL":
        ca = local_stack.Stack(get_settings().state_dir).tls_dir / "ca.pem"
        found["ssl_context"] = create_ssl_context(cafile=str(ca))
    return found


async def prepare() -> None:
    """Wait for the broker, create the topics, and give the bench user literal ACLs."""
    deadline = time.monotonic() + 90
    while True:
        try:
            with socket.create_connection(("127.0.0.1", PORTS["SASL_SSL"]), timeout=1):
                pass
            admin = AIOKafkaAdminClient(**options("SASL_SSL", ADMIN, ADMIN_PASSWORD))
            await admin.start()
            break
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    try:
        await admin.create_topics(
            [
                NewTopic(
                    f"bench.{p.lower()}",
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(8 * 2**20)},
                )
                for p in PORTS
            ]
        )
        topics = tuple(f"bench.{p.lower()}" for p in PORTS)
        await reconcile(admin, {"bench": KafkaGrant(reads=topics, writes=topics)})
    finally:
        await admin.close()
    await asyncio.sleep(2)


def producer(protocol: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **options(protocol),
        **{
            **PRODUCER_DEFAULTS,
            "compression_type": compression(get_settings()),
            "max_request_size": 8 * 2**20,
        },
    )


async def connect_ms(protocol: str) -> float:
    started = time.perf_counter()
    client = producer(protocol)
    await client.start()
    elapsed = (time.perf_counter() - started) * 1000
    await client.stop()
    return elapsed


async def throughput(protocol: str, count: int, size: int) -> float:
    """Records a second, idempotent and acks=all, every acknowledgement awaited."""
    client = producer(protocol)
    await client.start()
    value = os.urandom(size)
    topic = f"bench.{protocol.lower()}"
    try:
        started = time.perf_counter()
        pending = [await client.send(topic, value) for _ in range(count)]
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - started)
    finally:
        await client.stop()


async def round_trip_ms(protocol: str, count: int) -> list[float]:
    """Produce one record and wait until the consumer has fetched it, one at a time."""
    topic = f"bench.{protocol.lower()}"
    client = producer(protocol)
    consumer = AIOKafkaConsumer(**options(protocol), fetch_max_wait_ms=5, enable_auto_commit=False)
    await client.start()
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    await consumer.seek_to_end(partition)
    times = []
    try:
        for i in range(count):
            payload = f"rt-{i}".encode()
            started = time.perf_counter()
            await client.send_and_wait(topic, payload)
            while True:
                record = await consumer.getone(partition)
                if record.value == payload:
                    break
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await consumer.stop()
        await client.stop()
    return times


async def measure() -> dict[str, dict[str, list[float]]]:
    found: dict[str, dict[str, list[float]]] = {
        p: {"connect_ms": [], "small_per_s": [], "large_per_s": [], "round_trip_ms": []}
        for p in PORTS
    }
    for round_ in range(ROUNDS):
        for protocol in PORTS:
            log(f"round {round_ + 1}/{ROUNDS}: {protocol}")
            row = found[protocol]
            row["connect_ms"] += [await connect_ms(protocol) for _ in range(CONNECTS)]
            row["small_per_s"].append(await throughput(protocol, SMALL, SMALL_BYTES))
            row["large_per_s"].append(await throughput(protocol, LARGE, LARGE_BYTES))
            row["round_trip_ms"] += await round_trip_ms(protocol, ROUND_TRIPS)
    return found


def summary(raw: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median": round(statistics.median(ordered), 3),
            "min": round(ordered[0], 3),
            "max": round(ordered[-1], 3),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "n": len(ordered),
        }

    table = {p: {k: stats(v) for k, v in row.items()} for p, row in raw.items()}
    base = table["PLAINTEXT"]
    ratios = {
        p: {k: round(v["median"] / base[k]["median"], 3) for k, v in row.items()}
        for p, row in table.items()
        if p != "PLAINTEXT"
    }
    return {"medians_and_p95": table, "ratio_to_plaintext": ratios}


def main() -> None:
    folder = get_settings().state_dir / "bench-kafka-security"
    log("starting a throwaway broker with three listeners")
    broker = start_broker(folder)
    try:
        asyncio.run(prepare())
        raw = asyncio.run(measure())
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": ROUNDS,
        "workload": {
            "connect": f"{CONNECTS} producer starts a round",
            "small": f"{SMALL} records of {SMALL_BYTES} B, idempotent, acks=all",
            "large": f"{LARGE} records of {LARGE_BYTES // 2**20} MiB",
            "round_trip": f"{ROUND_TRIPS} produce-then-fetch, one record at a time",
        },
        **summary(raw),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kafka-security.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
