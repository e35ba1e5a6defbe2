"""Keyed, consistent pseudonyms: HMAC-SHA256 under the deid secret key.

The same input always gives the same output under one key, in every message and every
service, and no one without the key can reverse it or test a guess.

A patient's date offset is drawn from the same keyed function. It is uniformly spread
over ±max_days, never 0, and stable without a lookup, so the CLI works offline. The
deid service also records each patient's offset in the PseudonymVault, which stays the
source of truth if the key is ever rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Pseudonymiser:
    """Keyed pseudonyms, date offsets, UIDs and surrogate choices."""

    key: bytes
    max_shift_days: int = 365

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` for ``purpose`` (domain-separated)."""
        return hmac.new(self.key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()

    def patient(self, ehr_patient_id: str) -> str:
        """The patient's pseudonym: ``psn-`` and 20 base32 characters (100 bits)."""
        raw = self.digest("patient", ehr_patient_id.strip())
        return "psn-" + base64.b32encode(raw)[:20].decode().lower()

    def token(self, category: str, value: str) -> str:
        """A pseudonym for any other identifier (MRN, account…), by category."""
        raw = self.digest(f"id:{category}", value.strip())
        return f"{category.lower()}-" + base64.b32encode(raw)[:16].decode().lower()

    def date_offset(self, ehr_patient_id: str) -> int:
        """The patient's date shift in days, in [-max, -1] or [1, max]."""
        raw = int.from_bytes(self.digest("date-shift", ehr_patient_id.strip())[:8], "big")
        magnitude = 1 + raw % self.max_shift_days
        return magnitude if (raw >> 63) & 1 else -magnitude

    def uid(self, original: str) -> str:
        """A replacement DICOM UID under the 2.25 (UUID-derived) root, at most 64 chars."""
        raw = self.digest("dicom-uid", original.strip())[:16]
        return "2.25." + str(int.from_bytes(raw, "big"))

    def choose(self, purpose: str, value: str, options: int) -> int:
        """A stable choice in ``range(options)`` for a surrogate."""
        return int.from_bytes(self.digest(purpose, value)[:8], "big") % options
