"""Services import libs, never another service; libs never import a service.

Services are discovered from the folders under services/, so a new one is checked
without touching this test.
"""

import ast
from pathlib import Path

import pytest

from medstream.paths import REPO_ROOT

SERVICES = sorted(
    p.name for p in (REPO_ROOT / "services").iterdir() if (p / "__init__.py").exists()
)


def imported_roots(folder: Path) -> set[str]:
    roots: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_there_are_services_to_check() -> None:
    assert SERVICES


def test_libs_never_import_a_service() -> None:
    assert not imported_roots(REPO_ROOT / "libs") & set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_another(service: str) -> None:
    others = set(SERVICES) - {service}
    assert not imported_roots(REPO_ROOT / "services" / service) & others


def test_the_check_would_catch_a_violation(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("from medstream_other.app import run\nimport medstream_relay\n")
    assert {"medstream_other", "medstream_relay"} <= imported_roots(tmp_path)


# The floors of libs/medstream (STYLE.md): the platform imports neither the domain
# packages nor the operations code above it.
ABOVE_THE_PLATFORM = {
    "formats", "deid", "imaging", "monitoring", "notes", "writeback", "audit", "models",
    "stack", "supervisor", "demo", "cli", "ops",
}  # fmt: skip
DOMAIN = ("formats", "deid", "imaging", "monitoring", "notes", "writeback", "audit", "models")


def medstream_modules(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] == "medstream" and len(parts) > 1:
                    found.add(parts[1])
            elif isinstance(node, ast.Import):
                found |= {
                    a.name.split(".")[1] for a in node.names if a.name.startswith("medstream.")
                }
    return found


def test_the_platform_imports_nothing_above_it() -> None:
    imported = medstream_modules(REPO_ROOT / "libs" / "medstream" / "platform")
    assert imported, "the check found no imports to judge"
    assert not imported & ABOVE_THE_PLATFORM


@pytest.mark.parametrize("package", DOMAIN)
def test_the_domain_never_imports_the_operations_floor(package: str) -> None:
    """medstream.ops (the gateways) sits above the domain packages: none imports it."""
    assert "ops" not in medstream_modules(REPO_ROOT / "libs" / "medstream" / package)


def test_the_operations_floor_is_checked() -> None:
    imported = medstream_modules(REPO_ROOT / "libs" / "medstream" / "ops")
    assert {"formats", "platform"} & imported or "ingest" in imported
