"""The PseudonymVault: the only link from a pseudonym back to the real patient.

Two halves, so that only the EHR boundary can re-link:
- ``pseudonym_vault`` holds each patient's date offset, AES-256-GCM under a key derived
  from ``MEDSTREAM_VAULT_KEY`` (deid reads it to shift dates);
- ``vault_identity`` holds the patient's EHR identifiers, one row per identity
  fragment seen, each *sealed* to the results service's X25519 public key (an
  ephemeral key agreement, HKDF, AES-256-GCM). deid holds only the public key: it can
  add identities but never read one back. Only results (and the operator) hold the
  private key, and only their database roles may read the sealed column.
Every ciphertext binds its pseudonym as associated data, so it cannot be moved to
another patient.
- PostgreSQL is the source of truth.
- Redis caches the date offset (encrypted the same way) and which identity fragments
  are already recorded, once the transaction that read or wrote them has committed.
  A stored offset never changes (the first writer wins; re-keying keeps the value),
  so an entry is never stale.
- deid asks for a whole batch at once: one Redis round trip and one statement for the
  offsets, one Redis round trip and two statements for the writes.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
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
        if key_id in (previous or {}):
            raise ValueError(
                f"MEDSTREAM_VAULT_PREVIOUS_KEYS names {key_id!r}, the current key's id: give "
                "the new key a new MEDSTREAM_VAULT_KEY_ID"
            )
        self._previous = {
            old_id: AESGCM(_derive(old, old_id)[:32]) for old_id, old in (previous or {}).items()
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


class RelinkSeal:
    """Sealing to the re-link key: anyone with the public key seals, only the holder of
    the private key opens. ``sealed`` is the ephemeral public key (32 bytes), the nonce
    (12) and the AES-GCM ciphertext."""

    def __init__(self, public: bytes | None, private: bytes | None = None) -> None:
        self._private = X25519PrivateKey.from_private_bytes(private) if private else None
        if self._private is not None:
            own = self._private.public_key()
            if public is not None and own.public_bytes_raw() != public:
                raise ValueError(
                    "MEDSTREAM_RELINK_PUBLIC_KEY is not the public half of "
                    "MEDSTREAM_RELINK_PRIVATE_KEY; set the pair that belongs together"
                )
            self._public = own
        elif public is not None:
            self._public = X25519PublicKey.from_public_bytes(public)
        else:
            raise ValueError("a re-link seal needs the public or the private key")

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> RelinkSeal:
        """The public key for everyone; the private key only for results and the
        operator (the CLI), who re-link."""
        if service == "deid":
            return cls(base64.b64decode(settings.relink_public_key))
        # The holder of the private key derives the public half from it, so a results
        # service given only its private key seals and opens with the same pair.
        return cls(None, base64.b64decode(settings.relink_private_key.get_secret_value()))

    def _key(self, shared: bytes, ephemeral: bytes) -> AESGCM:
        recipient = self._public.public_bytes_raw()
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=ephemeral + recipient,
            info=b"medstream-relink",
        ).derive(shared)
        return AESGCM(derived)

    def seal(self, plaintext: bytes, bound_to: str) -> bytes:
        """``plaintext`` sealed to the re-link key, bound to ``bound_to``."""
        ephemeral = X25519PrivateKey.generate()
        public = ephemeral.public_key().public_bytes_raw()
        nonce = os.urandom(12)
        aead = self._key(ephemeral.exchange(self._public), public)
        return public + nonce + aead.encrypt(nonce, plaintext, bound_to.encode())

    def open(self, sealed: bytes, bound_to: str) -> bytes:
        """The plaintext; raises without the private key or if anything was changed."""
        if self._private is None:
            raise PermissionError("this process does not hold the re-link key")
        public, nonce, ciphertext = sealed[:32], sealed[32:44], sealed[44:]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(public))
        return self._key(shared, public).decrypt(nonce, ciphertext, bound_to.encode())


@dataclass(frozen=True)
class VaultEntry:
    """What the vault holds for one pseudonym."""

    identity: PatientIdentity
    offset_days: int


@dataclass(frozen=True)
class VaultRecorded:
    """What ``record_many`` did: each write's audit events, and the offsets it created."""

    events: list[list[OutboundMessage]]
    created: dict[str, int]


@dataclass(frozen=True)
class RelinkRequest:
    """One result's question at the EHR boundary: who is behind this pseudonym."""

    pseudonym: str
    correlation_id: str
    dedupe_key: str


