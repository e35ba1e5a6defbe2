"""Who may do what, as data: each principal's rights, one table per server.

The stack reconciles the servers to these tables (Redis's ACL file is written from
``REDIS_USERS`` on every start), and the integration tests derive from the same tables
what each principal must be allowed and refused, so the table, the server and the
tests cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medstream.deployment import SERVICES as DEPLOYED

OPERATOR = "operator"
# Every service is a principal of its own; anything else (the CLI, the tests, the
# benches) acts as the operator.
SERVICES = tuple(spec.name for spec in DEPLOYED)


@dataclass(frozen=True)
class RedisGrant:
    """A Redis ACL user's key patterns and commands. ``commands`` are lower-case
    command names; ``None`` means every command (the operator)."""

    keys: tuple[str, ...]
    commands: tuple[str, ...] | None

    def rule(self, password_sha256: str) -> str:
        """The ACL file line for this grant (the password as its SHA-256)."""
        keys = " ".join(f"~{pattern}" for pattern in self.keys)
        if self.commands is None:
            commands = "+@all"
        else:
            commands = "-@all " + " ".join(f"+{c}" for c in self.commands)
        return f"on #{password_sha256} resetchannels {keys} {commands}"


# Redis holds two services' working state: deid's vault cache (encrypted date offsets,
# ``vault:*``) and monitoring's observation windows (``monitoring:window:*``). Every
# other service has no Redis user, so it cannot connect at all. The operator (the CLI,
# the stack's health check, the tests) has every right; the default user is off.
# What a client needs to connect: no CLIENT LIST, PAUSE or KILL, no INFO (redis-py
# also tries CLIENT SETINFO, which Redis 7.0 lacks; its refusal is ignored).
_CONNECTION = (
    "ping",
    "hello",
    "auth",
    "select",
    "client|setname",
    "client|id",
)
REDIS_USERS: dict[str, RedisGrant] = {
    "deid": RedisGrant(("vault:*",), (*_CONNECTION, "get", "mget", "set", "del", "expire")),
    "monitoring": RedisGrant(
        ("monitoring:*",), (*_CONNECTION, "hset", "hgetall", "hdel", "expire", "del")
    ),
    OPERATOR: RedisGrant(("*",), None),
}


def redis_user(principal: str) -> str:
    """The Redis ACL user name of a principal ("deid" -> "medstream-deid")."""
    return f"medstream-{principal}"


def principal_of(service_name: str) -> str:
    """The principal a process acts as: a service by its name, anything else (the CLI,
    the tests, the benches) as the operator."""
    return service_name if service_name in SERVICES else OPERATOR


@dataclass(frozen=True)
class TableGrant:
    """A role's privileges on one table; UPDATE limited to ``update_columns`` and
    SELECT to ``select_columns`` when they are given."""

    table: str
    privileges: tuple[str, ...]
    update_columns: tuple[str, ...] = ()
    select_columns: tuple[str, ...] = ()


# Every table MedStream keeps. A role has exactly the grants below on them and nothing
# else; the owner role (migrations) owns them and connects for nothing else.
TABLES = (
    "inbox",
    "outbox",
    "pseudonym_vault",
    "vault_identity",
    "fhir_resource",
    "audit_event",
    "audit_chain_head",
)
AUDITOR = "auditor"
# Each service writes its output to the outbox and relays its own rows to Kafka (row
# level security on ``outbox.producer``, the role that wrote the row, limits a role to
# its own rows): other services' rows may hold identified payloads until sent.
OUTBOX_RELAYED_COLUMNS = (
    "sent_at",
    "value",
    "key",
    "headers",
    "quarantined_at",
    "quarantine_reason",
)
_EXACTLY_ONCE = (
    TableGrant("inbox", ("SELECT", "INSERT")),
    TableGrant("outbox", ("SELECT", "INSERT", "UPDATE"), OUTBOX_RELAYED_COLUMNS),
)
# PostgreSQL: one role per service, the auditor, and the operator (the CLI and the
# tests: every service's rights, for lineage, the ledger and replays). Only results
# reads identities to re-link; audit rows are INSERT-only for every role (the triggers
# refuse UPDATE and DELETE too; the owner and the superuser can switch triggers off,
# which the signed anchors catch).
POSTGRES_GRANTS: dict[str, tuple[TableGrant, ...]] = {
    "ingestion": _EXACTLY_ONCE,
    # deid records offsets and identities but reads back only offsets: identities are
    # sealed to a key it does not hold, in a column it may not read.
    "deid": (
        *_EXACTLY_ONCE,
        TableGrant(
            "pseudonym_vault",
            ("SELECT", "INSERT"),
            select_columns=("pseudonym", "key_id", "offset_nonce", "offset_ciphertext"),
        ),
        TableGrant(
            "vault_identity", ("SELECT", "INSERT"), select_columns=("pseudonym", "fingerprint")
        ),
    ),
    "monitoring": _EXACTLY_ONCE,
    "imaging": _EXACTLY_ONCE,
    "notes": _EXACTLY_ONCE,
    "results": (
        *_EXACTLY_ONCE,
        TableGrant("pseudonym_vault", ("SELECT",)),
        TableGrant("vault_identity", ("SELECT",)),
        TableGrant("fhir_resource", ("SELECT", "INSERT")),
    ),
    "audit": (
        *_EXACTLY_ONCE,
        TableGrant("audit_event", ("SELECT", "INSERT")),
        TableGrant("audit_chain_head", ("SELECT",)),
    ),
    # The gateway serves the FHIR read API: it reads stored results and nothing else.
    # It has no inbox or outbox: what it accepts is durable once Kafka acknowledged it.
    "gateway": (TableGrant("fhir_resource", ("SELECT",)),),
    AUDITOR: (TableGrant("audit_event", ("SELECT",)), TableGrant("audit_chain_head", ("SELECT",))),
}


def postgres_role(principal: str) -> str:
    """The PostgreSQL role of a principal ("deid" -> "medstream_deid")."""
    return f"medstream_{principal}"


def postgres_grant_statements(
    grants_of: Mapping[str, Sequence[TableGrant]] | None = None,
    tables: Sequence[str] = TABLES,
    retired: Sequence[str] = (),
) -> list[str]:
    """SQL that makes each role's privileges on ``tables`` exactly ``grants_of``
    (default ``POSTGRES_GRANTS``): revoke all, then grant. Idempotent. Only the newest
    migration applies the live table; each older one keeps a frozen copy of the table
    as it was, so that replaying it on a fresh database names only what exists then.

    ``retired`` names principals whose roles are no longer created (init-roles.sql):
    an old migration still grants to them where the role exists (a database made
    before), and skips them on a fresh one."""
    statements = []
    for principal, grants in (POSTGRES_GRANTS if grants_of is None else grants_of).items():
        role = postgres_role(principal)
        own = [f"GRANT USAGE ON SCHEMA public TO {role}"]
        own += [f"REVOKE ALL ON {table} FROM {role}" for table in tables]
        for grant in (g for g in grants if g.table in tables):
            limited = {"UPDATE": grant.update_columns, "SELECT": grant.select_columns}
            plain = [p for p in grant.privileges if not limited.get(p)]
            if plain:
                own.append(f"GRANT {', '.join(plain)} ON {grant.table} TO {role}")
            for privilege, columns in limited.items():
                if privilege in grant.privileges and columns:
                    own.append(
                        f"GRANT {privilege} ({', '.join(columns)}) ON {grant.table} TO {role}"
                    )
        statements += [_if_role_exists(role, own)] if principal in retired else own
    return statements


def _if_role_exists(role: str, statements: Sequence[str]) -> str:
    """One DO block that runs ``statements`` only where ``role`` exists (the names are
    our own constants: no quoting needed, and none is allowed)."""
    if any("'" in s for s in (role, *statements)):
        raise ValueError(f"unexpected quote in a grant to {role}")
    body = " ".join(f"EXECUTE '{s}';" for s in statements)
    return (
        f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')"
        f" THEN {body} END IF; END $$"
    )


# ---------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class KafkaGrant:
    """A Kafka principal's rights: the topics it reads and writes (exact names; a name
    ending in ``*`` is a prefix) and the consumer groups it joins. Reading or writing a
    topic implies describing it; writing implies idempotent writes (Kafka 3.2+)."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


