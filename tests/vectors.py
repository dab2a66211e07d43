"""The one helper that finds the public test vectors in ../shared/vectors/ (see its README).

Tests call ``shared_vectors("merkle/inclusion")``; when the folder is absent the test is skipped with
a reason saying where the vectors were looked for, never failed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_VECTORS = ROOT / "docs" / "vectors"


def _shared_root() -> Path:
    env = os.environ.get("BORDERLINK_SHARED_VECTORS")
    return Path(env) if env else ROOT.parent / "shared" / "vectors"


def shared_vectors(sub: str) -> Path:
    """Path of ``../shared/vectors/<sub>``, or skip the calling test when it is not there."""
    path = _shared_root() / sub
    if not path.exists():
        pytest.skip(f"public test vectors not found at {path} (../shared/vectors is absent)")
    return path


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
