"""Transcripts of what the CLI does to the files around it: ``init`` makes a home only of a new
or empty directory, ``-o FILE`` outputs are private and never written through a symlink or over a
file without ``--force``, and the passphrase from the environment is gone once read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, cli, cli_json, env, init_home, one_line_error


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- init and the home directory -----------------------------------------------------------------

INIT = ("init", "--name", "bar-pcu", "--unit-type", "PCU", "--country", "ME", "--location", "MEBAR")


def test_regression_init_made_a_shared_directory_private(tmp_path: Path) -> None:
    """A shared 1777 directory given as --home became 0700, locking everyone else out."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses.txt").write_text("notes\n")

    proc = cli(shared, *INIT, check=False)

    one_line_error(proc, 1, f"{shared} is not empty and holds no borderlink identity")
    assert "choose an empty or new directory" in proc.stderr
    assert mode(shared) == 0o1777
    assert sorted(p.name for p in shared.iterdir()) == ["someone-elses.txt"]


def test_init_makes_an_existing_empty_directory_the_home(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    home.mkdir()
    home.chmod(0o755)
    init_home(home, "bar-pcu")
    assert mode(home) == 0o700
    assert cli_json(home, "keys", "show")["name"] == "bar-pcu"


def test_init_leaves_a_directory_of_another_user_alone(tmp_path: Path) -> None:
    if os.getuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        theirs.chmod(0o755)
        os.chown(theirs, 65534, 65534)
    else:
        theirs = Path("/")  # root's, and it exists
    before = mode(theirs)

    proc = cli(theirs, *INIT, check=False)

    one_line_error(proc, 1, f"home {theirs} belongs to another user")
    assert mode(theirs) == before


# -- -o FILE -------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "bar"
    init_home(h, "bar-pcu")
    return h


EXPORTS = [("keys", "export-card"), ("keys", "export-public")]


@pytest.mark.parametrize("command", EXPORTS, ids=" ".join)
def test_output_file_is_created_private(home: Path, tmp_path: Path, command: tuple[str]) -> None:
    out = tmp_path / "out"
    cli(home, *command, "-o", str(out))
    assert mode(out) == 0o600
    assert out.read_text().startswith("-----BEGIN")


@pytest.mark.parametrize("command", EXPORTS, ids=" ".join)
def test_existing_output_file_is_refused_then_replaced_with_force(
    home: Path, tmp_path: Path, command: tuple[str]
) -> None:
    out = tmp_path / "out"
    out.write_text("keep me\n")
    out.chmod(0o644)

    refused = cli(home, *command, "-o", str(out), check=False)
    one_line_error(refused, 1, f"{out} already exists")
    assert "--force" in refused.stderr
    assert out.read_text() == "keep me\n"

    inode = out.stat().st_ino
    cli(home, *command, "--force", "-o", str(out))
    assert out.read_text().startswith("-----BEGIN")
    assert mode(out) == 0o600
    assert out.stat().st_ino != inode  # a new file renamed over the old one, not rewritten
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_output_is_never_written_through_a_symlink(
    home: Path, tmp_path: Path, dangling: bool
) -> None:
    target = tmp_path / "victim"
    if not dangling:
        target.write_text("precious\n")
    link = tmp_path / "card.txt"
    link.symlink_to(target)

    refused = cli(home, "keys", "export-card", "-o", str(link), check=False)
    one_line_error(refused, 1, f"{link} already exists")
    assert target.exists() is not dangling
    assert dangling or target.read_text() == "precious\n"

    cli(home, "keys", "export-card", "--force", "-o", str(link))
    assert not link.is_symlink() and mode(link) == 0o600  # the link itself was replaced
    assert link.read_text().startswith("-----BEGIN BORDERLINK CARD")
    assert target.exists() is not dangling
    assert dangling or target.read_text() == "precious\n"


def test_seal_refuses_an_existing_output_unless_forced(tmp_path: Path) -> None:
    bar, bel = tmp_path / "bar", tmp_path / "bel"
    init_home(bar, "bar-pcu")
    init_home(bel, "belgrade-accu")
    cli(bel, "keys", "export-card", "-o", str(tmp_path / "bel.card"))
    fp = cli_json(bel, "keys", "show")["fingerprint"]
    cli(bar, "peers", "add", str(tmp_path / "bel.card"), "--fingerprint", fp)
    msg = tmp_path / "alert.json"
    msg.write_text(cli(bar, "template", "seizure-alert").stdout)
    sealed = tmp_path / "alert.sealed"
    sealed.write_text("an earlier alert\n")
    seal = ("seal", "--to", "belgrade-accu", "--type", "seizure-alert", str(msg), "-o", str(sealed))

    one_line_error(cli(bar, *seal, check=False), 1, f"{sealed} already exists")
    assert sealed.read_text() == "an earlier alert\n"

    cli(bar, *seal, "--force")
    assert sealed.read_text().startswith("-----BEGIN BORDERLINK MESSAGE-----")
    assert mode(sealed) == 0o600


def test_audit_export_is_private_and_refuses_an_existing_file(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    cli(home, "audit", "export", "-o", str(out))
    assert mode(out) == 0o600
    one_line_error(cli(home, "audit", "export", "-o", str(out), check=False), 1, "already exists")
    cli(home, "audit", "export", "--force", "-o", str(out))
    assert mode(out) == 0o600


# -- the passphrase in the environment -----------------------------------------------------------

AFTER_READING = """
import os, subprocess, sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
child = "import os; print(os.environ.get('BORDERLINK_PASSPHRASE', 'unset'))"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout.strip())
"""


def test_passphrase_from_the_environment_does_not_reach_child_processes(home: Path) -> None:
    """The node signs a checkpoint with the key unlocked from $BORDERLINK_PASSPHRASE (as
    ``serve`` does); a process it starts afterwards does not inherit the passphrase."""
    done = subprocess.run(
        [sys.executable, "-c", AFTER_READING, "--home", str(home), "audit", "checkpoint"],
        capture_output=True,
        text=True,
        env=env(),  # BORDERLINK_PASSPHRASE set
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "unset"
