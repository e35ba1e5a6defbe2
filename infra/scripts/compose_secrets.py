"""Write docker-compose's development secrets into infra/compose-secrets/, one file a
secret, from the identity tables (medstream.platform.identities), so the files, the
Redis ACL and the database URLs never drift from the code.

Every value is a development value: it is in this repository, so services refuse it
outside MEDSTREAM_ENV=dev. A deployment points MEDSTREAM_SECRETS_DIR at a folder of
its own with the same file names (docs/security.md).

    python infra/scripts/compose_secrets.py            # rewrite the files
    python infra/scripts/compose_secrets.py --check    # exit 1 if a file differs

tests/unit/test_compose.py runs the same check.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.deployment import SERVICES  # noqa: E402
from medstream.platform.identities import (  # noqa: E402
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
from medstream.platform.kafka_acl import (  # noqa: E402
    broker_security_properties,
    scram_format_arguments,
)
from medstream.platform.tls import ensure_local_ca  # noqa: E402
from medstream.settings import DEVELOPMENT_KEYS  # noqa: E402

TARGET = ROOT / "infra" / "compose-secrets"


def pg_password(principal: str) -> str:
    return f"dev-postgres-{principal}-password"


def redis_password(principal: str) -> str:
    return f"dev-redis-{principal}-password"


def kafka_password(principal: str) -> str:
    return f"dev-kafka-{principal}-password"


# The compose broker: BROKER (clients and inter-broker) on kafka:9092, EXTERNAL on
# localhost:19092 for the host, CONTROLLER on 9093; all SASL_SSL (the controller PLAIN).
COMPOSE_KAFKA_PROPERTIES = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.quorum.voters": "1@kafka:9093",
    "listeners": "BROKER://:9092,CONTROLLER://:9093,EXTERNAL://:19092",
    "advertised.listeners": "BROKER://kafka:9092,EXTERNAL://localhost:19092",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "BROKER",
    "listener.security.protocol.map": "BROKER:SASL_SSL,CONTROLLER:SASL_SSL,EXTERNAL:SASL_SSL",
    "log.dirs": "/var/lib/kafka/data",
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "unclean.leader.election.enable": "false",
}


def kafka_files() -> dict[str, str]:
    """The compose broker's properties, its SCRAM users, each principal's password,
    and the operator's client properties (the broker's health check)."""
    security = broker_security_properties(
        protocol="SASL_SSL",
        broker_password=kafka_password(BROKER),
        controller_password=kafka_password(CONTROLLER_USER),
        keystore="/run/secrets/kafka_keystore",
        truststore="/run/secrets/kafka_ca",
    )
    external = {
        "listener.name.external.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.external.scram-sha-512.sasl.jaas.config": security[
            "listener.name.broker.scram-sha-512.sasl.jaas.config"
        ],
    }
    properties = {**COMPOSE_KAFKA_PROPERTIES, **security, **external}
    users = [BROKER, OPERATOR, *KAFKA_GRANTS]
    found = {
        "kafka_server_properties": "\n".join(f"{k}={v}" for k, v in properties.items()),
        "kafka_scram_users": " ".join(
            scram_format_arguments({kafka_user(p): kafka_password(p) for p in users})
        ),
        "kafka_client_properties": "\n".join(
            [
                "security.protocol=SASL_SSL",
                "sasl.mechanism=SCRAM-SHA-512",
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                f'required username="{kafka_user(OPERATOR)}" '
                f'password="{kafka_password(OPERATOR)}";',
                "ssl.truststore.type=PEM",
                "ssl.truststore.location=/run/secrets/kafka_ca",
            ]
        ),
    }
    for principal in (OPERATOR, *KAFKA_GRANTS):
        found[f"kafka_{principal}_password"] = kafka_password(principal)
    return found


TLS_FILES = ("kafka_ca", "kafka_keystore")


def tls_problem() -> str | None:
    """Why the committed development CA and broker key store are unfit, if they are:
    random, so they are checked (present, the key store's chain ends in the CA), not
    compared."""
    if not all((TARGET / name).exists() for name in TLS_FILES):
        return "kafka_ca or kafka_keystore is missing"
    if not (TARGET / "kafka_keystore").read_text().endswith((TARGET / "kafka_ca").read_text()):
        return "kafka_keystore was not issued by kafka_ca"
    return None


def write_tls() -> None:
    """A development CA and a broker key store for the hosts kafka and localhost."""
    with tempfile.TemporaryDirectory() as folder:
        made = ensure_local_ca(Path(folder), hosts=("kafka", "localhost", "127.0.0.1"))
        (TARGET / "kafka_ca").write_text(made.ca_cert.read_text())
        (TARGET / "kafka_keystore").write_text(made.broker_keystore.read_text())


def files() -> dict[str, str]:
    """File name -> contents."""
    found = {
        "deid_key": DEVELOPMENT_KEYS[0],
        "vault_key": DEVELOPMENT_KEYS[1],
        "relink_private_key": DEVELOPMENT_KEYS[2],
        "relink_public_key": DEVELOPMENT_KEYS[3],
        "audit_anchor_key": "dev-audit-anchor-key-for-docker-compose-only",
        "gateway_token_key": "dev-gateway-token-key-for-docker-compose-only",
        "database_admin_url": (
            f"postgresql+asyncpg://medstream_owner:{pg_password('owner')}@postgres:5432/medstream"
        ),
        # The superuser, the owner (migrations) and the operator role (the CLI's).
        "pg_superuser_password": pg_password("superuser"),
        "pg_owner_password": pg_password("owner"),
        "pg_operator_password": pg_password("operator"),
    }
    for principal in POSTGRES_GRANTS:
        found[f"pg_{principal}_password"] = pg_password(principal)
    for spec in SERVICES:
        found[f"database_url_{spec.name}"] = (
            f"postgresql+asyncpg://{postgres_role(spec.name)}:{pg_password(spec.name)}"
            "@postgres:5432/medstream"
        )
    acl = ["user default off resetkeys -@all"]
    for principal, grant in REDIS_USERS.items():
        found[f"redis_{principal}_password"] = redis_password(principal)
        digest = hashlib.sha256(redis_password(principal).encode()).hexdigest()
        acl.append(f"user {redis_user(principal)} {grant.rule(digest)}")
    found["redis_users_acl"] = "\n".join(acl)
    found |= kafka_files()
    return {name: value + "\n" for name, value in found.items()}


def main() -> None:
    check = "--check" in sys.argv[1:]
    wanted = files()
    stale = [
        n for n, v in wanted.items() if not (TARGET / n).exists() or (TARGET / n).read_text() != v
    ]
    kept = {"README.md", *TLS_FILES}
    extra = [p.name for p in TARGET.glob("*") if p.name not in wanted and p.name not in kept]
    tls = tls_problem()
    if check:
        if stale or extra or tls:
            print(f"compose secrets differ from the code: {', '.join(stale + extra)} {tls or ''}")
            sys.exit(1)
        return
    if tls:
        write_tls()
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (TARGET / name).write_text(wanted[name])
    for name in extra:
        (TARGET / name).unlink()
    print(f"wrote {len(stale)} of {len(wanted)} files in {TARGET}")


if __name__ == "__main__":
    main()
