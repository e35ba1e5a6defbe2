"""Settings shared by every service, read from ``MEDSTREAM_*`` environment variables.

Every default points at the local stack that ``make up`` starts, so a fresh checkout
runs with no configuration (``MEDSTREAM_ENV=dev``); outside dev a service refuses
those defaults (``medstream.platform.secrets``). ``MEDSTREAM_ENV_FILE`` names an
optional ``.env`` file, and any setting ``X`` may be read from the file that
``MEDSTREAM_X_FILE`` names, the way Docker and Kubernetes mount secrets.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from medstream.paths import REPO_ROOT

LOCAL_KAFKA_PORT = 19092
LOCAL_POSTGRES_PORT = 15432
LOCAL_REDIS_PORT = 16379
# The de-identification keys of the local stack. They are in this repository, so
# anyone can read them: a service refuses them outside MEDSTREAM_ENV=dev.
DEVELOPMENT_KEYS = (
    "bWVkc3RyZWFtLWxvY2FsLWRldi1kZWlkLWtleS0wMDAwMDA=",
    "bWVkc3RyZWFtLWxvY2FsLWRldi12YXVsdC1rZXktMDAwMDA=",
    # The re-link key pair (X25519): the private half is sha256 of
    # "medstream-local-dev-relink-key", so anyone can tell it is a development value.
    "14Jq+4a7iRtMSzgIL4nf/i/d8dap4B2A1G2EE58t8U4=",
    "TN0DSxRDGs2DEACiR/DltgEo/YdPwDE02YPaiglfHzI=",
)


# MEDSTREAM_ENV_FILE already names the optional .env file, so ``env`` is never read
# from a file.
NOT_FROM_FILES = frozenset({"env"})


class FileSecretsSource(PydanticBaseSettingsSource):
    """``MEDSTREAM_X_FILE=/run/secrets/x`` sets ``X`` to that file's contents (a
    trailing newline dropped). Setting both ``MEDSTREAM_X`` and ``MEDSTREAM_X_FILE`` is
    refused, because which one wins would be a guess."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"MEDSTREAM_{field_name.upper()}"
        path = os.environ.get(f"{variable}_FILE")
        if path is None:
            return None, field_name, False
        if variable in os.environ:
            raise ValueError(f"set {variable} or {variable}_FILE, not both")
        try:
            value = Path(path).read_text().rstrip("\n")
        except OSError as error:
            raise ValueError(
                f"{variable}_FILE names {path}, which cannot be read ({error.strerror})"
            ) from None
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if name in NOT_FROM_FILES:
                continue
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                found[key] = value
        return found


