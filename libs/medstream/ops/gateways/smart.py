"""SMART Backend Services authorisation for the HTTP gateway (docs/gateways.md).

A registered client proves who it is with a JWT it signs with its own private key
(RS384 or ES384: the client assertion), at ``POST /auth/token``; the gateway answers
with a short-lived access token naming the scopes granted: the ones asked for that
the client's registration allows. Every FHIR read and every post then carries that
token as ``Authorization: Bearer``. Missing, bad or expired: 401; valid but without
the scope the request needs: 403.

We chose this over mutual TLS because it is what EHR vendors' bulk and backend
clients already speak, it needs no client certificates on the hospital's PKI, and its
scopes let one client read results without being able to post, or the reverse.

Registrations live in a JSON file (``MEDSTREAM_GATEWAY_CLIENTS_FILE``), read on each
token request, so a client is added or revoked without a restart:
``{"clients": {"CLIENT_ID": {"public_key": "-----BEGIN PUBLIC KEY-----...",
"scopes": ["system/*.read"]}}}``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from medstream.platform import secrets
from medstream.settings import Settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
TOKEN_ALGORITHM = "HS256"  # noqa: S105  (an algorithm name, not a secret)
MAX_ASSERTION_LIFETIME_S = 300
LEEWAY_S = 30


class AuthError(Exception):
    """A refused request: ``status`` 400, 401 or 403, an OAuth ``error`` code, and a
    sentence that says what to do (never a secret)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Grant:
    """The client and scopes an access token carries."""

    client_id: str
    scopes: frozenset[str]


def clients_file(settings: Settings) -> Path:
    """Where client registrations are read from."""
    return settings.gateway_clients_file or settings.state_dir / "gateway" / "clients.json"


def public_url(settings: Settings) -> str:
    """The gateway's base URL, as clients reach it."""
    return (
        settings.gateway_public_url or f"http://{settings.gateway_host}:{settings.http_port}"
    ).rstrip("/")


def register_client(
    settings: Settings, client_id: str, public_key_pem: str, scopes: list[str]
) -> None:
    """Add or replace a client registration (the operator's and the tests' way in)."""
    path = clients_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"clients": {}}
    data["clients"][client_id] = {"public_key": public_key_pem, "scopes": scopes}
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(data, indent=2))
    staged.replace(path)


def scope_allows(granted: str, wanted: str) -> bool:
    """Whether scope ``granted`` covers ``wanted`` (both ``system/TYPE.ACCESS``):
    ``*`` covers every type; ``*`` access, ``read``/``rs`` and ``write``/``cud``/``c``
    (SMART v1 and v2 spellings) cover their kind."""
    try:
        g_context, g_rest = granted.split("/", 1)
        g_type, g_access = g_rest.rsplit(".", 1)
        w_context, w_rest = wanted.split("/", 1)
        w_type, w_access = w_rest.rsplit(".", 1)
    except ValueError:
        return False
    if g_context != "system" or w_context != "system" or g_type not in ("*", w_type):
        return False
    # Reads here are reads and searches alike: v2's "rs" covers them, "r" or "s"
    # alone does not.
    kinds = {"read": {"read", "rs"}, "write": {"write", "cud", "c"}}
    return g_access == "*" or g_access in kinds.get(w_access, {w_access})


class TokenIssuer:
    """Verifies client assertions, issues access tokens, and checks them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key = secrets.gateway_token_key(settings)
        self._audience = f"{public_url(settings)}/auth/token"
        # Assertion ids seen within their lifetime: a replayed assertion is refused
        # (per process; a replica would accept one replay within five minutes).
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def token_endpoint(self) -> str:
        """The URL client assertions must name as their audience."""
        return self._audience

    def issue(self, form: dict[str, str]) -> dict[str, object]:
        """The token response to a client-credentials request, or AuthError."""
        if form.get("grant_type") != "client_credentials":
            raise AuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AuthError(
                400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
            )
        assertion = form.get("client_assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError(400, "invalid_client", "client_assertion is not a JWT") from None
        client_id = str(unverified.get("iss", ""))
        registration = self._registration(client_id)
        try:
            claims = jwt.decode(
                assertion,
                registration["public_key"],
                algorithms=ASSERTION_ALGORITHMS,
                audience=self._audience,
                issuer=client_id,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "sub", "jti", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise AuthError(
                401, "invalid_client", f"the client assertion was refused: {error}"
            ) from None
        now = time.time()
        if claims["sub"] != client_id or claims["exp"] - now > MAX_ASSERTION_LIFETIME_S + LEEWAY_S:
            raise AuthError(
                401, "invalid_client", "sub must equal iss, and exp be at most 5 minutes ahead"
            )
        self._once(str(claims["jti"]), float(claims["exp"]))
        allowed = registration.get("scopes", [])
        asked = form.get("scope", "").split()
        granted = [s for s in asked if any(scope_allows(a, s) for a in allowed)]
        if not granted:
            raise AuthError(
                400, "invalid_scope", "none of the scopes asked for is allowed for this client"
            )
        lifetime = self._settings.gateway_token_lifetime_s
        token = jwt.encode(
            {
                "iss": public_url(self._settings),
                "sub": client_id,
                "scope": " ".join(granted),
                "iat": int(now),
                "exp": int(now) + lifetime,
                "jti": uuid.uuid4().hex,
            },
            self._key,
            algorithm=TOKEN_ALGORITHM,
        )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime,
            "scope": " ".join(granted),
        }

    def verify(self, authorization: str | None, wanted: str) -> Grant:
        """The grant of a request's ``Authorization`` header if it holds a scope that
        covers ``wanted``; else AuthError 401 (no valid token) or 403 (no scope)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(
                401, "invalid_token", "a bearer token is required: get one at /auth/token"
            )
        try:
            claims = jwt.decode(
                token.strip(),
                self._key,
                algorithms=[TOKEN_ALGORITHM],
                issuer=public_url(self._settings),
                options={"require": ["exp", "sub", "scope"]},
            )
        except jwt.PyJWTError:
            raise AuthError(
                401, "invalid_token", "the bearer token is invalid or expired: get a new one"
            ) from None
        scopes = frozenset(str(claims["scope"]).split())
        if not any(scope_allows(s, wanted) for s in scopes):
            raise AuthError(403, "insufficient_scope", f"this request needs the scope {wanted}")
        return Grant(str(claims["sub"]), scopes)

    def _registration(self, client_id: str) -> dict[str, Any]:
        path = clients_file(self._settings)
        try:
            clients = json.loads(path.read_text()).get("clients", {})
        except (OSError, ValueError):
            clients = {}
        registration = clients.get(client_id) if client_id else None
        if not isinstance(registration, dict) or "public_key" not in registration:
            raise AuthError(401, "invalid_client", "the client is not registered")
        return registration

    def _once(self, jti: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            for seen, until in list(self._seen.items()):
                if until + LEEWAY_S < now:
                    del self._seen[seen]
            if jti in self._seen:
                raise AuthError(401, "invalid_client", "this client assertion was already used")
            self._seen[jti] = expires
