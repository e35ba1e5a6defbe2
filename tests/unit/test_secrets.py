"""Secrets: development values are refused outside dev, secrets may come from files,
generated development secrets are private, and a service refuses to start."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from medstream.platform import secrets as policy
from medstream.platform.identities import REDIS_USERS, SERVICES, principal_of
from medstream.settings import Settings

STRONG_KEY = base64.b64encode(b"k" * 32).decode()
STRONG = "a-long-random-password-for-tests"


def production(**values: object) -> Settings:
    relink = X25519PrivateKey.generate()
    fields: dict[str, object] = {
        "env": "production",
        "deid_key": STRONG_KEY,
        "vault_key": base64.b64encode(b"v" * 32).decode(),
        "relink_private_key": base64.b64encode(relink.private_bytes_raw()).decode(),
        "relink_public_key": base64.b64encode(relink.public_key().public_bytes_raw()).decode(),
        "database_url": f"postgresql+asyncpg://medstream:{STRONG}@db/medstream",
        "database_admin_url": f"postgresql+asyncpg://medstream_owner:{STRONG}@db/medstream",
        "kafka_password": STRONG,
        "kafka_ca_file": "/run/secrets/kafka-ca.pem",
    }
    fields.update(values)
    return Settings(**fields)  # type: ignore[arg-type]


def test_dev_allows_the_development_defaults() -> None:
    assert policy.problems(Settings(env="dev")) == []


def test_production_with_real_secrets_passes() -> None:
    assert policy.problems(production(service_name="ingestion")) == []  # no Redis user
    assert policy.problems(production(service_name="deid", redis_password=STRONG)) == []


def test_each_service_is_checked_only_for_the_secrets_it_holds() -> None:
    """A worker needs no vault key or owner password, so it is not asked for one."""
    bare = {
        "env": "production",
        "database_url": f"postgresql+asyncpg://medstream_notes:{STRONG}@db/medstream",
        "kafka_password": STRONG,
        "kafka_ca_file": "/run/secrets/kafka-ca.pem",
    }
    assert policy.problems(Settings(service_name="notes", **bare)) == []  # type: ignore[arg-type]
    results = policy.problems(Settings(service_name="results", **bare))  # type: ignore[arg-type]
    assert results == [
        "MEDSTREAM_VAULT_KEY is the development key",
        "MEDSTREAM_RELINK_PRIVATE_KEY is the development key",
    ]
    deid = " ".join(policy.problems(Settings(service_name="deid", **bare)))  # type: ignore[arg-type]
    assert "MEDSTREAM_RELINK_PUBLIC_KEY is the development key" in deid
    assert "RELINK_PRIVATE_KEY" not in deid  # deid never holds the re-link key
    operator = " ".join(policy.problems(Settings(service_name="medstream", **bare)))  # type: ignore[arg-type]
    for variable in ("DEID_KEY", "VAULT_KEY", "DATABASE_ADMIN_URL", "AUDIT_ANCHOR_KEY"):
        assert f"MEDSTREAM_{variable}" in operator


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"service_name": "deid", "deid_key": Settings().deid_key},
            "MEDSTREAM_DEID_KEY is the development key",
        ),
        (
            {"service_name": "results", "vault_key": base64.b64encode(b"short").decode()},
            "MEDSTREAM_VAULT_KEY holds 5",
        ),
        ({"service_name": "results", "vault_key": "not base64!"}, "MEDSTREAM_VAULT_KEY is not"),
        (
            {"database_url": "postgresql+asyncpg://medstream:medstream@db/medstream"},
            "MEDSTREAM_DATABASE_URL uses a development password",
        ),
        (
            {
                "service_name": "medstream",
                "database_admin_url": "postgresql+asyncpg://owner@db/medstream",
            },
            "MEDSTREAM_DATABASE_ADMIN_URL has no password",
        ),
        (
            {"database_url": "postgresql+asyncpg://medstream:short@db/medstream"},
            "under 16 characters",
        ),
        (
            {"service_name": "monitoring", "redis_password": None},
            "MEDSTREAM_REDIS_PASSWORD has no password",
        ),
        (
            {"service_name": "deid", "redis_password": "dev-redis-deid-password"},
            "MEDSTREAM_REDIS_PASSWORD uses a development password",
        ),
    ],
)
def test_production_refuses_development_and_weak_secrets(
    change: dict[str, object], said: str
) -> None:
    settings = production(**{"service_name": "ingestion", "redis_password": STRONG, **change})
    with pytest.raises(policy.InsecureSettings, match=said) as refused:
        policy.enforce(settings)
    assert "medstream:medstream" not in str(refused.value)  # names, never values
    assert Settings().deid_key.get_secret_value() not in str(refused.value)


def test_a_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    (tmp_path / "vault_key").write_text(key + "\n")
    monkeypatch.setenv("MEDSTREAM_VAULT_KEY_FILE", str(tmp_path / "vault_key"))
    assert Settings().vault_key.get_secret_value() == key
    monkeypatch.setenv("MEDSTREAM_VAULT_KEY", key)
    with pytest.raises(ValueError, match="not both"):
        Settings()
    monkeypatch.delenv("MEDSTREAM_VAULT_KEY")
    monkeypatch.setenv("MEDSTREAM_VAULT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot be read"):
        Settings()


def test_development_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    first = policy.development_secret(tmp_path, "redis-deid")
    assert policy.development_secret(tmp_path, "redis-deid") == first
    assert policy.development_secret(tmp_path, "redis-monitoring") != first
    assert len(first) >= 40
    mode = stat.S_IMODE((tmp_path / "secrets" / "redis-deid").stat().st_mode)
    assert mode == 0o600


def test_redis_credentials_follow_the_principal(tmp_path: Path) -> None:
    def credentials(name: str) -> tuple[str, str] | None:
        return policy.redis_credentials(Settings(state_dir=tmp_path, service_name=name))

    assert credentials("deid") is not None
    assert credentials("deid")[0] == "medstream-deid"  # type: ignore[index]
    assert credentials("ingestion") is None  # no Redis rights at all
    assert credentials("medstream")[0] == "medstream-operator"  # type: ignore[index]
    assert principal_of("medstream") == "operator"
    assert set(REDIS_USERS) - {"operator"} <= set(SERVICES)


def test_a_service_refuses_to_start_in_production_with_development_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}
    env["MEDSTREAM_ENV"] = "production"
    env["MEDSTREAM_LOG_FORMAT"] = "console"
    result = subprocess.run(
        [str(Path(os.sys.executable).parent / "medstream-deid")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "MEDSTREAM_ENV=production refuses to start" in output
    assert "MEDSTREAM_DEID_KEY is the development key" in output
    assert Settings().deid_key.get_secret_value() not in output


def test_previous_vault_keys_are_parsed_and_opened_by_key_id() -> None:
    from medstream.deid.vault import VaultCipher, previous_keys  # noqa: PLC0415

    old, new = b"o" * 32, b"n" * 32
    spec = f"v1:{base64.b64encode(old).decode()}"
    assert previous_keys(Settings(vault_previous_keys=spec)) == {"v1": old}
    assert previous_keys(Settings()) == {}
    with pytest.raises(ValueError, match="entry 1 is not ID:BASE64"):
        previous_keys(Settings(vault_previous_keys="no-key-here"))
    sealed = VaultCipher(old, "v1").seal(b"identity", "psn-1")
    rotating = VaultCipher(new, "v2", {"v1": old})
    assert rotating.open(*sealed, "psn-1", "v1") == b"identity"
    assert rotating.key_id == "v2"
    with pytest.raises(InvalidTag):
        VaultCipher(new, "v2").open(*sealed, "psn-1", "v1")


def test_identities_sealed_by_deid_open_only_with_the_relink_key() -> None:
    from medstream.deid.vault import RelinkSeal  # noqa: PLC0415

    settings = Settings()
    deid = RelinkSeal.for_service(settings, "deid")
    results = RelinkSeal.for_service(settings, "results")
    sealed = deid.seal(b'{"ehr_patient_id": "MRN1"}', "psn-1")
    assert b"MRN1" not in sealed
    assert results.open(sealed, "psn-1") == b'{"ehr_patient_id": "MRN1"}'
    with pytest.raises(PermissionError):
        deid.open(sealed, "psn-1")  # deid holds only the public key
    with pytest.raises(InvalidTag):
        results.open(sealed, "psn-2")  # bound to its pseudonym
    assert deid.seal(b"x", "psn-1") != deid.seal(b"x", "psn-1")  # a fresh key each time


def test_the_env_file_variable_still_names_a_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEDSTREAM_ENV_FILE is the .env file, not a file holding MEDSTREAM_ENV."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("MEDSTREAM_LOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("MEDSTREAM_ENV_FILE", str(dotenv))
    assert Settings().env == "dev"
    assert Settings(_env_file=str(dotenv)).log_level == "DEBUG"  # type: ignore[call-arg]


def test_a_relink_key_pair_must_belong_together_and_results_needs_only_its_half() -> None:
    from medstream.deid.vault import RelinkSeal  # noqa: PLC0415

    pair = X25519PrivateKey.generate()
    private = pair.private_bytes_raw()
    public = pair.public_key().public_bytes_raw()
    sealed = RelinkSeal(public).seal(b"identity", "psn-1")
    assert RelinkSeal(None, private).open(sealed, "psn-1") == b"identity"
    other = X25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(ValueError, match="public half"):
        RelinkSeal(other, private)
    from medstream.deid.vault import VaultCipher  # noqa: PLC0415

    with pytest.raises(ValueError, match="current key's id"):
        VaultCipher(b"n" * 32, "v1", {"v1": b"o" * 32})


def test_operator_commands_refuse_development_secrets_outside_dev() -> None:
    policy.require(Settings(), "vault_key", "audit_anchor_key")  # dev: anything goes
    with pytest.raises(policy.InsecureSettings, match="MEDSTREAM_VAULT_KEY is the development"):
        policy.require(Settings(env="production"), "vault_key")
    with pytest.raises(policy.InsecureSettings, match="MEDSTREAM_AUDIT_ANCHOR_KEY is not set"):
        policy.require(Settings(env="production"), "audit_anchor_key")
    with pytest.raises(policy.InsecureSettings, match="RELINK_PUBLIC_KEY is the development"):
        policy.require(Settings(env="production"), "relink_public_key")
    policy.require(production(), "vault_key", "relink_public_key", "database_admin_url")


def test_outside_dev_kafka_needs_a_password_tls_and_a_ca() -> None:
    found = policy.problems(
        production(
            service_name="ingestion",
            kafka_password="dev-kafka-ingestion-password",
            kafka_security_protocol="SASL_PLAINTEXT",
        )
    )
    assert "MEDSTREAM_KAFKA_PASSWORD uses a development password" in found
    assert any("SASL_SSL" in problem for problem in found)
    assert "MEDSTREAM_KAFKA_CA_FILE is not set" in " ".join(
        policy.problems(production(service_name="ingestion", kafka_ca_file=None))
    )


def test_the_benchmarks_null_model_is_refused_outside_dev() -> None:
    found = policy.problems(production(service_name="monitoring", worker_null_model=True))
    assert any("MEDSTREAM_WORKER_NULL_MODEL" in problem for problem in found)


def test_the_gateway_needs_its_token_key_and_a_real_ae_allow_list() -> None:
    problems = " ".join(policy.problems(production(service_name="gateway")))
    assert "MEDSTREAM_GATEWAY_TOKEN_KEY" in problems
    assert "MEDSTREAM_DICOM_CALLING_AE_TITLES" in problems
    assert (
        policy.problems(
            production(
                service_name="gateway",
                gateway_token_key="t" * 48,
                dicom_calling_ae_titles="CR_ROOM_1,PACS",
            )
        )
        == []
    )
