"""The local stack without Docker: Apache Kafka (KRaft), PostgreSQL and Redis.

Each server runs from packages on this machine, in its own folder and on its own
port under the state folder, so it never collides with a system service. ``up`` is
idempotent and waits until every server answers; ``down`` stops only processes whose
pid file this module wrote and whose command line is still ours.

Kafka comes from Maven Central (``infra/kafka/pom.xml``) and runs with ``java``.
By default it is one combined broker+controller node; ``cluster=True`` starts a
separate three-node cluster on other ports for the fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medstream.deployment import SERVICES
from medstream.paths import INFRA_DIR
from medstream.platform.identities import (
    BROKER,
    CONTROLLER_USER,
    KAFKA_GRANTS,
    OPERATOR,
    POSTGRES_GRANTS,
    REDIS_USERS,
    kafka_user,
    postgres_role,
    redis_user,
)
from medstream.platform.kafka_acl import broker_security_properties, scram_format_arguments
from medstream.platform.secrets import development_secret, kafka_broker_secret
from medstream.platform.tls import ensure_local_ca
from medstream.settings import (
    LOCAL_KAFKA_PORT,
    LOCAL_POSTGRES_PORT,
    LOCAL_REDIS_PORT,
    Settings,
)

Report = Callable[[str], None]

CLUSTER_KAFKA_BASE_PORT = 29092
KAFKA_HEAP = "-Xmx512m"
# The superuser password of the local stack (loopback only); tests tamper as this user.
POSTGRES_DEV_PASSWORD = "postgres"  # noqa: S105


class StackError(RuntimeError):
    """A server could not be set up or started; the message says what to do next."""


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node that is both broker and controller."""

    node_id: int
    broker_port: int
    controller_port: int
    folder: Path

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"


@dataclass(frozen=True)
class Stack:
    """Where the servers of one stack live. ``cluster`` selects the three-node Kafka;
    ``kafka_protocol`` is SASL_SSL, or SASL_PLAINTEXT (SCRAM without TLS, loopback
    only) behind the development flag ``MEDSTREAM_KAFKA_SECURITY_PROTOCOL``."""

    state_dir: Path
    cluster: bool = False
    kafka_protocol: str = "SASL_SSL"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / ("kafka-cluster" if self.cluster else "kafka")

    @property
    def jars_dir(self) -> Path:
        return self.state_dir / "kafka-libs"

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def kafka_nodes(self) -> list[KafkaNode]:
        if not self.cluster:
            return [KafkaNode(1, LOCAL_KAFKA_PORT, LOCAL_KAFKA_PORT + 1, self.kafka_dir / "node-1")]
        return [
            KafkaNode(
                i,
                CLUSTER_KAFKA_BASE_PORT + 2 * (i - 1),
                CLUSTER_KAFKA_BASE_PORT + 2 * (i - 1) + 1,
                self.kafka_dir / f"node-{i}",
            )
            for i in (1, 2, 3)
        ]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.broker_port}" for n in self.kafka_nodes)


def cluster_settings(settings: Settings) -> Settings:
    """Settings for the three-node cluster: its bootstrap, RF 3 and min ISR 2."""
    return settings.model_copy(
        update={
            "kafka_bootstrap": Stack(settings.state_dir, cluster=True).kafka_bootstrap,
            "topic_replication_factor": 3,
            "topic_min_insync_replicas": 2,
        }
    )


# ---------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line has ``marker``.

    The marker check stops a recycled pid from making us signal someone else's process.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if _pid_alive(pid) and marker in _cmdline(pid):
        return pid
    return None


