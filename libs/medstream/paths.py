"""Where the checkout keeps its infrastructure files and its runtime state."""

from __future__ import annotations

from pathlib import Path

# libs/medstream/paths.py -> the repository root is two folders above the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
SCHEMAS_DIR = REPO_ROOT / "schemas"