EHR = "ehr"
# The broker's own identity: inter-broker traffic on the SCRAM listener, controller
# traffic on the PLAIN controller listener. A super user, as the operator is.
BROKER = "broker"
CONTROLLER_USER = "controller"


def _dead_letters(*topics: str) -> tuple[str, ...]:
    return tuple(f"{topic}.dlt" for topic in topics)


def _kafka_grants() -> dict[str, KafkaGrant]:
    # Imported here: the topic registry names the payload models, which the rest of
    # this module does not need.
    from medstream import topics as t  # noqa: PLC0415

    inbound = (t.EHR_INBOUND_FHIR.name, t.EHR_INBOUND_HL7V2.name, t.EHR_INBOUND_DICOM.name)
    identified = (t.IDENTIFIED_FHIR.name, t.IDENTIFIED_HL7V2.name, t.IDENTIFIED_DICOM.name)
    deid_out = (t.DEID_PATIENT.name, t.DEID_VITALS.name, t.DEID_DOCUMENT.name, t.DEID_IMAGING.name)
    results_in = (t.RESULTS_MONITORING.name, t.RESULTS_IMAGING.name, t.RESULTS_NOTES.name)
    audit = t.AUDIT.name

    # Each service publishes its own outbox rows, so what it writes is its outputs,
    # the dead letters of what it reads, and its audit events.
    return {
        "ingestion": KafkaGrant(
            reads=inbound,
            writes=(*identified, *_dead_letters(*inbound), audit),
            groups=("medstream-ingestion",),
        ),
        "deid": KafkaGrant(
            reads=identified,
            writes=(*deid_out, *_dead_letters(*identified), audit),
            groups=("medstream-deid",),
        ),
        "monitoring": KafkaGrant(
            reads=(t.DEID_VITALS.name,),
            writes=(t.RESULTS_MONITORING.name, *_dead_letters(t.DEID_VITALS.name), audit),
            groups=("medstream-monitoring",),
        ),
        "imaging": KafkaGrant(
            reads=(t.DEID_IMAGING.name,),
            writes=(t.RESULTS_IMAGING.name, *_dead_letters(t.DEID_IMAGING.name), audit),
            groups=("medstream-imaging",),
        ),
        "notes": KafkaGrant(
            reads=(t.DEID_DOCUMENT.name,),
            writes=(t.RESULTS_NOTES.name, *_dead_letters(t.DEID_DOCUMENT.name), audit),
            groups=("medstream-notes",),
        ),
        "results": KafkaGrant(
            reads=results_in,
            writes=(t.EHR_OUTBOUND_FHIR.name, *_dead_letters(*results_in), audit),
            groups=("medstream-results",),
        ),
        "audit": KafkaGrant(
            reads=(audit,),
            # Its own rejections are audited on the topic it reads.
            writes=(t.AUDIT_ANCHORS.name, audit, *_dead_letters(audit)),
            groups=("medstream-audit",),
        ),
        # The network edge: it writes what it accepts to the inbound topics, what it
        # refuses to their dead-letter topics, and audits both. It reads nothing.
        "gateway": KafkaGrant(writes=(*inbound, *_dead_letters(*inbound), audit)),
        EHR: KafkaGrant(writes=inbound),
    }


# Principal -> rights. The operator (the CLI, the stack's health check, the tests and
# the benches) and the broker are super users: they are not in this table.
KAFKA_GRANTS: dict[str, KafkaGrant] = _kafka_grants()
KAFKA_SUPER_USERS = (BROKER, OPERATOR)


def kafka_user(principal: str) -> str:
    """The Kafka user (SCRAM) name of a principal ("deid" -> "medstream-deid")."""
    return f"medstream-{principal}"
