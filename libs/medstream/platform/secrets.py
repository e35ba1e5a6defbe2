"""Secrets: where they come from, and the rule that no development value runs outside
development.

- ``MEDSTREAM_ENV`` is ``dev`` (the default: the local stack and the tests),
  ``staging`` or ``production``.
- In ``dev``, credentials nobody set are generated: random, kept in
  ``<state_dir>/secrets/`` with mode 0600, and the same for every process of the
  stack (the Redis ACL passwords).
- Outside ``dev``, a service refuses to start while a key or password is missing, too
  short, or a known development value; the error names each variable and what to set.
- Every secret may come from a file instead: ``MEDSTREAM_<NAME>_FILE`` (Docker and
  Kubernetes mount secrets as files), read by ``Settings``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from medstream.platform.identities import (
    CONTROLLER_USER,
    OPERATOR,
    POSTGRES_GRANTS,
    REDIS_USERS,
    kafka_user,
    postgres_role,
    principal_of,
    redis_user,
)
from medstream.settings import DEVELOPMENT_KEYS, Settings

DEVELOPMENT = "dev"
# Values that ship in this repository, so anyone can read them: never outside dev.
KNOWN_DEVELOPMENT_VALUES = frozenset(
    {*DEVELOPMENT_KEYS, "medstream", "medstream_owner", "postgres", "password", "changeme"}
)
# docker-compose's development passwords all start so ("dev-redis-deid-password").
DEVELOPMENT_PREFIX = "dev-"
MIN_KEY_BYTES = 32
MIN_PASSWORD_CHARS = 16


class InsecureSettings(RuntimeError):
    """A secret that must not be used outside development; the message says what to
    set, never the value."""


def development_secret(state_dir: Path, name: str) -> str:
    """The generated development secret ``name``, created on first use (random, 32
    bytes, URL-safe base64) in ``<state_dir>/secrets/``, mode 0600, shared by every
    process of the stack."""
    folder = state_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


def redis_credentials(settings: Settings) -> tuple[str, str] | None:
    """The Redis user and password this process connects with: the ones set
    (``MEDSTREAM_REDIS_USERNAME`` / ``_PASSWORD``), else in dev the generated ones of its
    principal; None when it has no Redis user (most services)."""
    if settings.redis_password is not None:
        username = settings.redis_username or redis_user(principal_of(settings.service_name))
        return username, settings.redis_password.get_secret_value()
    principal = principal_of(settings.service_name)
    if settings.env != DEVELOPMENT or principal not in REDIS_USERS:
        return None
    return redis_user(principal), development_secret(settings.state_dir, f"redis-{principal}")


@dataclass(frozen=True)
class KafkaCredentials:
    """What a Kafka client authenticates with: SCRAM user and password, and the CA
    file its TLS trusts (None with SASL_PLAINTEXT)."""

    username: str
    password: str
    ca_file: Path | None


def kafka_credentials(settings: Settings, principal: str | None = None) -> KafkaCredentials:
    """The Kafka identity of this process (or, in dev, of ``principal``: the tests act
    as each principal in turn): the user and password set (``MEDSTREAM_KAFKA_USERNAME``
    / ``_PASSWORD``), else in dev the generated ones of its principal."""
    ca_file = None
    if settings.kafka_security_protocol == "SASL_SSL":
        ca_file = settings.kafka_ca_file or settings.state_dir / "tls" / "ca.pem"
    if principal is None and settings.kafka_password is not None:
        username = settings.kafka_username or kafka_user(principal_of(settings.service_name))
        return KafkaCredentials(username, settings.kafka_password.get_secret_value(), ca_file)
    principal = principal or principal_of(settings.service_name)
    if settings.env != DEVELOPMENT:
        raise InsecureSettings(
            "MEDSTREAM_KAFKA_PASSWORD is not set: every Kafka client authenticates "
            "(set it, or MEDSTREAM_KAFKA_PASSWORD_FILE, with MEDSTREAM_KAFKA_USERNAME)"
        )
    return KafkaCredentials(
        kafka_user(principal), development_secret(settings.state_dir, f"kafka-{principal}"), ca_file
    )


def kafka_broker_secret(state_dir: Path, user: str) -> str:
    """The local stack's password for the brokers' own users (inter-broker SCRAM and
    the controller listener's PLAIN)."""
    if user not in ("broker", CONTROLLER_USER):
        raise ValueError(f"{user} is not a broker identity")
    return development_secret(state_dir, f"kafka-{user}")


def database_url(settings: Settings) -> str:
    """The URL this process connects to PostgreSQL with: the one set, except in dev
    where a service left on the default URL connects as its own role with its
    generated password (the CLI and the tests stay the operator role, ``medstream``)."""
    url = settings.database_url.get_secret_value()
    principal = principal_of(settings.service_name)
    default = Settings.model_fields["database_url"].default.get_secret_value()
    if settings.env != DEVELOPMENT or url != default or principal not in POSTGRES_GRANTS:
        return url
    return role_url(settings, principal)


def role_url(settings: Settings, principal: str) -> str:
    """The local stack's URL for ``principal``'s own role and generated password."""
    parts = urlsplit(settings.database_url.get_secret_value())
    password = development_secret(settings.state_dir, f"postgres-{principal}")
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{postgres_role(principal)}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def anchor_key(settings: Settings) -> bytes:
    """The audit anchors' HMAC key: the one set, or in dev the generated one."""
    if settings.audit_anchor_key is not None:
        return settings.audit_anchor_key.get_secret_value().encode()
    if settings.env != DEVELOPMENT:
        raise InsecureSettings("MEDSTREAM_AUDIT_ANCHOR_KEY is not set")
    return development_secret(settings.state_dir, "audit-anchor-key").encode()


def gateway_token_key(settings: Settings) -> bytes:
    """The key that signs the gateway's access tokens (HMAC): the one set, or in dev
    the generated one. Every gateway replica must hold the same key."""
    if settings.gateway_token_key is not None:
        return settings.gateway_token_key.get_secret_value().encode()
    if settings.env != DEVELOPMENT:
        raise InsecureSettings("MEDSTREAM_GATEWAY_TOKEN_KEY is not set")
    return development_secret(settings.state_dir, "gateway-token-key").encode()


def anchor_file(settings: Settings) -> Path:
    """Where the signed anchors are appended."""
    return settings.audit_anchor_path or settings.state_dir / "audit" / "anchors.jsonl"


# Which principals hold which key: each service is given only the secrets it uses, so
# only those are checked (a worker needs no vault key, and gets none).
KEY_HOLDERS = {
    "deid_key": {"deid", OPERATOR},
    "vault_key": {"deid", "results", OPERATOR},
    "relink_private_key": {"results", OPERATOR},
    "relink_public_key": {"deid", OPERATOR},
}


def problems(settings: Settings) -> list[str]:
    """What makes these settings unfit outside development (empty in dev): each
    secret this process's principal uses must be set, long enough and not a
    development value."""
    if settings.env == DEVELOPMENT:
        return []
    principal = principal_of(settings.service_name)
    found: list[str] = []
    for name, holders in KEY_HOLDERS.items():
        if principal in holders:
            value = getattr(settings, name)
            found += _key_problems(
                name, value if isinstance(value, str) else value.get_secret_value()
            )
    urls = ["database_url"] + (["database_admin_url"] if principal == OPERATOR else [])
    for name in urls:
        password = urlsplit(getattr(settings, name).get_secret_value()).password
        found += _password_problems(name, password)
    if principal in ("audit", OPERATOR):
        secret = settings.audit_anchor_key.get_secret_value() if settings.audit_anchor_key else None
        found += _password_problems("audit_anchor_key", secret, minimum=MIN_KEY_BYTES)
    if principal == "gateway":
        secret = (
            settings.gateway_token_key.get_secret_value() if settings.gateway_token_key else None
        )
        found += _password_problems("gateway_token_key", secret, minimum=MIN_KEY_BYTES)
        default_titles = type(settings).model_fields["dicom_calling_ae_titles"].default
        if settings.dicom_calling_ae_titles == default_titles:
            # The common tools' default titles keep almost no one out.
            found.append(
                "MEDSTREAM_DICOM_CALLING_AE_TITLES is the development list: name the "
                "modalities and archives that may send"
            )
    if principal in REDIS_USERS:
        secret = settings.redis_password.get_secret_value() if settings.redis_password else None
        found += _password_problems("redis_password", secret)
    if settings.worker_null_model:
        found.append("MEDSTREAM_WORKER_NULL_MODEL (a fixed score) is for benchmarks in dev only")
    kafka = settings.kafka_password.get_secret_value() if settings.kafka_password else None
    found += _password_problems("kafka_password", kafka)
    if settings.kafka_security_protocol != "SASL_SSL":
        found.append("MEDSTREAM_KAFKA_SECURITY_PROTOCOL must be SASL_SSL (TLS) outside dev")
    elif settings.kafka_ca_file is None:
        found.append("MEDSTREAM_KAFKA_CA_FILE is not set (the CA that signed the brokers)")
    return found


def plaintext_problem(settings: Settings) -> str | None:
    """Why this process may not use SASL_PLAINTEXT, if it may not: only in dev, and only
    to brokers on loopback (credentials would cross the network in the clear)."""
    if settings.kafka_security_protocol == "SASL_SSL":
        return None
    if settings.env != DEVELOPMENT:
        return "MEDSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT is for MEDSTREAM_ENV=dev only"
    for server in settings.kafka_bootstrap.split(","):
        host = server.rsplit(":", 1)[0].strip("[] ")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return (
                f"MEDSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT refuses {host}: "
                "without TLS, brokers must be on loopback"
            )
    return None


def require(settings: Settings, *names: str) -> None:
    """For an operator command: outside dev, refuse unless each setting in ``names``
    is a real secret (raises InsecureSettings naming what to set)."""
    if settings.env == DEVELOPMENT:
        return
    found: list[str] = []
    for name in names:
        value = getattr(settings, name)
        plain = (
            None
            if value is None
            else value
            if isinstance(value, str)
            else (value.get_secret_value())
        )
        if name.endswith("_url"):
            found += _password_problems(name, urlsplit(plain or "").password)
        elif name == "audit_anchor_key":
            found += _password_problems(name, plain, minimum=MIN_KEY_BYTES)
        else:
            found += _key_problems(name, plain or "")
    if found:
        raise InsecureSettings(
            f"MEDSTREAM_ENV={settings.env} refuses this command: " + "; ".join(found) + "."
        )


def enforce(settings: Settings) -> None:
    """Raise InsecureSettings naming every problem, outside development."""
    found = problems(settings)
    if found:
        raise InsecureSettings(
            f"MEDSTREAM_ENV={settings.env} refuses to start: "
            + "; ".join(found)
            + ". Set each one (or MEDSTREAM_<NAME>_FILE, a file holding it), "
            "or run with MEDSTREAM_ENV=dev on a development machine."
        )


def _variable(name: str) -> str:
    return f"MEDSTREAM_{name.upper()}"


def _key_problems(name: str, value: str) -> list[str]:
    if value in KNOWN_DEVELOPMENT_VALUES:
        return [f"{_variable(name)} is the development key"]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return [f"{_variable(name)} is not base64"]
    if len(raw) < MIN_KEY_BYTES:
        return [
            f"{_variable(name)} holds {len(raw)} bytes; it needs {MIN_KEY_BYTES} random "
            "bytes, base64 (python -c 'import base64,secrets; "
            "print(base64.b64encode(secrets.token_bytes(32)).decode())')"
        ]
    return []


def _password_problems(
    name: str, password: str | None, minimum: int = MIN_PASSWORD_CHARS
) -> list[str]:
    where = _variable(name)
    if not password:
        return [f"{where} is not set" if name.endswith("_key") else f"{where} has no password"]
    if password in KNOWN_DEVELOPMENT_VALUES or password.startswith(DEVELOPMENT_PREFIX):
        return [f"{where} uses a development password"]
    if len(password) < minimum:
        return [f"{where} is under {minimum} characters"]
    return []
