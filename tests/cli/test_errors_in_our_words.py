"""Every mistake a person can make at the command line answers in one line of borderlink's own
words, with the documented exit code: never a regex, a traceback or another library's message.

Each case reads like a transcript: the command, then exactly what it prints on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.inprocess import run_main
from tests.integration.harness import env

TLP = "RED, AMBER+STRICT, AMBER, GREEN, CLEAR"
INIT = ["init", "--unit-type", "PCU", "--country", "ME", "--location", "MEBAR"]


def borderlink(tmp_path: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    proc = run_main(args, env=env(BORDERLINK_HOME=str(tmp_path / "home")), input=stdin)
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.returncode, proc.stderr.rstrip("\n")


def alert(tmp_path: Path, **meta: object) -> str:
    code = run_main(["template", "seizure-alert"])
    doc = json.loads(code.stdout)
    doc["meta"].update(meta)
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_name_outside_the_rules_is_explained(tmp_path: Path) -> None:
    assert borderlink(tmp_path, *INIT, "--name", "bär-pcu") == (
        1,
        "borderlink: error: name: must be 1-63 of a-z, 0-9, '.', '_', '-', "
        "starting with a letter or digit",
    )
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_an_unknown_tlp_lists_the_five_labels(tmp_path: Path) -> None:
    path = alert(tmp_path, tlp="PURPLE")
    assert borderlink(tmp_path, "validate", "seizure-alert", path) == (
        1,
        f"borderlink: error: meta.tlp: must be one of {TLP} (not 'PURPLE')",
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (b'{"meta": {"schema_version": 1, "prio', "ends in the middle of a value"),
        (b'{"meta": 1,, }', "is not valid JSON (line 1, column 12)"),
        (b'{"narrative": "caf\xe9"}', "is not valid UTF-8 (byte 18)"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "seal"])
def test_a_broken_file_is_named(tmp_path: Path, content: bytes, says: str, command: str) -> None:
    path = tmp_path / "alert.json"
    path.write_bytes(content)
    args = ["validate", "seizure-alert", str(path)]
    if command == "seal":
        args = ["seal", "--to", "nobody", "--type", "seizure-alert", str(path)]
    assert borderlink(tmp_path, *args) == (1, f"borderlink: error: {path} {says}")


def test_standard_input_is_named_as_such(tmp_path: Path) -> None:
    assert borderlink(tmp_path, "validate", "feedback", "-", stdin=b"\xff") == (
        1,
        "borderlink: error: standard input is not valid UTF-8 (byte 0)",
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["template", "warning"],
            "TYPE must be one of seizure-alert, risk-profile, feedback, retraction (not 'warning')"
            " (see 'borderlink template --help')",
        ),
        (
            ["validate"],
            "TYPE is missing (one of seizure-alert, risk-profile, feedback, retraction)"
            " (see 'borderlink validate --help')",
        ),
        (
            ["send", "--nope"],
            "there is no option --nope; did you mean --to or --type? (see 'borderlink send --help')",
        ),
        (["send", "--to"], "--to needs a value (see 'borderlink send --help')"),
        (["status", "--json=yes"], "--json takes no value (see 'borderlink status --help')"),
        (
            ["audit", "prove", "first"],
            "ENTRY must be a whole number (not 'first') (see 'borderlink audit prove --help')",
        ),
        (
            [*INIT, "--name", "bar-pcu", "--valid-days", "0"],
            "--valid-days must be from 1 to 3650 (not 0) (see 'borderlink init --help')",
        ),
        (
            [*INIT[:2], "ship", "--name", "x"],
            "--unit-type must be one of PCU, ACCU, JAITF, LBCU, coordinator, other (not 'ship')"
            " (see 'borderlink init --help')",
        ),
        (
            ["audit", "prove", "\u0661\u0662"],
            "ENTRY must be a whole number (not '\u0661\u0662') (see 'borderlink audit prove --help')",
        ),
        (
            ["audit", "verify", "--file", ""],
            "--file must not be empty (see 'borderlink audit verify --help')",
        ),
        (
            ["status", "extra"],
            "'extra' is more than this command takes (see 'borderlink status --help')",
        ),
        (
            ["keys", "show", "x"],
            "'x' is more than this command takes (see 'borderlink keys show --help')",
        ),
        (
            ["keys", "bogus"],
            "there is no command 'bogus'; the commands are backup, export-card, export-public,"
            " passphrase, renew, restore, revoke, rotate, show (see 'borderlink keys --help')",
        ),
        (
            ["seal", "--to", "x", "--type", "feedback", "f.json", "-o", "/"],
            "--output '/' is a directory; give a file name (see 'borderlink seal --help')",
        ),
        (
            ["serve", "--listen", "127.0.0.1:99999"],
            "--listen: the port must be 0 to 65535, not 99999 (see 'borderlink serve --help')",
        ),
        (
            ["seal", "--to", "x", "--type", "feedback", "--ttl", "\u202e3d", "f.json"],
            "--ttl '\\u202e3d' is not a duration like 90s, 15m, 12h or 3d"
            " (see 'borderlink seal --help')",
        ),
        (
            ["sned"],
            "there is no command 'sned'; the commands are init, keys, peers, template, validate,"
            " seal, open, serve, send, outbox, inbox, status, audit, dashboard, monitor (see"
            " 'borderlink --help')",
        ),
    ],
)
def test_usage_mistakes(tmp_path: Path, args: list[str], line: str) -> None:
    assert borderlink(tmp_path, *args) == (2, f"borderlink: usage: {line}")


def test_a_home_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert borderlink(tmp_path, "--home", str(tmp_path / "file"), "keys", "show") == (
        2,
        f"borderlink: usage: --home '{tmp_path / 'file'}' is not a directory"
        " (see 'borderlink --help')",
    )


def test_a_number_too_long_for_python_is_refused_in_words(tmp_path: Path) -> None:
    path = tmp_path / "alert.json"
    path.write_text('{"meta": {"schema_version": 1' + "0" * 5000 + "}}")
    assert borderlink(tmp_path, "validate", "seizure-alert", str(path)) == (
        1,
        f"borderlink: error: {path} holds a number too large, or text that is not valid Unicode",
    )


def test_output_that_cannot_be_written(tmp_path: Path) -> None:
    import subprocess
    import sys

    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("/dev/full is not on this system")
    with full.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "template", "feedback"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert (proc.returncode, proc.stderr) == (
        3,
        "borderlink: error: cannot write the output: no space left on the device\n",
    )


def test_our_own_usage_errors_read_like_clicks(tmp_path: Path) -> None:
    from tests.integration.harness import init_home

    init_home(tmp_path / "home", "bar-pcu")
    assert borderlink(tmp_path, "audit", "prove", "99999") == (
        2,
        "borderlink: usage: entry 99999 is not covered by a signed checkpoint yet"
        " (hint: run 'borderlink audit checkpoint' first)",
    )