def _terminate(pids: list[int], timeout_s: float = 30.0) -> None:
    """SIGTERM all, wait, then SIGKILL stragglers: servers get to shut down cleanly.

    Signalling every node first lets a cluster's brokers shut down in parallel.
    """
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(not _pid_alive(pid) or _is_zombie(pid) for pid in pids):
            return
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _wait(check: Callable[[], bool], what: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise StackError(
        f"{what} did not become healthy within {timeout_s:.0f}s. "
        f"Its log is {log}; last lines:\n{_tail(log)}"
    )


def _run(cmd: list[str], what: str, **kwargs: object) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")
    return str(result.stdout)


# ---------------------------------------------------------------- packages


def _apt_install(packages: list[str], report: Report) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"Missing {', '.join(packages)}. Install them, for example: "
            f"sudo apt-get install -y {' '.join(packages)}"
        )
    report(f"installing {', '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", *packages], "apt-get install", env=env)


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server's bin folder from Debian's packages, if any."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def ensure_packages(report: Report) -> None:
    """Install the servers' Debian packages that are missing (as root), or say which."""
    missing = []
    if shutil.which("java") is None:
        missing.append("openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        missing.append("maven")
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if missing:
        _apt_install(missing, report)


# ---------------------------------------------------------------- kafka


def _resolve_kafka_jars(stack: Stack, report: Report) -> None:
    """Copy Kafka's runtime jars from Maven Central once per version of the pom."""
    pom = INFRA_DIR / "kafka" / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = stack.jars_dir / ".pom-sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return
    report("resolving Kafka jars with Maven (first run only)")
    if stack.jars_dir.exists():
        shutil.rmtree(stack.jars_dir)
    _run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={stack.jars_dir}",
        ],
        "Maven (check that Maven Central is reachable)",
    )
    stamp.write_text(digest)


def _java(stack: Stack, *args: str) -> list[str]:
    return ["java", "-cp", str(stack.jars_dir / "*"), *args]


def _node_properties(stack: Stack, node: KafkaNode) -> str:
    nodes = stack.kafka_nodes
    replication = len(nodes)
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    protocol = stack.kafka_protocol
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        # One SCRAM listener for clients and brokers; the controller listener
        # authenticates with PLAIN, since SCRAM credentials live in the metadata log
        # the controllers serve (KAFKA-15513).
        "listeners": f"BROKER://127.0.0.1:{node.broker_port},"
        f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"BROKER://127.0.0.1:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "BROKER",
        "listener.security.protocol.map": f"BROKER:{protocol},CONTROLLER:{protocol}",
        "log.dirs": str(node.folder / "data"),
        "num.partitions": "6",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min(2, replication)),
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(2, replication)),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min(2, replication)),
        "auto.create.topics.enable": "false",
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.check.interval.ms": "60000",
    }
    tls = ensure_local_ca(stack.tls_dir) if protocol == "SASL_SSL" else None
    lines |= broker_security_properties(
        protocol=protocol,
        broker_password=kafka_broker_secret(stack.state_dir, BROKER),
        controller_password=kafka_broker_secret(stack.state_dir, CONTROLLER_USER),
        keystore=str(tls.broker_keystore) if tls else None,
        truststore=str(tls.ca_cert) if tls else None,
    )
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def kafka_scram_users(stack: Stack) -> dict[str, str]:
    """Every SCRAM user of the stack and its generated password: the broker, the
    operator and each principal of ``KAFKA_GRANTS``."""
    principals = [BROKER, OPERATOR, *KAFKA_GRANTS]
    return {kafka_user(p): development_secret(stack.state_dir, f"kafka-{p}") for p in principals}


def _security_stamp(stack: Stack) -> str:
    """What a formatted storage's credentials were made from: a change means a reformat."""
    return hashlib.sha256(json.dumps(sorted(kafka_scram_users(stack).items())).encode()).hexdigest()


