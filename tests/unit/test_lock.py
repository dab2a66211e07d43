"""The lock check (scripts/lock.py --check): CI refuses, in one line, a lock that was not made
from the pyproject.toml beside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import lock  # noqa: E402


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def edit_pyproject(tree: Path, old: str, new: str) -> None:
    path = tree / "pyproject.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_committed_lock_agrees_with_pyproject() -> None:
    assert lock.check() is None
    proc = subprocess.run([sys.executable, "scripts/lock.py", "--check"], cwd=ROOT)
    assert proc.returncode == 0


def test_every_requirement_is_pinned_exactly_with_hashes() -> None:
    for path in (ROOT / "requirements").glob("*.txt"):
        lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
        starts = [i for i, ln in enumerate(lines) if ln[:1].isalnum()]
        assert starts, f"{path.name} pins nothing"
        for i, j in zip(starts, [*starts[1:], len(lines)], strict=True):
            block = "\n".join(lines[i:j])
            assert lock.PIN.match(block), f"{path.name}: {lines[i]} is not pinned with =="
            assert "--hash=sha256:" in block, f"{path.name}: {lines[i]} has no hash"


def test_a_new_dependency_not_in_the_lock_is_named(tree: Path) -> None:
    edit_pyproject(tree, '"click>=8.1",', '"click>=8.1", "colorama>=0.4",')
    assert lock.check(tree) == (
        "requirements/runtime.txt does not pin colorama, which pyproject.toml asks for; "
        "run 'make lock' and commit requirements/"
    )


def test_a_changed_requirement_is_refused(tree: Path) -> None:
    edit_pyproject(tree, '"msgspec>=0.18"', '"msgspec>=0.19"')
    assert lock.check(tree) == (
        "requirements/runtime.txt was made from another pyproject.toml (dependencies changed "
        "since); run 'make lock' and commit requirements/"
    )


def test_a_missing_lock_is_refused_in_one_line(tree: Path) -> None:
    (tree / "requirements" / "test.txt").unlink()
    assert (
        lock.check(tree)
        == "requirements/test.txt is missing; run 'make lock' and commit requirements/"
    )


def test_the_command_says_one_line_and_exits_1(tree: Path) -> None:
    edit_pyproject(tree, '"pytest>=8",', '"pytest>=9",')
    (tree / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lock.py", tree / "scripts")
    proc = subprocess.run(
        [sys.executable, "scripts/lock.py", "--check"], cwd=tree, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "lock check failed: requirements/test.txt was made from another pyproject.toml "
        "(dependencies changed since); run 'make lock' and commit requirements/\n"
    )


def repin(tree: Path, name: str, version: str) -> str:
    """Pin ``name`` to ``version`` in the tree's runtime.txt by hand; returns the old version."""
    lock_file = tree / "requirements" / "runtime.txt"
    text = lock_file.read_text()
    old = lock._pins(text)[name]
    lock_file.write_text(text.replace(f"\n{name}=={old}", f"\n{name}=={version}"))
    return old


def test_a_pin_outside_the_declared_range_is_refused(tree: Path) -> None:
    repin(tree, "msgspec", "0.17.0")
    assert lock.check(tree) == (
        "requirements/runtime.txt pins msgspec 0.17.0, outside pyproject.toml's 'msgspec>=0.18'; "
        "run 'make lock' and commit requirements/"
    )


def test_runtime_and_test_locks_must_agree(tree: Path) -> None:
    version = repin(tree, "frozenlist", "1.0.0")
    assert lock.check(tree) == (
        f"requirements/runtime.txt pins frozenlist 1.0.0 but requirements/test.txt pins "
        f"{version}; run 'make lock' and commit requirements/"
    )


def test_the_lock_names_no_temporary_file() -> None:
    """uv's "via" notes once named the lock maker's temporary inputs, so every 'make lock'
    rewrote the lock although nothing had changed."""
    for path in (ROOT / "requirements").glob("*.txt"):
        assert "/tmp" not in path.read_text(), path.name