@dataclass(frozen=True)
class OffsetRead:
    """One record's question to the vault: its patient's date offset, with the offset
    derived from the keys to use when none is stored yet."""

    pseudonym: str
    derived: int
    correlation_id: str
    dedupe_key: str


@dataclass(frozen=True)
class VaultWrite:
    """One record's entry for the vault: its patient's offset and identity fragment."""

    pseudonym: str
    identity: PatientIdentity
    offset_days: int
    correlation_id: str
    dedupe_key: str


class PseudonymVault:
    """Reads and writes vault rows within the caller's transaction."""

    def __init__(
        self, cipher: VaultCipher, redis: Redis | None, actor: str, seal: RelinkSeal
    ) -> None:
        self.cipher = cipher
        self.redis = redis
        self.actor = actor
        self.seal = seal

    async def _stored_offsets(self, conn: AsyncConnection, pseudonyms: list[str]) -> dict[str, int]:
        """The stored date offsets of ``pseudonyms`` (those that have one), in one query."""
        rows = await conn.execute(
            text(
                "SELECT pseudonym, key_id, offset_nonce, offset_ciphertext"
                " FROM pseudonym_vault WHERE pseudonym = ANY(CAST(:p AS text[]))"
            ),
            {"p": pseudonyms},
        )
        return {
            row.pseudonym: int(
                self.cipher.open(row.offset_nonce, row.offset_ciphertext, row.pseudonym, row.key_id)
            )
            for row in rows
        }

    async def relink(
        self, conn: AsyncConnection, pseudonym: str, *, correlation_id: str, dedupe_key: str
    ) -> tuple[VaultEntry | None, OutboundMessage]:
        """``relink_many`` for one pseudonym (the operator's tools and tests)."""
        return (
            await self.relink_many(conn, [RelinkRequest(pseudonym, correlation_id, dedupe_key)])
        )[0]

    async def relink_many(
        self, conn: AsyncConnection, requests: Sequence[RelinkRequest]
    ) -> list[tuple[VaultEntry | None, OutboundMessage]]:
        """The real patient behind each request's pseudonym, for the EHR boundary only
        (the results service, which holds the re-link key), with its ``vault.relink``
        audit event; two statements for a whole batch. Never cached. The identity is
        every fragment recorded, merged in the order they were recorded."""
        pseudonyms = sorted({r.pseudonym for r in requests})
        offsets: dict[str, int] = {}
        fragments: dict[str, list[dict[str, Any]]] = {}
        if pseudonyms:
            offsets = await self._stored_offsets(conn, pseudonyms)
            rows = await conn.execute(
                text(
                    "SELECT pseudonym, sealed FROM vault_identity"
                    " WHERE pseudonym = ANY(CAST(:p AS text[])) ORDER BY pseudonym, created_at"
                ),
                {"p": pseudonyms},
            )
            for row in rows:
                fragments.setdefault(row.pseudonym, []).append(
                    json.loads(self.seal.open(row.sealed, row.pseudonym))
                )
        entries: dict[str, VaultEntry] = {}
        for pseudonym in pseudonyms:
            found = fragments.get(pseudonym)
            if pseudonym in offsets and found:
                identifiers: list[dict[str, Any]] = []
                for fragment in found:
                    identifiers = _merge(identifiers, fragment["identifiers"])
                identity = PatientIdentity(found[0]["ehr_patient_id"], identifiers)
                entries[pseudonym] = VaultEntry(identity, offsets[pseudonym])
        answers: list[tuple[VaultEntry | None, OutboundMessage]] = []
        for request in requests:
            entry = entries.get(request.pseudonym)
            event = self._read_event(
                "vault.relink", "ehr-write-back", request.pseudonym, entry is not None,
                request.correlation_id, request.dedupe_key,
            )  # fmt: skip
            answers.append((entry, event))
        return answers

    def _read_event(
        self,
        action: str,
        purpose: str,
        pseudonym: str,
        found: bool,
        correlation_id: str,
        dedupe_key: str,
    ) -> OutboundMessage:
        """The audit event of one read of the vault."""
        return audit_message(
            actor=self.actor,
            action=action,
            entity=pseudonym,
            correlation_id=correlation_id,
            details={"purpose": purpose, "found": found},
            dedupe_key=dedupe_key,
        )

    async def offsets(
        self, conn: AsyncConnection, reads: Sequence[OffsetRead]
    ) -> list[tuple[int, list[OutboundMessage]]]:
        """Each read's date offset and its audit events, for a whole batch in one Redis
        round trip and one PostgreSQL statement: cached, else stored (audited), else the
        read's ``derived`` offset (the caller's keyed derivation, recorded later)."""
        pseudonyms = sorted({read.pseudonym for read in reads})
        cached = await self._cache_get_many([f"vault:offset:{p}" for p in pseudonyms], pseudonyms)
        known = {p: int(value) for p, value in zip(pseudonyms, cached, strict=True) if value}
        missing = [p for p in pseudonyms if p not in known]
        stored: dict[str, int] = {}
        if missing:
            stored = await self._stored_offsets(conn, missing)
            await self._cache_set_many(
                {f"vault:offset:{p}": (str(v), p) for p, v in stored.items()}
            )
        answers: list[tuple[int, list[OutboundMessage]]] = []
        for read in reads:
            if read.pseudonym in known:
                answers.append((known[read.pseudonym], []))
                continue
            found = stored.get(read.pseudonym)
            event = self._read_event(
                "vault.read", "date-offset", read.pseudonym, found is not None,
                read.correlation_id, read.dedupe_key,
            )  # fmt: skip
            answers.append((read.derived if found is None else found, [event]))
        return answers

    async def record(self, conn: AsyncConnection, write: VaultWrite) -> list[OutboundMessage]:
        """``record_many`` for one write (the operator's tools and tests)."""
        return (await self.record_many(conn, [write])).events[0]

    async def record_many(
        self, conn: AsyncConnection, writes: Sequence[VaultWrite]
    ) -> VaultRecorded:
        """Record each patient's offset (first writer wins) and each identity fragment
        (once: its keyed fingerprint is the key), without reading any identity back, for
        a whole batch in one Redis round trip and two PostgreSQL statements; return each
        write's audit event when it added something, and the offsets this call created.

        Concurrent writers are serialised by the primary keys (``ON CONFLICT DO
        NOTHING``): of two batches adding the same patient, one creates the row and the
        other finds it, and identity fragments only ever accumulate (``relink`` merges
        them), so no merge is lost. Rows are inserted in key order, so two batches that
        share patients take their row locks in the same order and cannot deadlock."""
        fingerprints = [self.cipher.fingerprint(w.identity) for w in writes]
        seen_keys = [
            f"vault:seen:{w.pseudonym}:{f}" for w, f in zip(writes, fingerprints, strict=True)
        ]
        seen = await self._cache_get_many(seen_keys, [w.pseudonym for w in writes])
        offsets: dict[str, tuple[int, bytes, bytes]] = {}
        identities: dict[tuple[str, str], bytes] = {}
        first_of: dict[str, int] = {}  # the write that would create each patient's row
        first_with: dict[tuple[str, str], int] = {}  # ... and add each fragment
        for index, (write, fragment, cached) in enumerate(
            zip(writes, fingerprints, seen, strict=True)
        ):
            if cached is not None or (write.pseudonym, fragment) in identities:
                continue
            if write.pseudonym not in offsets:
                nonce, ciphertext = self.cipher.seal(
                    str(write.offset_days).encode(), write.pseudonym
                )
                offsets[write.pseudonym] = (write.offset_days, nonce, ciphertext)
                first_of[write.pseudonym] = index
            plaintext = json.dumps(
                {
                    "ehr_patient_id": write.identity.ehr_patient_id,
                    "identifiers": write.identity.identifiers,
                },
                sort_keys=True,
            ).encode()
            identities[(write.pseudonym, fragment)] = self.seal.seal(plaintext, write.pseudonym)
            first_with[(write.pseudonym, fragment)] = index
        created: set[str] = set()
        added: set[tuple[str, str]] = set()
        if offsets:
            patients = sorted(offsets)
            rows = await conn.execute(
                text(
                    "INSERT INTO pseudonym_vault (pseudonym, key_id, offset_nonce,"
                    " offset_ciphertext) SELECT p, :k, n, c FROM unnest(CAST(:p AS text[]),"
                    " CAST(:n AS bytea[]), CAST(:c AS bytea[])) AS u(p, n, c)"
                    " ON CONFLICT (pseudonym) DO NOTHING RETURNING pseudonym"
                ),
                {
                    "k": self.cipher.key_id,
                    "p": patients,
                    "n": [offsets[p][1] for p in patients],
                    "c": [offsets[p][2] for p in patients],
                },
            )
            created = {row[0] for row in rows}
            fragments = sorted(identities)
            rows = await conn.execute(
                text(
                    "INSERT INTO vault_identity (pseudonym, fingerprint, sealed)"
                    " SELECT p, f, s FROM unnest(CAST(:p AS text[]), CAST(:f AS text[]),"
                    " CAST(:s AS bytea[])) AS u(p, f, s)"
                    " ON CONFLICT (pseudonym, fingerprint) DO NOTHING"
                    " RETURNING pseudonym, fingerprint"
                ),
                {
                    "p": [p for p, _ in fragments],
                    "f": [f for _, f in fragments],
                    "s": [identities[key] for key in fragments],
                },
            )
            added = {(row[0], row[1]) for row in rows}
        events: list[list[OutboundMessage]] = []
        for index, (write, fragment) in enumerate(zip(writes, fingerprints, strict=True)):
            # Only the write that brought a row reports it; the others added nothing.
            was_created = write.pseudonym in created and first_of.get(write.pseudonym) == index
            key = (write.pseudonym, fragment)
            was_added = key in added and first_with.get(key) == index
            if not (was_created or was_added):
                events.append([])
                continue
            events.append(
                [
                    audit_message(
                        actor=self.actor,
                        action="vault.write",
                        entity=write.pseudonym,
                        correlation_id=write.correlation_id,
                        details={"created": was_created, "identity_added": was_added},
                        dedupe_key=f"{write.dedupe_key}:write",
                    )
                ]
            )
        return VaultRecorded(events, {p: offsets[p][0] for p in created})

    async def after_commit(self, writes: Sequence[VaultWrite], created: Mapping[str, int]) -> None:
        """Once the transaction that changed the vault has committed, in one Redis round
        trip: mark each identity fragment recorded, and cache the offsets this batch
        created (a stored offset never changes: the first writer wins, and re-keying
        keeps the value)."""
        await self._cache_set_many(
            {
                **{
                    f"vault:seen:{w.pseudonym}:{self.cipher.fingerprint(w.identity)}": (
                        "1",
                        w.pseudonym,
                    )
                    for w in writes
                },
                **{f"vault:offset:{p}": (str(days), p) for p, days in created.items()},
            }
        )

    async def _cache_get_many(
        self, keys: Sequence[str], pseudonyms: Sequence[str]
    ) -> list[str | None]:
        # Redis only saves work: when it is down, every lookup goes to PostgreSQL.
        if self.redis is None or not keys:
            return [None] * len(keys)
        try:
            raws = await self.redis.mget(keys)
        except RedisError:
            log.warning("vault cache unavailable; reading PostgreSQL", extra={"component": "vault"})
            return [None] * len(keys)
        values: list[str | None] = []
        for raw, pseudonym in zip(raws, pseudonyms, strict=True):
            if not isinstance(raw, bytes):
                values.append(None)
                continue
            try:
                values.append(self.cipher.open(raw[:12], raw[12:], pseudonym).decode())
            except InvalidTag:
                values.append(None)  # another key's entry, or tampered: read PostgreSQL
        return values

    async def _cache_set_many(self, entries: dict[str, tuple[str, str]]) -> None:
        """Set ``key: (value, pseudonym)`` entries, sealed, in one round trip."""
        if self.redis is None or not entries:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, (value, pseudonym) in entries.items():
                    nonce, ciphertext = self.cipher.seal(value.encode(), pseudonym)
                    pipe.set(key, nonce + ciphertext, ex=CACHE_TTL_S)
                await pipe.execute()
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
    """Re-encrypt up to ``limit`` date offsets not yet under the current key (the
    identities are sealed to the re-link key, which this does not change), in the caller's
    transaction. Rows are locked with SKIP LOCKED, so the services' own writes (which
    seal under the current key anyway) and a second rotation never wait on it; a crash
    loses nothing, and the next run continues with the rows still left."""
    rows = (
        await conn.execute(
            text(
                "SELECT pseudonym, key_id, offset_nonce, offset_ciphertext FROM pseudonym_vault"
                " WHERE key_id <> :k ORDER BY pseudonym LIMIT :n FOR UPDATE SKIP LOCKED"
            ),
            {"k": cipher.key_id, "n": limit},
        )
    ).all()
    for row in rows:
        plaintext = cipher.open(row.offset_nonce, row.offset_ciphertext, row.pseudonym, row.key_id)
        nonce, ciphertext = cipher.seal(plaintext, row.pseudonym)
        await conn.execute(
            text(
                "UPDATE pseudonym_vault SET key_id = :k, offset_nonce = :n,"
                " offset_ciphertext = :c, updated_at = now() WHERE pseudonym = :p"
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