class Settings(BaseSettings):
    """Configuration of a MedStream process. Field ``x`` is read from ``MEDSTREAM_X``."""

    model_config = SettingsConfigDict(
        env_prefix="MEDSTREAM_",
        env_file=os.environ.get("MEDSTREAM_ENV_FILE"),
        extra="ignore",
    )

    # dev: the local stack and the tests (development defaults allowed, missing
    # credentials generated); staging or production: every secret must be set.
    env: str = Field(default="dev", pattern="^(dev|staging|production)$")
    kafka_bootstrap: str = f"127.0.0.1:{LOCAL_KAFKA_PORT}"
    # Every client authenticates with SCRAM-SHA-512 over TLS. SASL_PLAINTEXT (SCRAM
    # without TLS) is a development shortcut, refused outside dev and off loopback.
    kafka_security_protocol: str = Field(default="SASL_SSL", pattern="^(SASL_SSL|SASL_PLAINTEXT)$")
    # The SCRAM user and password; unset in dev: the process's own generated ones.
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    # The CA that signed the brokers' certificates; unset in dev: the local stack's.
    kafka_ca_file: Path | None = None
    # Producer compression of record batches: zstd (the default), lz4, gzip or none. The
    # broker keeps batches as the producer wrote them and checks each one, so the codec
    # costs CPU in every service and in Kafka (bench/e2e `--films`).
    kafka_compression: str = Field(default="zstd", pattern="^(zstd|lz4|gzip|none)$")
    database_url: SecretStr = SecretStr(
        f"postgresql+asyncpg://medstream:medstream@127.0.0.1:{LOCAL_POSTGRES_PORT}/medstream"
    )
    # The owner role runs migrations; services connect as the less privileged role above.
    database_admin_url: SecretStr = SecretStr(
        f"postgresql+asyncpg://medstream_owner:medstream_owner@127.0.0.1:{LOCAL_POSTGRES_PORT}/medstream"
    )
    redis_url: SecretStr = SecretStr(f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0")
    # The Redis ACL user and password; unset in dev: the process's own generated ones.
    redis_username: str | None = None
    redis_password: SecretStr | None = None

    service_name: str = "medstream"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    # The services' event loop: uvloop (libuv; less CPU per message, bench/e2e
    # `--platform`) or the standard library's. uvloop is used only where it installs.
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$")
    state_dir: Path = REPO_ROOT / ".state"
    # Model packages: <registry>/<name>/<version>/, verified against their manifests.
    model_registry: Path = REPO_ROOT / "models"
    # Benchmarks only: the monitoring worker echoes one fixed score instead of running
    # its model, so the pipeline's own overhead is measured alone (bench/e2e).
    worker_null_model: bool = False
    # CPU threads of each process that runs a model (torch's intra-op and inter-op
    # pools, onnxruntime's). Unset: each service's own default, 1 for the monitoring
    # worker (a small GRU, whose threads only wait on each other and spin on cores the
    # other services need) and the libraries' default, a thread per core, for
    # imaging, notes and deid's tagger (large matrix products that use them); see
    # bench/e2e `--platform`. 0: the libraries' default everywhere.
    model_threads: int | None = Field(default=None, ge=0, le=256)
    # Dynamic batching of the model workers; unset means each worker's own default.
    worker_max_batch: int | None = Field(default=None, ge=1, le=1024)
    worker_max_wait_ms: int | None = Field(default=None, ge=0, le=10_000)
    # How long the inbox remembers a message id, and the outbox keeps a sent row, before
    # `medstream db prune` deletes them; never less than the topic's own retention plus
    # a day (medstream.platform.retention). A message id seen again later is new.
    dedup_window_days: float = Field(default=14.0, ge=1.0, le=3650.0)
    # Processes per service that the local stack's supervisor runs, in the same consumer
    # groups (they split the partitions; compose reads the same variable).
    replicas: int = Field(default=1, ge=1, le=6)
    # Port of the Prometheus /metrics endpoint; 0 turns it off (the local stack
    # gives each service its own).
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # Topic defaults for a one-node stack; the 3-node cluster sets 3 and 2.
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)

    # Dead-letter cap: beyond this share of recent messages, or this many in a row,
    # the consumer stops and retries instead of dead-lettering (a bad deploy guard).
    dead_letter_max_ratio: float = Field(default=0.5, gt=0, le=1)
    dead_letter_window: int = Field(default=200, ge=1)
    dead_letter_max_consecutive: int = Field(default=20, ge=1)
    # Seconds the cap holds once tripped; then dead-lettering resumes with a fresh
    # window, so a flood of bad input drains slowly rather than stalling its partitions
    # for good. 0 holds until the service restarts.
    dead_letter_cooldown_s: float = Field(default=300.0, ge=0)
    # Attempts for an unexpected error on one message before it is dead-lettered.
    max_processing_attempts: int = Field(default=3, ge=1)
    # Seconds of CPU-heavy work (parsing, validation, de-identification) one message may
    # take before it is dead-lettered as <stage>.too_costly.
    message_budget_s: float = Field(default=30.0, gt=0, le=600)

    # De-identification. The default keys are for the local stack only: set real ones
    # (32+ random bytes, base64) in any deployment that sees real patients.
    deid_key: SecretStr = SecretStr(DEVELOPMENT_KEYS[0])
    vault_key: SecretStr = SecretStr(DEVELOPMENT_KEYS[1])
    # Key rotation (docs/security.md): the current key's id, stored with every vault
    # row, and "ID:BASE64,..." keys that rows may still be sealed under.
    vault_key_id: str = Field(default="v1", pattern="^[A-Za-z0-9_.-]{1,32}$")
    vault_previous_keys: SecretStr | None = None
    # Patient identities in the vault are sealed to the results service's X25519 key
    # (raw, base64): deid holds only the public half, so it can record identities but
    # never read one back; only results (and the operator) can re-link.
    relink_private_key: SecretStr = SecretStr(DEVELOPMENT_KEYS[2])
    relink_public_key: str = DEVELOPMENT_KEYS[3]
    date_shift_max_days: int = Field(default=365, ge=1, le=3650)
    deid_replacement: str = Field(default="tag", pattern="^(tag|surrogate)$")
    dicom_max_bytes: int = Field(default=16 * 1024 * 1024, ge=16 * 1024 * 1024)

    outbox_batch_size: int = Field(default=200, ge=1)
    outbox_poll_interval_s: float = Field(default=0.2, gt=0)

    # NEWS2 staleness overrides, "PARAMETER=MINUTES,...": how long a charted value is
    # carried forward (defaults: 240 minutes, consciousness 720; docs/monitoring.md).
    # Checked by the monitoring worker and CLI at start (monitoring.news2.stale_limits).
    news2_stale_minutes: str = ""

    # Audit anchors (docs/writeback-and-audit.md): the HMAC key, which PostgreSQL never
    # sees (unset in dev: generated), how often the audit service signs the chain
    # heads, and the append-only file it writes them to (default
    # <state_dir>/audit/anchors.jsonl) besides medstream.audit.anchors.
    audit_anchor_key: SecretStr | None = None
    audit_anchor_interval_s: float = Field(default=60.0, gt=0)
    audit_anchor_path: Path | None = None

    # Gateways (docs/gateways.md): the hospital's own protocols, each acknowledging only
    # what Kafka holds. Ports are the CONTRACT's local defaults; production uses 2575,
    # 104 or 11112, and 443.
    gateway_host: str = "127.0.0.1"
    mllp_port: int = Field(default=12575, ge=0, le=65535)
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    http_port: int = Field(default=18080, ge=0, le=65535)
    dicom_ae_title: str = Field(default="MEDSTREAM", pattern=r"^[ -~]{1,16}$")
    # Calling AE titles whose associations are accepted, comma-separated; every other
    # is rejected and audited. The default names the common test tools' titles.
    dicom_calling_ae_titles: str = "STORESCU,ECHOSCU,PYNETDICOM,MEDSTREAM-DEMO"
    # Concurrent connections per protocol (more wait: TCP backpressure), and how long
    # an idle connection is kept.
    gateway_max_connections: int = Field(default=64, ge=1, le=10_000)
    gateway_idle_timeout_s: float = Field(default=60.0, gt=0)
    # The largest HL7 v2 message over MLLP: each connection may buffer about twice this,
    # so it bounds the gateway's memory (with the connection limit).
    mllp_max_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=31 * 1024 * 1024)
    # How long a message may wait for Kafka's acknowledgement before the sender is told
    # to retry (MLLP AE, DICOM A700, HTTP 503).
    gateway_ack_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # TLS for MLLP (IHE ATNA) and HTTPS: a PEM certificate chain and its key; unset:
    # plain TCP (local stack).
    gateway_tls_cert_file: Path | None = None
    gateway_tls_key_file: Path | None = None
    # SMART Backend Services: registered clients (JSON: client id -> public key PEM and
    # allowed scopes; default <state_dir>/gateway/clients.json), the key that signs
    # access tokens (unset in dev: generated), their lifetime, and the public base URL
    # that client assertions name as their audience (default http://HOST:HTTP_PORT).
    gateway_clients_file: Path | None = None
    gateway_token_key: SecretStr | None = None
    gateway_token_lifetime_s: int = Field(default=300, ge=30, le=3600)
    gateway_public_url: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del file_secret_settings  # replaced by MEDSTREAM_X_FILE
        return (init_settings, env_settings, FileSecretsSource(settings_cls), dotenv_settings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
