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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.deployment import SERVICES  # noqa: E402
from medstream.platform.identities import (  # noqa: E402
    POSTGRES_GRANTS,
    REDIS_USERS,
    postgres_role,
    redis_user,
)
from medstream.settings import DEVELOPMENT_KEYS  # noqa: E402

TARGET = ROOT / "infra" / "compose-secrets"


def pg_password(principal: str) -> str:
    return f"dev-postgres-{principal}-password"


def redis_password(principal: str) -> str:
    return f"dev-redis-{principal}-password"


def files() -> dict[str, str]:
    """File name -> contents."""
    found = {
        "deid_key": DEVELOPMENT_KEYS[0],
        "vault_key": DEVELOPMENT_KEYS[1],
        "relink_private_key": DEVELOPMENT_KEYS[2],
        "relink_public_key": DEVELOPMENT_KEYS[3],
        "audit_anchor_key": "dev-audit-anchor-key-for-docker-compose-only",
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
    return {name: value + "\n" for name, value in found.items()}


def main() -> None:
    check = "--check" in sys.argv[1:]
    wanted = files()
    stale = [
        n for n, v in wanted.items() if not (TARGET / n).exists() or (TARGET / n).read_text() != v
    ]
    extra = [p.name for p in TARGET.glob("*") if p.name not in wanted and p.name != "README.md"]
    if check:
        if stale or extra:
            print(f"compose secrets differ from the code: {', '.join(stale + extra)}")
            sys.exit(1)
        return
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (TARGET / name).write_text(wanted[name])
    for name in extra:
        (TARGET / name).unlink()
    print(f"wrote {len(stale)} of {len(wanted)} files in {TARGET}")


if __name__ == "__main__":
    main()
