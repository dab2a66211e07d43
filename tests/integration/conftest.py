"""Fixtures that start real node processes and always stop them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NodeProc, make_network, stop_all


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"])
    yield nodes
    stop_all(nodes)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu", "skopje-coord"])
    yield nodes
    stop_all(nodes)