def _format_kafka(stack: Stack, report: Report) -> None:
    cluster_id_file = stack.kafka_dir / "cluster.id"
    if not cluster_id_file.exists():
        stack.kafka_dir.mkdir(parents=True, exist_ok=True)
        cid = _run(_java(stack, "kafka.tools.StorageTool", "random-uuid"), "Kafka random-uuid")
        cluster_id_file.write_text(cid.strip())
    cluster_id = cluster_id_file.read_text().strip()
    stamp_file = stack.kafka_dir / "security.sha256"
    stamp = _security_stamp(stack)
    formatted = [n for n in stack.kafka_nodes if (n.folder / "data" / "meta.properties").exists()]
    if formatted and (not stamp_file.exists() or stamp_file.read_text() != stamp):
        # Storage from before SCRAM (or with other principals) has no credentials for
        # today's users, and SCRAM users are made at format time: the development
        # stack's Kafka data is dropped and formatted again.
        report("Kafka storage predates its SCRAM users: formatting it again (dev data lost)")
        down_kafka(stack, report)
        for node in stack.kafka_nodes:
            _wait(
                lambda node=node: not _port_open(node.broker_port),  # type: ignore[misc]
                f"{node.name} to stop",
                60,
                node.folder / "logs" / "server.log",
            )
        for node in formatted:
            shutil.rmtree(node.folder / "data")
    scram = scram_format_arguments(kafka_scram_users(stack))
    for node in stack.kafka_nodes:
        node.folder.mkdir(parents=True, exist_ok=True)
        props = node.folder / "server.properties"
        descriptor = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(_node_properties(stack, node))
        os.chmod(props, 0o600)
        if (node.folder / "data" / "meta.properties").exists():
            continue
        report(f"formatting {node.name} storage")
        # A static quorum (controller.quorum.voters) for one node and three alike:
        # every node is formatted with the same cluster id and no quorum flag.
        _run(
            _java(
                stack,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *scram,
            ),
            f"formatting {node.name}",
        )
    stamp_file.write_text(stamp)


