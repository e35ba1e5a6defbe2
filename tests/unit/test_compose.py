"""docker-compose.yml stays true to the code: its services exist, its settings are real."""

import subprocess
import sys
import tomllib
from typing import Any

import yaml
from typer.testing import CliRunner

from medstream.cli import app
from medstream.deployment import SERVICES
from medstream.paths import REPO_ROOT
from medstream.platform.identities import (
    POSTGRES_GRANTS,
    REDIS_USERS,
    postgres_role,
)
from medstream.settings import Settings

# Not MedStream services: the servers, the one-shot migration and the hourly pruning.
INFRASTRUCTURE = {"kafka", "postgres", "redis", "migrate", "maintenance"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def entry_points() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return project["project"]["scripts"]


def test_every_medstream_service_is_in_compose_and_nothing_else() -> None:
    services = set(compose()["services"]) - INFRASTRUCTURE
    assert services == {spec.name for spec in SERVICES}


def test_each_compose_service_runs_an_existing_entry_point() -> None:
    scripts = entry_points()
    by_name = {spec.name: spec for spec in SERVICES}
    for name, service in compose()["services"].items():
        if name in INFRASTRUCTURE:
            continue
        command = service["command"][0]
        assert command == by_name[name].entry_point
        assert command in scripts


def test_compose_environment_names_real_settings() -> None:
    fields = {f"MEDSTREAM_{name.upper()}" for name in Settings.model_fields}
    for service in compose()["services"].values():
        for variable in service.get("environment") or {}:
            if variable.startswith("MEDSTREAM_"):
                assert variable in fields or (
                    variable.endswith("_FILE") and variable.removesuffix("_FILE") in fields
                ), f"{variable} is not a setting"


def test_compose_prunes_the_queues_with_a_real_command() -> None:
    """The maintenance service runs `medstream db prune` with options the CLI has."""
    command = compose()["services"]["maintenance"]["command"]
    assert command[:3] == ["medstream", "db", "prune"]
    help_text = CliRunner().invoke(app, ["db", "prune", "--help"]).output
    for option in command[3:]:
        if option.startswith("--"):
            assert option in help_text


def test_infrastructure_images_have_health_checks() -> None:
    services = compose()["services"]
    for name in ("kafka", "postgres", "redis"):
        assert "healthcheck" in services[name]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_the_contract_settings_exist_with_local_defaults() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap.startswith("127.0.0.1:")
    assert settings.database_url.get_secret_value().startswith("postgresql+asyncpg://")
    assert settings.redis_url.get_secret_value().startswith("redis://127.0.0.1:")


def test_settings_are_read_from_the_medstream_prefix(monkeypatch: Any) -> None:
    monkeypatch.setenv("MEDSTREAM_KAFKA_BOOTSTRAP", "broker:9092")
    assert Settings().kafka_bootstrap == "broker:9092"


def test_every_data_file_of_the_library_ships_in_the_package() -> None:
    """A non-editable install (the Docker image) must carry the policy tables and
    dictionaries, so every non-Python file under libs/medstream is declared."""
    import fnmatch  # noqa: PLC0415

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["medstream"]
    root = REPO_ROOT / "libs" / "medstream"
    for path in root.rglob("*"):
        if (
            path.is_file()
            and path.suffix not in {".py", ".pyc"}
            and "__pycache__" not in path.parts
        ):
            relative = str(path.relative_to(root))
            assert any(fnmatch.fnmatch(relative, g) for g in globs), (
                f"{relative} is not package data"
            )


def test_compose_secrets_are_written_from_the_identity_tables() -> None:
    """infra/compose-secrets matches what compose_secrets.py writes from the tables
    (the Redis ACL file, the database URLs, the role passwords), and every secret a
    service names exists."""
    check = subprocess.run(
        [sys.executable, str(REPO_ROOT / "infra/scripts/compose_secrets.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    declared = compose()["secrets"]
    for name, spec in declared.items():
        assert spec["file"].endswith(f"/{name}")
        assert (REPO_ROOT / "infra/compose-secrets" / name).exists()
    for service in compose()["services"].values():
        assert set(service.get("secrets") or []) <= set(declared)


def test_each_compose_service_gets_only_its_own_secrets() -> None:
    """Least privilege in compose: a secret goes only to the services that hold it, and
    no service gets a secret as a plain environment value."""
    services = compose()["services"]
    holders: dict[str, set[str]] = {}
    for name, service in services.items():
        for secret in service.get("secrets") or []:
            holders.setdefault(secret, set()).add(name)
        for variable, value in (service.get("environment") or {}).items():
            assert "KEY" not in variable or variable.endswith("_FILE"), variable
            assert "dev-" not in str(value), variable  # a credential in plain sight
            assert "://" not in str(value) or "@" not in str(value), variable  # a password URL
    assert holders["relink_private_key"] == {"results"}
    assert holders["vault_key"] == {"deid", "results", "migrate"}
    assert holders["deid_key"] == {"deid"}
    assert holders["database_admin_url"] == {"migrate", "maintenance"}
    assert services["maintenance"]["secrets"] == ["database_admin_url"]
    for spec in SERVICES:
        assert f"database_url_{spec.name}" in services[spec.name]["secrets"]
        url = (REPO_ROOT / "infra/compose-secrets" / f"database_url_{spec.name}").read_text()
        assert url.startswith(f"postgresql+asyncpg://{postgres_role(spec.name)}:")
    for principal in REDIS_USERS:
        if principal in services:
            assert f"redis_{principal}_password" in services[principal]["secrets"]
    roles = (REPO_ROOT / "infra/postgres/init-roles.sql").read_text()
    passwords = (REPO_ROOT / "infra/postgres/init-passwords.sh").read_text()
    for principal in POSTGRES_GRANTS:
        assert f"CREATE ROLE {postgres_role(principal)} LOGIN" in roles
        assert f" {principal} " in passwords or f" {principal};" in passwords
        assert f"pg_{principal}_password" in services["postgres"]["secrets"]


def test_compose_kafka_authenticates_and_authorises_every_client() -> None:
    """The compose broker runs the same security as the local stack: SASL_SSL on every
    listener, the StandardAuthorizer with no access where no ACL says so, and each
    service connects with its own SCRAM password and trusts the CA."""
    secrets_dir = REPO_ROOT / "infra/compose-secrets"
    properties = dict(
        line.split("=", 1)
        for line in (secrets_dir / "kafka_server_properties").read_text().splitlines()
    )
    assert set(properties["listener.security.protocol.map"].split(",")) == {
        "BROKER:SASL_SSL",
        "CONTROLLER:SASL_SSL",
        "EXTERNAL:SASL_SSL",
    }
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    scram = (secrets_dir / "kafka_scram_users").read_text()
    services = compose()["services"]
    assert "kafka_scram_users" in services["kafka"]["secrets"]
    for spec in SERVICES:
        service = services[spec.name]
        assert f"name=medstream-{spec.name}," in scram
        assert service["environment"]["MEDSTREAM_KAFKA_PASSWORD_FILE"] == (
            f"/run/secrets/kafka_{spec.name}_password"
        )
        kafka_secrets = {s for s in service["secrets"] if s.startswith("kafka_")}
        assert kafka_secrets == {f"kafka_{spec.name}_password", "kafka_ca"}, spec.name
    assert compose()["x-medstream-env"]["MEDSTREAM_KAFKA_CA_FILE"] == "/run/secrets/kafka_ca"
