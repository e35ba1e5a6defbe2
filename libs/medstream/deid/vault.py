"""The PseudonymVault: the only link from a pseudonym back to the real patient.

Each row holds one patient's EHR identifiers and date offset as AES-256-GCM ciphertext,
with the pseudonym bound as associated data, so a row cannot be moved to another
pseudonym. The AES key is derived from ``MEDSTREAM_VAULT_KEY`` with HKDF.
- PostgreSQL is the source of truth.
- Redis caches the date offset (encrypted the same way) and which identity fragments
  are already recorded. A change to a row deletes its cache entries after the
  transaction commits.
- Every read of a row returns an audit event, which the caller writes to its outbox in
  the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.deid.engine import PatientIdentity
from medstream.outbox import OutboundMessage
from medstream.settings import Settings

CACHE_TTL_S = 24 * 3600
log = logging.getLogger(__name__)


def _derive(secret: bytes, key_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=64, salt=b"medstream-vault", info=key_id.encode()
    ).derive(secret)


class VaultCipher:
    """AES-256-GCM with a key derived from the vault secret.

    It seals with the current key (``key_id``) and opens with the key a row names, so
    while ``medstream vault rotate-key`` re-encrypts the rows the services read both
    (``MEDSTREAM_VAULT_PREVIOUS_KEYS``)."""

    def __init__(
        self, secret: bytes, key_id: str = "v1", previous: dict[str, bytes] | None = None
    ) -> None:
        self.key_id = key_id
        key = _derive(secret, key_id)
        self._aead = AESGCM(key[:32])
        self._mac_key = key[32:]
        self._previous = {
            old_id: AESGCM(_derive(old, old_id)[:32])
            for old_id, old in (previous or {}).items()
            if old_id != key_id
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultCipher:
        """The cipher for ``MEDSTREAM_VAULT_KEY`` (``_KEY_ID``), reading rows sealed
        under ``MEDSTREAM_VAULT_PREVIOUS_KEYS`` too."""
        return cls(
            base64.b64decode(settings.vault_key.get_secret_value()),
            settings.vault_key_id,
            previous_keys(settings),
        )

    def seal(self, plaintext: bytes, bound_to: str) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) of ``plaintext``, bound to ``bound_to``, under the current
        key."""
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, plaintext, bound_to.encode())

    def open(
        self, nonce: bytes, ciphertext: bytes, bound_to: str, key_id: str | None = None
    ) -> bytes:
        """The plaintext, under the key ``key_id`` names (default: the current one);
        raises if the ciphertext or its binding was changed, or the key is unknown."""
        if key_id in (None, self.key_id):
            return self._aead.decrypt(nonce, ciphertext, bound_to.encode())
        if key_id not in self._previous:
            raise InvalidTag(f"vault key {key_id!r} is neither current nor previous")
        return self._previous[key_id].decrypt(nonce, ciphertext, bound_to.encode())

    def fingerprint(self, identity: PatientIdentity) -> str:
        """A keyed digest of ``identity``: safe as a cache key, useless without the key."""
        canonical = json.dumps([identity.ehr_patient_id, identity.identifiers], sort_keys=True)
        return hmac.new(self._mac_key, canonical.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class VaultEntry:
    """What the vault holds for one pseudonym."""

    identity: PatientIdentity
    offset_days: int


class PseudonymVault:
    """Reads and writes vault rows within the caller's transaction."""

    def __init__(self, cipher: VaultCipher, redis: Redis | None, actor: str) -> None:
        self.cipher = cipher
        self.redis = redis
        self.actor = actor

    async def read(
        self,
        conn: AsyncConnection,
        pseudonym: str,
        *,
        purpose: str,
        correlation_id: str,
        dedupe_key: str,
        lock: bool = False,
        action: str = "vault.read",
    ) -> tuple[VaultEntry | None, OutboundMessage]:
        """The entry for ``pseudonym`` and the audit event of this read (``action``)."""
        query = "SELECT key_id, nonce, ciphertext FROM pseudonym_vault WHERE pseudonym = :p"
        row = (
            await conn.execute(text(query + (" FOR UPDATE" if lock else "")), {"p": pseudonym})
        ).first()
        entry = None
        if row is not None:
            data = json.loads(self.cipher.open(row.nonce, row.ciphertext, pseudonym, row.key_id))
            entry = VaultEntry(
                PatientIdentity(data["ehr_patient_id"], data["identifiers"]), data["offset_days"]
            )
        event = audit_message(
            actor=self.actor,
            action=action,
            entity=pseudonym,
            correlation_id=correlation_id,
            details={"purpose": purpose, "found": entry is not None},
            dedupe_key=dedupe_key,
        )
        return entry, event

    async def relink(
        self, conn: AsyncConnection, pseudonym: str, *, correlation_id: str, dedupe_key: str
    ) -> tuple[VaultEntry | None, OutboundMessage]:
        """The real patient behind ``pseudonym``, for the EHR boundary only (the results
        service), with its ``vault.relink`` audit event. Never cached."""
        return await self.read(
            conn,
            pseudonym,
            purpose="ehr-write-back",
            correlation_id=correlation_id,
            dedupe_key=dedupe_key,
            action="vault.relink",
        )

    async def offset(
        self,
        conn: AsyncConnection,
        pseudonym: str,
        derived: int,
        *,
        correlation_id: str,
        dedupe_key: str,
    ) -> tuple[int, list[OutboundMessage]]:
        """The patient's date offset: cached, else read (and audited), else ``derived``."""
        cached = await self._cache_get(f"vault:offset:{pseudonym}", pseudonym)
        if cached is not None:
            return int(cached), []
        entry, event = await self.read(
            conn,
            pseudonym,
            purpose="date-offset",
            correlation_id=correlation_id,
            dedupe_key=dedupe_key,
        )
        offset = entry.offset_days if entry else derived
        if entry is not None:
            await self._cache_set(f"vault:offset:{pseudonym}", str(offset), pseudonym)
        return offset, [event]

    async def record(
        self,
        conn: AsyncConnection,
        pseudonym: str,
        identity: PatientIdentity,
        offset_days: int,
        *,
        correlation_id: str,
        dedupe_key: str,
    ) -> list[OutboundMessage]:
        """Add ``identity`` to the patient's row (creating it); return audit events.

        The row is locked for the merge, so two services recording the same patient at
        once cannot lose each other's identifiers.
        """
        fragment = self.cipher.fingerprint(identity)
        if await self._cache_get(f"vault:seen:{pseudonym}:{fragment}", pseudonym) is not None:
            return []
        existing, read_event = await self.read(
            conn,
            pseudonym,
            purpose="merge-identifiers",
            correlation_id=correlation_id,
            dedupe_key=f"{dedupe_key}:read",
            lock=True,
        )
        identifiers = _merge(
            existing.identity.identifiers if existing else [], identity.identifiers
        )
        offset = existing.offset_days if existing else offset_days
        events = [read_event]
        if existing is None or identifiers != existing.identity.identifiers:
            plaintext = json.dumps(
                {
                    "ehr_patient_id": identity.ehr_patient_id,
                    "identifiers": identifiers,
                    "offset_days": offset,
                },
                sort_keys=True,
            ).encode()
            nonce, ciphertext = self.cipher.seal(plaintext, pseudonym)
            await conn.execute(
                text(
                    "INSERT INTO pseudonym_vault (pseudonym, key_id, nonce, ciphertext)"
                    " VALUES (:p, :k, :n, :c) ON CONFLICT (pseudonym) DO UPDATE"
                    " SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,"
                    " ciphertext = EXCLUDED.ciphertext, updated_at = now()"
                ),
                {"p": pseudonym, "k": self.cipher.key_id, "n": nonce, "c": ciphertext},
            )
            events.append(
                audit_message(
                    actor=self.actor,
                    action="vault.write",
                    entity=pseudonym,
                    correlation_id=correlation_id,
                    details={"created": existing is None, "identifiers": len(identifiers)},
                    dedupe_key=f"{dedupe_key}:write",
                )
            )
        return events

    async def after_commit(self, pseudonym: str, identity: PatientIdentity) -> None:
        """Refresh the cache once the transaction that changed the vault has committed."""
        if self.redis is None:
            return
        try:
            await self.redis.delete(f"vault:offset:{pseudonym}")
        except RedisError:
            log.warning("vault cache unavailable; not invalidated", extra={"component": "vault"})
        await self._cache_set(
            f"vault:seen:{pseudonym}:{self.cipher.fingerprint(identity)}", "1", pseudonym
        )

    async def _cache_get(self, key: str, pseudonym: str) -> str | None:
        # Redis only saves work: when it is down, every lookup goes to PostgreSQL.
        if self.redis is None:
            return None
        try:
            raw = await self.redis.get(key)
            if not isinstance(raw, bytes):
                return None
            return self.cipher.open(raw[:12], raw[12:], pseudonym).decode()
        except (RedisError, InvalidTag):
            log.warning("vault cache unavailable; reading PostgreSQL", extra={"component": "vault"})
            return None

    async def _cache_set(self, key: str, value: str, pseudonym: str) -> None:
        if self.redis is None:
            return
        nonce, ciphertext = self.cipher.seal(value.encode(), pseudonym)
        try:
            await self.redis.set(key, nonce + ciphertext, ex=CACHE_TTL_S)
        except RedisError:
            log.warning("vault cache unavailable; not cached", extra={"component": "vault"})


def previous_keys(settings: Settings) -> dict[str, bytes]:
    """``MEDSTREAM_VAULT_PREVIOUS_KEYS`` ("v1:BASE64,v2:BASE64"): the keys rows may
    still be sealed under. Raises ValueError naming the entry that is not ID:BASE64."""
    found: dict[str, bytes] = {}
    spec = settings.vault_previous_keys.get_secret_value() if settings.vault_previous_keys else ""
    for position, item in enumerate(filter(None, (i.strip() for i in spec.split(","))), 1):
        key_id, _, secret = item.partition(":")
        try:
            found[key_id] = base64.b64decode(secret, validate=True)
        except ValueError:
            raise ValueError(
                f"MEDSTREAM_VAULT_PREVIOUS_KEYS: entry {position} is not ID:BASE64"
            ) from None
        if not key_id or not found[key_id]:
            raise ValueError(f"MEDSTREAM_VAULT_PREVIOUS_KEYS: entry {position} is not ID:BASE64")
    return found


@dataclass(frozen=True)
class Rotation:
    """What one ``rotate`` batch did."""

    rotated: int
    remaining: int


async def rotate_batch(conn: AsyncConnection, cipher: VaultCipher, limit: int = 200) -> Rotation:
    """Re-encrypt up to ``limit`` rows not yet under the current key, in the caller's
    transaction. Rows are locked with SKIP LOCKED, so the services' own writes (which
    seal under the current key anyway) and a second rotation never wait on it; a crash
    loses nothing, and the next run continues with the rows still left."""
    rows = (
        await conn.execute(
            text(
                "SELECT pseudonym, key_id, nonce, ciphertext FROM pseudonym_vault"
                " WHERE key_id <> :k ORDER BY pseudonym LIMIT :n FOR UPDATE SKIP LOCKED"
            ),
            {"k": cipher.key_id, "n": limit},
        )
    ).all()
    for row in rows:
        plaintext = cipher.open(row.nonce, row.ciphertext, row.pseudonym, row.key_id)
        nonce, ciphertext = cipher.seal(plaintext, row.pseudonym)
        await conn.execute(
            text(
                "UPDATE pseudonym_vault SET key_id = :k, nonce = :n, ciphertext = :c,"
                " updated_at = now() WHERE pseudonym = :p"
            ),
            {"k": cipher.key_id, "n": nonce, "c": ciphertext, "p": row.pseudonym},
        )
    remaining = (
        await conn.execute(
            text("SELECT count(*) FROM pseudonym_vault WHERE key_id <> :k"), {"k": cipher.key_id}
        )
    ).scalar_one()
    return Rotation(len(rows), int(remaining))


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {json.dumps(i, sort_keys=True) for i in old}
    merged = list(old)
    for identifier in new:
        key = json.dumps(identifier, sort_keys=True)
        if key not in seen:
            merged.append(identifier)
            seen.add(key)
    return merged
