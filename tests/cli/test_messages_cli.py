"""``borderlink template`` and ``validate``, run the way a person at a terminal runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.inprocess import run_main
from tests.integration.harness import env

ROOT = Path(__file__).resolve().parents[2]
TYPES = ["seizure-alert", "risk-profile", "feedback", "retraction"]


@dataclass
class Run:
    code: int
    out: str
    err: str


class Borderlink(Protocol):
    def __call__(self, *args: str, stdin: bytes = b"") -> Run: ...


@pytest.fixture
def borderlink(tmp_path: Path) -> Borderlink:
    """Call the real entry point in-process, as ``borderlink ARGS < stdin``."""

    def run(*args: str, stdin: bytes = b"") -> Run:
        proc = run_main(args, env=env(BORDERLINK_HOME=str(tmp_path / "home")), input=stdin)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("type_name", TYPES)
def test_template_then_validate(borderlink: Borderlink, tmp_path: Path, type_name: str) -> None:
    made = borderlink("template", type_name)
    assert made.code == 0 and made.err == ""
    assert made.out.startswith('{\n  "meta": {\n    "schema_version": 1,')
    assert json.loads(made.out)["meta"]["schema_version"] == 1

    path = write(tmp_path, f"{type_name}.json", made.out)
    checked = borderlink("validate", type_name, path)
    assert (checked.code, checked.err) == (0, "")
    assert checked.out == f"ok: {path} is a valid {type_name} (schema 1)\n"


def test_validate_stdin(borderlink: Borderlink) -> None:
    text = borderlink("template", "feedback").out
    run = borderlink("validate", "feedback", "-", stdin=text.encode())
    assert (run.code, run.out) == (0, "ok: <stdin> is a valid feedback (schema 1)\n")


def test_validate_names_the_field_and_the_rule(borderlink: Borderlink, tmp_path: Path) -> None:
    text = borderlink("template", "seizure-alert").out.replace("MWCU6059784", "MWCU6059785")
    run = borderlink("validate", "seizure-alert", write(tmp_path, "alert.json", text))
    assert run.code == 1
    assert run.out == ""
    assert run.err == (
        "borderlink: error: conveyance.container_number: ISO 6346 check digit is 4, not 5\n"
    )


def test_validate_json_verdicts(borderlink: Borderlink, tmp_path: Path) -> None:
    text = borderlink("template", "retraction").out
    good = borderlink("validate", "retraction", write(tmp_path, "r.json", text), "--json")
    assert good.code == 0
    assert json.loads(good.out) == {"valid": True, "type": "retraction", "path": None, "rule": None}

    bad_text = text.replace('"kind": "correct"', '"kind": "withdraw"')
    bad = borderlink("validate", "retraction", write(tmp_path, "bad.json", bad_text), "--json")
    assert bad.code == 1
    assert json.loads(bad.out) == {
        "valid": False,
        "type": "retraction",
        "path": "replacement",
        "rule": "a withdrawal has no replacement; use kind 'correct'",
    }


def test_validate_wrong_type_for_the_file(borderlink: Borderlink, tmp_path: Path) -> None:
    path = write(tmp_path, "f.json", borderlink("template", "feedback").out)
    run = borderlink("validate", "risk-profile", path)
    assert run.code == 1
    assert run.err == (
        "borderlink: error: refers_to: is not a field here (known fields: meta, title, "
        "category, modality, indicators, risk_level, valid_from, valid_until, rationale, "
        "feedback_requested, related_alerts)\n"
    )


def test_validate_not_json(borderlink: Borderlink, tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "seized 3 kg")
    run = borderlink("validate", "feedback", path)
    assert (run.code, run.err) == (
        1,
        f"borderlink: error: {path} is not valid JSON (line 1, column 1)\n",
    )


def test_unreadable_file_is_one_line(borderlink: Borderlink, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    run = borderlink("validate", "feedback", missing)
    assert run.code == 1
    assert run.err == f"borderlink: error: cannot read {missing}: no such file or directory\n"

    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0")
    run = borderlink("validate", "feedback", str(binary))
    assert (run.code, run.err) == (1, f"borderlink: error: {binary} is not valid UTF-8 (byte 0)\n")


def test_unknown_type_is_a_usage_error(borderlink: Borderlink) -> None:
    run = borderlink("template", "warning")
    assert (run.code, run.err) == (
        2,
        "borderlink: usage: TYPE must be one of seizure-alert, risk-profile, feedback, retraction"
        " (not 'warning') (see 'borderlink template --help')\n",
    )


def test_as_a_real_process(tmp_path: Path) -> None:
    """The one check that needs a process: exit status and streams as a shell sees them, through
    both ways of starting borderlink: ``python -m cli.main`` (as the harness starts nodes) and the
    console script ``pip install`` put next to the interpreter (as ``make install`` users do)."""
    made = subprocess.run(
        [sys.executable, "-m", "cli.main", "template", "seizure-alert"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    bad = made.stdout.replace('"place": "MEBAR"', '"place": "QQBAR"')
    run = subprocess.run(
        [Path(sys.executable).with_name("borderlink"), "validate", "seizure-alert", "-"],
        cwd=ROOT,
        input=bad,
        capture_output=True,
        text=True,
        env={"BORDERLINK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == (
        "borderlink: error: place: UN/LOCODE country 'QQ' is not an ISO 3166-1 code\n"
    )
