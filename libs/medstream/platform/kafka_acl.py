"""Kafka security: the brokers' authentication and authoriser settings, the ACL
bindings ``KAFKA_GRANTS`` implies, and a reconciler that makes the broker hold exactly
those for MedStream's principals. The local stack and docker-compose both configure
their brokers from ``broker_security_properties``.

aiokafka's admin client has no ACL calls, so the three ACL requests of the Kafka
protocol (CreateAcls, DescribeAcls, DeleteAcls, version 1: Kafka 4 dropped version
0) are sent through it here, each carrying a whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from medstream.platform.identities import (
    BROKER,
    CONTROLLER_USER,
    KAFKA_GRANTS,
    KAFKA_SUPER_USERS,
    KafkaGrant,
    kafka_user,
)


def _jaas(module: str, user: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{name}="{secret}"' for name, secret in users.items())
    return f'{module} required username="{user}" password="{password}"{extra};'


def broker_security_properties(
    *,
    protocol: str,
    broker_password: str,
    controller_password: str,
    keystore: str | None,
    truststore: str | None,
) -> dict[str, str]:
    """The security half of a broker's ``server.properties``, for listeners named
    BROKER (clients and inter-broker: SCRAM-SHA-512) and CONTROLLER (PLAIN: SCRAM
    credentials live in the metadata log the controllers serve, KAFKA-15513).

    ``protocol`` is SASL_SSL (with the PEM ``keystore`` and ``truststore`` paths) or,
    for development on loopback, SASL_PLAINTEXT.
    """
    properties = {
        "listener.name.broker.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.broker.scram-sha-512.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule",
            kafka_user(BROKER),
            broker_password,
        ),
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            CONTROLLER_USER,
            controller_password,
            **{CONTROLLER_USER: controller_password},
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(
            [f"User:{CONTROLLER_USER}", *(f"User:{kafka_user(p)}" for p in KAFKA_SUPER_USERS)]
        ),
    }
    if protocol == "SASL_SSL":
        if keystore is None or truststore is None:
            raise ValueError("SASL_SSL needs the brokers' key store and trust store")
        properties |= {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": truststore,
            "ssl.client.auth": "none",
        }
    return properties


def scram_format_arguments(passwords: dict[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that create each SCRAM user (KIP-900)."""
    return [
        arg
        for user, password in passwords.items()
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")
    ]


class ResourceType(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


ALLOW = 3
ANY_PERMISSION = 1
ANY_HOST = "*"
# Kafka users MedStream manages: the reconciler adds and removes only these users'
# ACLs, so a hospital's own ACLs for other users are left alone.
MANAGED_PREFIX = "User:medstream-"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` the resource."""

    principal: str
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    def describe(self) -> str:
        star = "*" if self.pattern == PatternType.PREFIXED else ""
        return (
            f"{self.principal:<28} {self.operation.name:<9} "
            f"{self.resource_type.name.lower()} {self.name}{star}"
        )


def _resource(name: str) -> tuple[str, PatternType]:
    if name.endswith("*"):
        return name[:-1], PatternType.PREFIXED
    return name, PatternType.LITERAL


def bindings_of(principal: str, grant: KafkaGrant) -> set[AclBinding]:
    """The ALLOW rules one grant means."""
    user = f"User:{kafka_user(principal)}"
    found = set()
    for names, resource_type, operation in (
        (grant.reads, ResourceType.TOPIC, Operation.READ),
        (grant.writes, ResourceType.TOPIC, Operation.WRITE),
        (grant.groups, ResourceType.GROUP, Operation.READ),
    ):
        for name in names:
            plain, pattern = _resource(name)
            found.add(AclBinding(user, resource_type, plain, pattern, operation))
    return found


def wanted_bindings(grants: dict[str, KafkaGrant] | None = None) -> set[AclBinding]:
    """Every rule the table implies (default ``KAFKA_GRANTS``)."""
    return {
        binding
        for principal, grant in (KAFKA_GRANTS if grants is None else grants).items()
        for binding in bindings_of(principal, grant)
    }


def _rows(bindings: Iterable[AclBinding]) -> list[tuple[object, ...]]:
    """Bindings as CreateAcls creations, or as DeleteAcls filters matching exactly
    them: both version-1 layouts are the same seven fields."""
    return [
        (b.resource_type, b.name, b.pattern, b.principal, ANY_HOST, b.operation, ALLOW)
        for b in bindings
    ]


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self._bindings = list(bindings)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(_rows(self._bindings))


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31
    __init__ = _CreateAcls.__init__

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(_rows(self._bindings))


class _DescribeAllAcls(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(
            ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, ANY_PERMISSION
        )


class AclError(RuntimeError):
    """The broker refused an ACL request; the message says which and why."""


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code:
        error = for_code(code)
        raise AclError(f"Kafka refused {what}: {error.__name__} ({message or 'no detail'})")


async def current_bindings(admin: AIOKafkaAdminClient) -> set[AclBinding]:
    """The ALLOW rules the broker holds for MedStream's users (``User:medstream-*``)."""
    response = await admin._send_request(_DescribeAllAcls())
    _raise_for(response.error_code, response.error_message, "DescribeAcls")
    found = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            if not principal.startswith(MANAGED_PREFIX) or permission != ALLOW or host != ANY_HOST:
                continue
            try:
                found.add(
                    AclBinding(
                        principal,
                        ResourceType(resource_type),
                        name,
                        PatternType(pattern),
                        Operation(operation),
                    )
                )
            except ValueError:
                continue
    return found


@dataclass(frozen=True)
class AclChange:
    """What a reconcile did."""

    added: tuple[AclBinding, ...]
    removed: tuple[AclBinding, ...]


async def reconcile(
    admin: AIOKafkaAdminClient, grants: dict[str, KafkaGrant] | None = None
) -> AclChange:
    """Make the broker's rules for MedStream's users exactly the table's: add what is
    missing, remove what the table no longer says. Idempotent."""
    wanted = wanted_bindings(grants)
    held = await current_bindings(admin)
    added = sorted(wanted - held)
    removed = sorted(held - wanted)
    if added:
        response = await admin._send_request(_CreateAcls(added))
        for code, message in response.creation_responses:
            _raise_for(code, message, "CreateAcls")
    if removed:
        response = await admin._send_request(_DeleteAcls(removed))
        for code, message, _matching in response.filter_responses:
            _raise_for(code, message, "DeleteAcls")
    return AclChange(tuple(added), tuple(removed))
