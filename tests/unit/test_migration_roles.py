"""Every role a migration grants to exists on a fresh database.

Roles are cluster objects: a developer's long-lived PostgreSQL keeps a role that
init-roles.sql no longer creates, so only a fresh clone would find a migration that
still names it (the shared relay's role, retired by migration 0009, did exactly
that). This reads every migration's statements without a server."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from unittest import mock

from medstream.platform import identities
from medstream.platform.identities import TableGrant, postgres_grant_statements

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS = REPO_ROOT / "libs/medstream/migrations/versions"
ROLE_LIST = re.compile(r"\b(?:TO|FROM)\s+(medstream\w*(?:\s*,\s*medstream\w*)*)")
GUARDED = re.compile(r"IF EXISTS \(SELECT FROM pg_roles WHERE rolname = '(\w+)'\)")


def created_roles() -> set[str]:
    sql = (REPO_ROOT / "infra/postgres/init-roles.sql").read_text()
    return set(re.findall(r"CREATE ROLE (\w+)", sql))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def executed_statements(module: ModuleType) -> list[str]:
    """What upgrade() hands to op.execute (other op calls are recorded and ignored)."""
    statements: list[str] = []
    fake_op = mock.MagicMock()
    fake_op.execute.side_effect = lambda sql, *a, **k: statements.append(str(sql))
    with mock.patch.object(module, "op", fake_op):
        for name in ("_convert_rows",):  # data conversions need a server; not a grant
            if hasattr(module, name):
                mock.patch.object(module, name, return_value=None).start()
        try:
            module.upgrade()
        finally:
            mock.patch.stopall()
    return statements


def unguarded_roles(statement: str) -> set[str]:
    guarded = set(GUARDED.findall(statement))
    named = {role.strip() for found in ROLE_LIST.findall(statement) for role in found.split(",")}
    return named - guarded


def test_every_role_a_migration_names_unguarded_is_created_by_init_roles() -> None:
    roles = created_roles()
    assert {"medstream_owner", "medstream_auditor"} <= roles
    missing: dict[str, set[str]] = {}
    for path in sorted(VERSIONS.glob("0*.py")):
        for statement in executed_statements(load(path)):
            unknown = unguarded_roles(statement) - roles
            if unknown:
                missing.setdefault(path.name, set()).update(unknown)
    assert not missing, f"roles named by migrations but never created: {missing}"


def test_the_live_grants_name_only_created_roles() -> None:
    roles = created_roles()
    for statement in postgres_grant_statements():
        assert unguarded_roles(statement) <= roles, statement


def test_a_retired_role_is_granted_only_where_it_exists() -> None:
    grants = {
        "relay": (TableGrant("outbox", ("SELECT",)),),
        "deid": identities.POSTGRES_GRANTS["deid"],
    }
    statements = postgres_grant_statements(grants, ("outbox",), retired=("relay",))
    relay = [s for s in statements if "medstream_relay" in s]
    assert len(relay) == 1
    assert relay[0].startswith("DO $$")
    assert GUARDED.findall(relay[0]) == ["medstream_relay"]
    assert "EXECUTE 'GRANT SELECT ON outbox TO medstream_relay';" in relay[0]
    assert unguarded_roles(relay[0]) == set()
    # The live services are never guarded: a missing role there must fail loudly.
    assert all(not s.startswith("DO $$") for s in statements if "medstream_deid" in s)
