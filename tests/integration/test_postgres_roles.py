"""PostgreSQL least privilege on the real server. For every role and every table,
what ``POSTGRES_GRANTS`` allows must work and everything else must be refused with an
authorisation error, tried with real SQL (in transactions that are rolled back)."""

from __future__ import annotations

import uuid
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from medstream.platform.identities import POSTGRES_GRANTS, TABLES, TableGrant, postgres_role
from medstream.platform.secrets import role_url
from medstream.settings import Settings

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# A column of each table to write in UPDATE probes, and one outside any column grant.
A_COLUMN = {
    "inbox": "outcome",
    "outbox": "sent_at",
    "pseudonym_vault": "offset_nonce",
    "vault_identity": "sealed",
    "fhir_resource": "resource",
    "audit_event": "actor",
    "audit_chain_head": "hash",
}
NEVER_GRANTED_COLUMN = {"outbox": "topic"}
# What a column-limited SELECT must not reach: payloads and identities.
UNREADABLE_COLUMN = {"outbox": "value", "pseudonym_vault": "ciphertext", "vault_identity": "sealed"}


async def connect(settings: Settings, principal: str, **override: object) -> asyncpg.Connection:
    """A connection as ``principal``'s role with its generated password (or
    ``override``'s user and password)."""
    url = urlsplit(role_url(settings, principal))
    options: dict[str, object] = {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": unquote(url.password or ""),
        "database": url.path.lstrip("/"),
    }
    options.update(override)
    return await asyncpg.connect(**options)


def grant_of(principal: str, table: str) -> TableGrant | None:
    return next((g for g in POSTGRES_GRANTS[principal] if g.table == table), None)


async def allowed(connection: asyncpg.Connection, statement: str) -> bool:
    """Run ``statement`` in a rolled-back transaction: False on an authorisation error,
    True otherwise (a constraint error means the privilege check passed)."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        return False
    except asyncpg.PostgresError:
        return True
    finally:
        await transaction.rollback()
    return True


def probe(table: str, privilege: str, column: str | None = None) -> str:
    column = column or A_COLUMN[table]
    return {  # table and column names come from the constants above, not from input
        "SELECT": f"SELECT * FROM {table} LIMIT 0",  # noqa: S608
        "INSERT": f"INSERT INTO {table} DEFAULT VALUES",
        "UPDATE": f"UPDATE {table} SET {column} = {column} WHERE false",  # noqa: S608
        "DELETE": f"DELETE FROM {table} WHERE false",  # noqa: S608
    }[privilege]


@pytest.mark.parametrize("principal", list(POSTGRES_GRANTS))
async def test_each_role_has_exactly_its_grants(settings: Settings, principal: str) -> None:
    connection = await connect(settings, principal)
    try:
        for table in TABLES:
            grant = grant_of(principal, table)
            for privilege in PRIVILEGES:
                expected = grant is not None and privilege in grant.privileges
                column = None
                if privilege == "UPDATE" and grant is not None and grant.update_columns:
                    column = grant.update_columns[0]
                if privilege == "SELECT" and grant is not None and grant.select_columns:
                    continue  # column-limited: checked below
                got = await allowed(connection, probe(table, privilege, column))
                assert got is expected, f"{postgres_role(principal)} {privilege} {table}"
            never = NEVER_GRANTED_COLUMN.get(table)
            if never is not None:
                assert not await allowed(connection, probe(table, "UPDATE", never))
            if grant is not None and grant.select_columns:
                readable = ", ".join(grant.select_columns)
                query = f"SELECT {readable} FROM {table} LIMIT 0"  # noqa: S608
                assert await allowed(connection, query)
                query = f"SELECT {UNREADABLE_COLUMN[table]} FROM {table} LIMIT 0"  # noqa: S608
                assert not await allowed(connection, query)
    finally:
        await connection.close()


def test_only_results_reads_identities_and_only_audit_writes_audit() -> None:
    def holders(table: str, privileges: set[str]) -> set[str]:
        return {
            principal
            for principal in POSTGRES_GRANTS
            if (grant := grant_of(principal, table)) and privileges & set(grant.privileges)
        }

    assert holders("pseudonym_vault", {"SELECT"}) == {"deid", "results"}
    assert holders("vault_identity", {"SELECT"}) == {"deid", "results"}
    deid = grant_of("deid", "vault_identity")
    assert deid is not None
    assert "sealed" not in deid.select_columns  # deid adds identities, never reads one
    assert holders("audit_event", {"INSERT", "UPDATE", "DELETE"}) == {"audit"}
    for principal in POSTGRES_GRANTS:
        grant = grant_of(principal, "audit_event")
        assert grant is None or not {"UPDATE", "DELETE"} & set(grant.privileges)
    auditor = {g.table for g in POSTGRES_GRANTS["auditor"]}
    assert auditor == {"audit_event", "audit_chain_head"}  # no PHI: no vault, no resources


async def test_a_wrong_password_and_no_password_are_refused(settings: Settings) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await connect(settings, "deid", password="wrong-" + uuid.uuid4().hex)
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.ClientConfigurationError)):
        await connect(settings, "deid", password="")
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await connect(settings, "deid", user="medstream_nobody", password="x" * 20)


async def test_the_services_exactly_once_writes_work_as_their_own_roles(
    settings: Settings,
) -> None:
    """The inbox claim and the outbox insert, as every service role runs them."""
    for principal in POSTGRES_GRANTS:
        if grant_of(principal, "inbox") is None:
            continue
        connection = await connect(settings, principal)
        transaction = connection.transaction()
        await transaction.start()
        try:
            key = uuid.uuid4().hex
            await connection.execute(
                'INSERT INTO inbox (consumer_group, message_id, topic, partition, "offset",'
                " outcome) VALUES ($1, $2, 't', 0, 0, 'processed')"
                " ON CONFLICT (consumer_group, message_id) DO NOTHING RETURNING 1",
                "g",
                key,
            )
            await connection.execute(
                "INSERT INTO outbox (message_id, topic, value) VALUES ($1, 't', '\\x00')"
                " ON CONFLICT (message_id) DO NOTHING",
                key,
            )
        finally:
            await transaction.rollback()
            await connection.close()


async def test_no_role_can_change_audit_rows(settings: Settings) -> None:
    for principal in POSTGRES_GRANTS:
        connection = await connect(settings, principal)
        try:
            for statement in (
                "UPDATE audit_event SET actor = 'x'",
                "DELETE FROM audit_event",
                "TRUNCATE audit_event",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.execute(statement)
        finally:
            await connection.close()
