"""docker-compose.yml stays true to the code: its services exist, its settings are real."""

import tomllib
from typing import Any

import yaml

from medstream.deployment import SERVICES
from medstream.paths import REPO_ROOT
from medstream.platform.identities import (
    POSTGRES_GRANTS,
    REDIS_USERS,
    postgres_role,
    redis_user,
)
from medstream.settings import Settings

INFRASTRUCTURE = {"kafka", "postgres", "redis", "migrate"}


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
                assert variable in fields, f"{variable} is not a setting"


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


def test_compose_redis_users_are_the_identity_table() -> None:
    """Each principal of REDIS_USERS is a Redis user in compose with the same keys and
    commands, the default user is off, and the services with a user get a password."""
    command = compose()["services"]["redis"]["command"]
    users = [command[i + 1] for i, arg in enumerate(command) if arg == "--user"]
    assert "default off" in users
    for principal, grant in REDIS_USERS.items():
        (line,) = [u for u in users if u.startswith(f"{redis_user(principal)} on ")]
        assert line.endswith(grant.rule("x").split(" ", 3)[3]), line
    services = compose()["services"]
    for principal in REDIS_USERS:
        if principal in services:
            assert "MEDSTREAM_REDIS_PASSWORD" in services[principal]["environment"]


def test_compose_postgres_roles_are_the_identity_table() -> None:
    """Each service connects as its own role; the init scripts create every role of
    POSTGRES_GRANTS and set each one's password."""
    services = compose()["services"]
    for spec in SERVICES:
        url = services[spec.name]["environment"]["MEDSTREAM_DATABASE_URL"]
        assert url.startswith(f"postgresql+asyncpg://{postgres_role(spec.name)}:"), url
    roles = (REPO_ROOT / "infra/postgres/init-roles.sql").read_text()
    passwords = (REPO_ROOT / "infra/postgres/init-passwords.sh").read_text()
    for principal in POSTGRES_GRANTS:
        assert f"CREATE ROLE {postgres_role(principal)} LOGIN" in roles
        assert f" {principal} " in passwords or f" {principal};" in passwords
