"""Who may do what, as data: each principal's rights, one table per server.

The stack reconciles the servers to these tables (Redis's ACL file is written from
``REDIS_USERS`` on every start), and the integration tests derive from the same tables
what each principal must be allowed and refused, so the table, the server and the
tests cannot drift apart.
"""

from __future__ import annotations

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
_CONNECTION = ("ping", "hello", "auth", "client", "select", "info")
REDIS_USERS: dict[str, RedisGrant] = {
    "deid": RedisGrant(("vault:*",), (*_CONNECTION, "get", "set", "del", "expire")),
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
