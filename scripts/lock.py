"""The dependency lock: make it (``make lock``) and check it against pyproject.toml (``--check``).

Every install path (``make demo``, ``make test``, ``.ci/run``) installs ``requirements/*.txt`` with
``pip --require-hashes --no-deps`` and then the project itself without build isolation, so a fresh
machine gets exactly the versions and files this lock names, transitive and build dependencies
included. The lock is made by uv (``uv pip compile --universal --generate-hashes``) because it
resolves once for every Python >= 3.11 and platform; uv itself is pinned, with hashes, in
``requirements/tools.txt``.

Each lock file starts with a digest of what pyproject.toml asks for (runtime and test
dependencies, build requirements, Python version). ``--check`` recomputes it with the standard
library alone, so CI can refuse a stale lock in one line before installing anything.

    python3 scripts/lock.py            # refresh requirements/*.txt (keeps current pins)
    python3 scripts/lock.py --upgrade  # move every pin to the newest allowed release
    python3 scripts/lock.py --check    # exit 1, one line, when pyproject.toml and the lock disagree
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements"
# (lock file, pyproject extras it holds)
LOCKS = {"runtime.txt": (), "test.txt": ("test",)}
DIGEST_LINE = "# pyproject-digest: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(root: Path = ROOT) -> dict[str, object]:
    return tomllib.loads((root / "pyproject.toml").read_text())


def _inputs(doc: dict[str, object], extras: tuple[str, ...]) -> list[str]:
    """What one lock file is made from: the requirement strings, build requirements included."""
    project = doc["project"]
    build = doc["build-system"]
    assert isinstance(project, dict) and isinstance(build, dict)
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {})[extra]
    return reqs + list(build["requires"])


def digest(doc: dict[str, object], extras: tuple[str, ...]) -> str:
    project = doc["project"]
    assert isinstance(project, dict)
    material = {
        "requires-python": project.get("requires-python"),
        "requirements": sorted(_inputs(doc, extras)),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _specifier_check() -> object | None:
    """packaging's Requirement, from pip's own copy when nothing else is installed (this runs
    before the venv exists); None if neither is there, and then versions go unchecked."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        try:
            from pip._vendor.packaging.requirements import Requirement
        except ImportError:
            return None
    return Requirement


def _pins(text: str) -> dict[str, str]:
    return {_normal(m[1]): m[2] for m in PIN.finditer(text)}


def check(root: Path = ROOT) -> str | None:
    """None when every lock file was made from the pyproject.toml here, else the one-line reason."""
    doc = _project(root)
    requirement = _specifier_check()
    texts = {}
    for filename, extras in LOCKS.items():
        path = root / "requirements" / filename
        rel = path.relative_to(root)
        if not path.exists():
            return f"{rel} is missing; run 'make lock' and commit requirements/"
        text = path.read_text()
        recorded = next(
            (
                ln[len(DIGEST_LINE) :].strip()
                for ln in text.splitlines()
                if ln.startswith(DIGEST_LINE)
            ),
            None,
        )
        texts[filename] = text
        pinned = _pins(text)
        for req in _inputs(doc, extras):
            name = NAME.match(req)
            if name and _normal(name[1]) not in pinned:
                return (
                    f"{rel} does not pin {name[1]}, which pyproject.toml asks for; "
                    "run 'make lock' and commit requirements/"
                )
            if name and requirement is not None:
                spec = requirement(req).specifier  # type: ignore[operator]
                version = pinned[_normal(name[1])]
                if not spec.contains(version, prereleases=True):
                    return (
                        f"{rel} pins {name[1]} {version}, outside pyproject.toml's "
                        f"'{req}'; run 'make lock' and commit requirements/"
                    )
        if recorded != digest(doc, extras):
            return (
                f"{rel} was made from another pyproject.toml (dependencies changed since); "
                "run 'make lock' and commit requirements/"
            )
        if "--hash=sha256:" not in text:
            return f"{rel} carries no hashes; run 'make lock' and commit requirements/"
    test_pins = _pins(texts["test.txt"])
    for name, version in _pins(texts["runtime.txt"]).items():
        if test_pins.get(name) != version:
            return (
                f"requirements/runtime.txt pins {name} {version} but requirements/test.txt "
                f"pins {test_pins.get(name, 'nothing')}; run 'make lock' and commit requirements/"
            )
    return None


def _compile(
    uv: str,
    sources: list[Path],
    out: Path,
    *,
    extras: tuple[str, ...],
    upgrade: bool,
    constraints: Path | None,
) -> None:
    cmd = [uv, "pip", "compile", "--quiet", "--universal", "--generate-hashes", "--no-header"]
    cmd += ["--python-version", "3.11", "--output-file", str(out)]
    cmd += [arg for extra in extras for arg in ("--extra", extra)]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    if upgrade:
        cmd.append("--upgrade")
    subprocess.run([*cmd, *map(str, sources)], check=True, cwd=ROOT)


def lock(uv: str, *, upgrade: bool) -> None:
    """test.txt first; runtime.txt is then resolved within test.txt's pins, so the two agree."""
    doc = _project()
    build = doc["build-system"]
    assert isinstance(build, dict)
    REQUIREMENTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build_in = Path(tmp) / "build-system.in"
        build_in.write_text("\n".join(build["requires"]) + "\n")
        pins = Path(tmp) / "test-pins.txt"
        for filename, extras in sorted(LOCKS.items(), key=lambda kv: -len(kv[1])):
            out = REQUIREMENTS / filename
            constraints = None
            if not extras:
                test_lock = (REQUIREMENTS / "test.txt").read_text()
                pins.write_text("".join(f"{m[1]}=={m[2]}\n" for m in PIN.finditer(test_lock)))
                constraints = pins
            _compile(
                uv,
                [PYPROJECT, build_in],
                out,
                extras=extras,
                upgrade=upgrade and bool(extras),
                constraints=constraints,
            )
            made_from = "pyproject.toml" + (f" with extras {','.join(extras)}" if extras else "")
            out.write_text(
                "# The lock, made by 'make lock' (scripts/lock.py) from "
                f"{made_from}; do not edit by hand.\n"
                "# Installed with pip --require-hashes --no-deps by make demo, make test, .ci/run.\n"
                f"{DIGEST_LINE}{digest(doc, extras)}\n" + out.read_text().replace(f"{tmp}/", "")
                # uv's "via" notes name the temporary inputs: keep the lock the same every run
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the lock; change nothing")
    parser.add_argument("--upgrade", action="store_true", help="move pins to the newest releases")
    parser.add_argument(
        "--uv", default="uv", help="the uv executable (make lock passes the pinned one)"
    )
    args = parser.parse_args(argv)
    if args.check:
        reason = check()
        if reason:
            print(f"lock check failed: {reason}", file=sys.stderr)
            return 1
        return 0
    lock(args.uv, upgrade=args.upgrade)
    reason = check()
    if reason:
        print(f"lock check failed after locking: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
