"""Model packages and the model registry.

A package is a folder ``<registry>/<name>/<version>/`` holding:
- ``weights.pt``: the state dict;
- ``card.md``: the model card (data, intended use, held-out metrics, limits);
- ``labels.json``: the label map;
- ``preprocessing.json``: everything needed to turn inputs into tensors;
- ``metrics.json``: the held-out evaluation;
- ``manifest.json``: name, version and the SHA-256 of every other file.

A package is verified against its manifest every time it is loaded, so weights that
were changed, truncated or swapped are refused, not served.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_FILES = ("weights.pt", "card.md", "labels.json", "preprocessing.json", "metrics.json")
# Optional: the same model for ONNX Runtime, the faster CPU path where a package has it;
# the vocabulary a notes package finds mentions with.
OPTIONAL_FILES = ("model.onnx", "vocabulary.tsv")


class ModelIntegrityError(RuntimeError):
    """A package's files do not match its manifest."""


@dataclass(frozen=True)
class ModelPackage:
    """A verified model package on disk."""

    name: str
    version: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def checksum(self) -> str:
        """One digest for the whole package: SHA-256 over the manifest's file digests."""
        joined = "".join(f"{k}={v};" for k, v in sorted(self.manifest["sha256"].items()))
        return hashlib.sha256(joined.encode()).hexdigest()

    def json(self, filename: str) -> Any:
        """A JSON file of the package."""
        return json.loads((self.folder / filename).read_text())

    @property
    def card(self) -> str:
        return (self.folder / "card.md").read_text()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, name: str, version: str, extra: dict[str, Any]) -> ModelPackage:
    """Seal a package folder: write its manifest with the digest of every file."""
    missing = [f for f in PACKAGE_FILES if not (folder / f).exists()]
    if missing:
        raise ModelIntegrityError(f"package {folder} lacks {', '.join(missing)}")
    files = [*PACKAGE_FILES, *(f for f in OPTIONAL_FILES if (folder / f).exists())]
    manifest = {
        "name": name,
        "version": version,
        "sha256": {f: _sha256(folder / f) for f in files},
        **extra,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return load_package(folder)


def amend_card(package: ModelPackage, heading: str, text: str) -> ModelPackage:
    """Put a section in a package's card (replacing one with the same ``## heading``)
    and reseal the manifest. Benches use it to add figures that only exist after
    training, such as scores on hand-written sets; the weights are untouched."""
    lines = package.card.rstrip("\n").split("\n")
    title = f"## {heading}"
    if title in lines:
        start = lines.index(title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = []
    else:
        start = len(lines)
    gap = [""] if start and lines[start - 1] else []
    lines[start:start] = [*gap, title, *text.strip("\n").split("\n"), ""]
    (package.folder / "card.md").write_text("\n".join(lines).rstrip("\n") + "\n")
    extra = {k: v for k, v in package.manifest.items() if k not in ("name", "version", "sha256")}
    return write_manifest(package.folder, package.name, package.version, extra)


def load_package(folder: Path) -> ModelPackage:
    """Load and verify a package folder; raise ModelIntegrityError on any mismatch."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise ModelIntegrityError(f"{folder} has no manifest.json; it is not a model package")
    manifest = json.loads(manifest_path.read_text())
    for filename in sorted({*PACKAGE_FILES, *manifest["sha256"]}):
        path = folder / filename
        expected = manifest["sha256"].get(filename)
        if not path.exists() or _sha256(path) != expected:
            raise ModelIntegrityError(
                f"{path} does not match the manifest of {manifest['name']} {manifest['version']}; "
                "retrain it with `medstream models train` or restore the package."
            )
    return ModelPackage(manifest["name"], manifest["version"], folder, manifest)


def registry_packages(registry: Path) -> list[ModelPackage]:
    """Every verified package in the registry folder, by name then version."""
    return [
        load_package(manifest.parent) for manifest in sorted(registry.glob("*/*/manifest.json"))
    ]


def latest(registry: Path, name: str) -> ModelPackage:
    """The highest version of ``name`` in the registry."""
    candidates = [p for p in registry_packages(registry) if p.name == name]
    if not candidates:
        raise ModelIntegrityError(
            f"no package named {name!r} in {registry}; "
            f"train one with `medstream models train {name}`"
        )
    return max(candidates, key=lambda p: tuple(int(x) for x in p.version.split(".")))