def _start_kafka_node(stack: Stack, node: KafkaNode) -> None:
    pidfile = node.folder / "kafka.pid"
    if _owned_pid(pidfile, str(node.folder)) is not None:
        return
    if _port_open(node.broker_port):
        raise StackError(
            f"Port {node.broker_port} is taken by another process; stop it, or run "
            f"`medstream stack down` if it is an older MedStream stack."
        )
    logs = node.folder / "logs"
    logs.mkdir(exist_ok=True)
    cmd = [
        "java",
        "-Xms256m",
        KAFKA_HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={INFRA_DIR / 'kafka' / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        str(stack.jars_dir / "*"),
        "kafka.Kafka",
        str(node.folder / "server.properties"),
    ]
    with (logs / "stdout.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))


def _operator_settings(stack: Stack) -> Settings:
    return Settings(
        state_dir=stack.state_dir,
        kafka_bootstrap=stack.kafka_bootstrap,
        kafka_security_protocol=stack.kafka_protocol,
        service_name="medstream-stack",
    )


async def _kafka_brokers(stack: Stack) -> int:
    from medstream.kafka import make_admin  # noqa: PLC0415  (not needed by `down`)

    admin = make_admin(_operator_settings(stack), principal=OPERATOR, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"])
    finally:
        await admin.close()


def kafka_healthy(stack: Stack) -> bool:
    """Whether every node answers (as the operator, authenticated) and the cluster
    reports all its brokers."""
    if not all(_port_open(n.broker_port) for n in stack.kafka_nodes):
        return False
    try:
        return asyncio.run(_kafka_brokers(stack)) == len(stack.kafka_nodes)
    except Exception:  # noqa: BLE001  (any client error means "not ready yet")
        return False


def start_kafka_node(stack: Stack, node_id: int) -> None:
    """Start one node of an already formatted stack (used by the broker-loss tests)."""
    node = next(n for n in stack.kafka_nodes if n.node_id == node_id)
    _start_kafka_node(stack, node)


def kafka_node_pid(stack: Stack, node_id: int) -> int | None:
    """The pid of a running node of ``stack``, if this module started it."""
    node = next(n for n in stack.kafka_nodes if n.node_id == node_id)
    return _owned_pid(node.folder / "kafka.pid", str(node.folder))


def kill_kafka_node(stack: Stack, node_id: int, timeout_s: float = 10.0) -> None:
    """SIGKILL one node of ``stack`` (a broker crash) and wait until it is gone."""
    pid = kafka_node_pid(stack, node_id)
    if pid is None:
        raise StackError(f"kafka-{node_id} is not running")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and not _is_zombie(pid):
        if time.monotonic() > deadline:
            raise StackError(f"kafka-{node_id} (pid {pid}) survived SIGKILL for {timeout_s}s")
        time.sleep(0.1)


def wait_for_kafka(stack: Stack, timeout_s: float = 120) -> None:
    """Block until every node of ``stack`` is up and in the cluster."""
    log = stack.kafka_nodes[0].folder / "logs" / "server.log"
    _wait(lambda: kafka_healthy(stack), "Kafka", timeout_s, log)


def up_kafka(stack: Stack, report: Report) -> None:
    """Resolve, format, start and wait for the Kafka node(s) of ``stack``."""
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    _resolve_kafka_jars(stack, report)
    _format_kafka(stack, report)
    for node in stack.kafka_nodes:
        _start_kafka_node(stack, node)
    report(f"waiting for Kafka at {stack.kafka_bootstrap}")
    wait_for_kafka(stack)


def down_kafka(stack: Stack, report: Report) -> None:
    """Stop the Kafka nodes of ``stack`` that this module started."""
    pids = []
    for node in stack.kafka_nodes:
        pid = _owned_pid(node.folder / "kafka.pid", str(node.folder))
        if pid is not None:
            report(f"stopping {node.name}")
            pids.append(pid)
    _terminate(pids)
    for node in stack.kafka_nodes:
        (node.folder / "kafka.pid").unlink(missing_ok=True)


# ---------------------------------------------------------------- postgres


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run its tools as the package's system user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _psql(stack: Stack, *args: str, input: str | None = None) -> str:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise StackError("PostgreSQL is not installed: sudo apt-get install -y postgresql")
    return _run(
        _as_postgres(
            [
                str(bin_dir / "psql"),
                "-h",
                str(stack.postgres_dir / "run"),
                "-p",
                str(LOCAL_POSTGRES_PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                *args,
            ]
        ),
        "psql",
        input=input,
    )


def _init_postgres(stack: Stack, bin_dir: Path, report: Report) -> None:
    data = stack.postgres_dir / "data"
    if (data / "PG_VERSION").exists():
        return
    report("initialising PostgreSQL data folder")
    stack.postgres_dir.mkdir(parents=True, exist_ok=True)
    (stack.postgres_dir / "run").mkdir(exist_ok=True)
    pwfile = stack.postgres_dir / ".pw"
    pwfile.write_text(POSTGRES_DEV_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(stack.postgres_dir, "postgres", "postgres")
        shutil.chown(stack.postgres_dir / "run", "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        _run(
            _as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\n# MedStream local stack\nport = {LOCAL_POSTGRES_PORT}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{stack.postgres_dir / 'run'}'\n"
            "max_connections = 200\nshared_buffers = 128MB\n"
        )


def _bootstrap_roles(stack: Stack) -> None:
    # The same idempotent script that docker-compose's Postgres runs at initialisation.
    # psql runs as the postgres user, which may not read the checkout: pass it on stdin.
    script = INFRA_DIR / "postgres" / "init-roles.sql"
    # Then each role's generated development password (URL-safe base64: no quoting).
    passwords = "".join(
        f"ALTER ROLE {postgres_role(principal)} PASSWORD "
        f"'{development_secret(stack.state_dir, f'postgres-{principal}')}';\n"
        for principal in POSTGRES_GRANTS
    )
    _psql(stack, "-f", "-", input=script.read_text() + passwords)


def postgres_healthy(stack: Stack) -> bool:
    """Whether the stack's PostgreSQL accepts connections."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return False
    result = subprocess.run(
        [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(LOCAL_POSTGRES_PORT)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _postgres_pid(stack: Stack) -> int | None:
    return _owned_pid(stack.postgres_dir / "data" / "postmaster.pid", str(stack.postgres_dir))


def up_postgres(stack: Stack, report: Report) -> None:
    """Initialise (once), start and wait for PostgreSQL, with MedStream's roles."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise StackError("PostgreSQL is not installed: sudo apt-get install -y postgresql")
    _init_postgres(stack, bin_dir, report)
    if _postgres_pid(stack) is None:
        if _port_open(LOCAL_POSTGRES_PORT):
            raise StackError(f"Port {LOCAL_POSTGRES_PORT} is taken by another process; stop it.")
        report(f"starting PostgreSQL on port {LOCAL_POSTGRES_PORT}")
        log = stack.postgres_dir / "postgres.log"
        if os.geteuid() == 0:
            log.touch()
            shutil.chown(log, "postgres", "postgres")
        _run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(stack.postgres_dir / "data"),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            f"pg_ctl start (log: {log})",
        )
    _wait(lambda: postgres_healthy(stack), "PostgreSQL", 60, stack.postgres_dir / "postgres.log")
    _bootstrap_roles(stack)


def down_postgres(stack: Stack, report: Report, mode: str = "fast") -> None:
    """Stop the stack's PostgreSQL if it is running (``mode``: smart, fast, immediate)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None or _postgres_pid(stack) is None:
        return
    report("stopping PostgreSQL")
    _run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(stack.postgres_dir / "data"),
                "-m",
                mode,
                "-w",
                "stop",
            ]
        ),
        "pg_ctl stop",
    )


# ---------------------------------------------------------------- redis


def _redis_pidfile(stack: Stack) -> Path:
    return stack.redis_dir / "redis.pid"


def redis_healthy(stack: Stack) -> bool:
    """Whether the stack's Redis answers PING to the operator."""
    if not _port_open(LOCAL_REDIS_PORT):
        return False
    user = redis_user(OPERATOR)
    password = development_secret(stack.state_dir, f"redis-{OPERATOR}")
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", LOCAL_REDIS_PORT), timeout=1) as sock:
            sock.sendall(f"AUTH {user} {password}\r\nPING\r\n".encode())
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        # still loading its append-only file (it accepts, then answers only when done),
        # or restarting: not healthy yet, and the caller waits
        return False
    return reply.startswith(b"+OK\r\n+PONG")


def write_redis_acl(stack: Stack) -> Path:
    """The ACL file of the stack's Redis, from ``REDIS_USERS``: one user per principal
    with its generated password (as SHA-256), its key patterns and its commands; the
    default user off. Rewritten on every start, so the table is the truth."""
    lines = ["user default off resetkeys -@all"]
    for principal, grant in REDIS_USERS.items():
        password = development_secret(stack.state_dir, f"redis-{principal}")
        digest = hashlib.sha256(password.encode()).hexdigest()
        lines.append(f"user {redis_user(principal)} {grant.rule(digest)}")
    path = stack.redis_dir / "users.acl"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def up_redis(stack: Stack, report: Report) -> None:
    """Start and wait for Redis, with append-only persistence in its own folder."""
    stack.redis_dir.mkdir(parents=True, exist_ok=True)
    if _owned_pid(_redis_pidfile(stack), str(LOCAL_REDIS_PORT)) is None:
        if _port_open(LOCAL_REDIS_PORT):
            raise StackError(f"Port {LOCAL_REDIS_PORT} is taken by another process; stop it.")
        report(f"starting Redis on port {LOCAL_REDIS_PORT}")
        server = shutil.which("redis-server")
        if server is None:
            raise StackError("Redis is not installed: sudo apt-get install -y redis-server")
        acl = write_redis_acl(stack)
        proc = subprocess.Popen(
            [
                server,
                "--aclfile",
                str(acl),
                "--port",
                str(LOCAL_REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(stack.redis_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(stack.redis_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _redis_pidfile(stack).write_text(str(proc.pid))
    _wait(lambda: redis_healthy(stack), "Redis", 30, stack.redis_dir / "redis.log")


def down_redis(stack: Stack, report: Report) -> None:
    """Stop the stack's Redis if this module started it."""
    pid = _owned_pid(_redis_pidfile(stack), str(LOCAL_REDIS_PORT))
    if pid is not None:
        report("stopping Redis")
        _terminate([pid])
    _redis_pidfile(stack).unlink(missing_ok=True)


# ---------------------------------------------------------------- whole stack


def up(stack: Stack, report: Report) -> None:
    """Start every server of ``stack`` that is not running, and wait until all are healthy."""
    ensure_packages(report)
    if not stack.cluster:
        up_postgres(stack, report)
        up_redis(stack, report)
    up_kafka(stack, report)


def down(stack: Stack, report: Report) -> None:
    """Stop every server of ``stack`` that this module started."""
    down_kafka(stack, report)
    if not stack.cluster:
        down_redis(stack, report)
        down_postgres(stack, report)


def server_pids(stack: Stack) -> dict[str, int | None]:
    """The pid of each server of ``stack`` that this module started and is running."""
    pids = {n.name: kafka_node_pid(stack, n.node_id) for n in stack.kafka_nodes}
    if not stack.cluster:
        pids["postgres"] = _postgres_pid(stack)
        pids["redis"] = _owned_pid(_redis_pidfile(stack), str(LOCAL_REDIS_PORT))
    return pids


def status(stack: Stack) -> dict[str, bool]:
    """Health of each server of ``stack``."""
    result = {"kafka": kafka_healthy(stack)}
    if not stack.cluster:
        result["postgres"] = postgres_healthy(stack)
        result["redis"] = redis_healthy(stack)
    return result


# ---------------------------------------------------------------- services


def _service_dir(stack: Stack) -> Path:
    return stack.state_dir / "services"


def _supervisor_pidfile(stack: Stack) -> Path:
    return stack.state_dir / "supervisor.pid"


def replicated(entry_points: dict[str, Path], replicas: int) -> dict[str, Path]:
    """``replicas`` processes of each service: the first under its own name, the
    others as ``<name>-2``, ``<name>-3``… (each its own pid file and log)."""
    found = dict(entry_points)
    for name, path in entry_points.items():
        for replica in range(2, replicas + 1):
            found[f"{name}-{replica}"] = path
    return found


def up_services(
    stack: Stack,
    entry_points: dict[str, Path],
    report: Report,
    env: dict[str, str] | None = None,
) -> None:
    """Start the process supervisor (``medstream.supervisor``), which starts each
    service (name -> executable) and restarts any that dies; idempotent. ``env`` is
    added to the services' environment (the tests' and benchmarks' settings)."""
    folder = _service_dir(stack)
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = _supervisor_pidfile(stack)
    if _owned_pid(pidfile, "medstream.supervisor") is not None:
        return
    report(f"starting the supervisor and {len(entry_points)} services")
    with (folder / "supervisor.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medstream.supervisor",
                str(folder),
                json.dumps({name: str(path) for name, path in entry_points.items()}),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + 15
    pending = set(entry_points)
    while pending and time.monotonic() < deadline:
        time.sleep(0.5)
        pending = {
            name
            for name, path in entry_points.items()
            if _owned_pid(folder / f"{name}.pid", path.name) is None
        }
    if proc.poll() is not None or pending:
        raise StackError(
            f"Services did not start: {', '.join(sorted(pending)) or 'the supervisor'}; "
            f"see the logs in {folder}"
        )


def down_services(stack: Stack, report: Report) -> None:
    """Stop the supervisor (which stops its services), then any service left over."""
    supervisor = _owned_pid(_supervisor_pidfile(stack), "medstream.supervisor")
    if supervisor is not None:
        report("stopping the supervisor and its services")
        _terminate([supervisor], timeout_s=40)
    _supervisor_pidfile(stack).unlink(missing_ok=True)
    for pidfile in sorted(_service_dir(stack).glob("*.pid")):
        pid = _owned_pid(pidfile, "medstream")
        if pid is not None:
            report(f"stopping service {pidfile.stem}")
            _terminate([pid], timeout_s=20)
        pidfile.unlink(missing_ok=True)


def services_running(stack: Stack) -> dict[str, bool]:
    """Which services started by this module are alive."""
    return {
        pidfile.stem: _owned_pid(pidfile, "medstream") is not None
        for pidfile in sorted(_service_dir(stack).glob("*.pid"))
    }


def leftovers(state_dir: Path) -> list[tuple[int, str]]:
    """Processes still running from this state folder or on the stack's ports."""
    markers = (
        str(state_dir),
        f":{LOCAL_REDIS_PORT}",
        *(f"/bin/{spec.entry_point}" for spec in SERVICES),
    )
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        cmdline = _cmdline(int(proc.name))
        if any(m in cmdline for m in markers) and not _is_zombie(int(proc.name)):
            found.append((int(proc.name), cmdline.strip()[:160]))
    return found
