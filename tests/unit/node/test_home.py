"""The home directory is private: created 0700, tightened if it already existed, refused if open."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.home import Home
from protocol.errors import BorderlinkError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def initialised(root: Path) -> Home:
    home = Home(root)
    home.create()
    home.keystore.write_text("{}")
    return home


def test_create_makes_a_private_directory(tmp_path: Path) -> None:
    home = Home(tmp_path / "new" / "home")
    home.create()
    assert mode(home.root) == 0o700


def test_create_left_an_existing_0755_home_open(tmp_path: Path) -> None:
    """Bug 5: mkdir(mode=0o700, exist_ok=True) kept an existing 0755 directory as it was."""
    root = tmp_path / "home"
    root.mkdir()
    root.chmod(0o755)
    Home(root).create()
    assert mode(root) == 0o700


def test_create_refuses_a_directory_of_another_user(tmp_path: Path) -> None:
    if os.getuid() == 0:
        root = tmp_path / "theirs"
        root.mkdir(mode=0o755)
        os.chown(root, 65534, 65534)
    else:
        root = Path("/")  # owned by root, and exists
    with pytest.raises(BorderlinkError, match="belongs to another user") as caught:
        Home(root).create()
    assert "\n" not in str(caught.value)
    if os.getuid() == 0:
        assert mode(root) == 0o755  # not made ours


@pytest.mark.parametrize("bits", [0o750, 0o705, 0o755, 0o710], ids=lambda b: f"{b:04o}")
def test_require_refuses_a_home_open_to_group_or_others(tmp_path: Path, bits: int) -> None:
    home = initialised(tmp_path / "home")
    home.root.chmod(bits)
    with pytest.raises(BorderlinkError, match=f"run: chmod 700 {home.root}") as caught:
        home.require()
    assert f"mode {bits:04o}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_require_accepts_a_private_home(tmp_path: Path) -> None:
    home = initialised(tmp_path / "home")
    home.require()
    home.check_private()


def test_require_without_an_identity_says_so_first(tmp_path: Path) -> None:
    root = tmp_path / "open"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    with pytest.raises(BorderlinkError, match="no borderlink identity"):
        Home(root).require()
