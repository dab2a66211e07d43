"""``make demo``'s story, run as a person runs it: scripts/demo.sh with the installed command on
the PATH. It must finish, verify the audit log, and end with commands that can be pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_end_to_end_and_ends_with_pasteable_commands(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "borderlink").exists():
        import pytest

        pytest.skip(f"the borderlink command is not installed beside {sys.executable}")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BORDERLINK_")}
    environ.update(
        PATH=f"{bin_dir}:{environ.get('PATH', '/usr/bin:/bin')}",
        BORDERLINK_BIN=str(bin_dir),
        DEMO_DIR=str(tmp_path / "demo"),
    )
    proc = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert "ok: audit log verified" in out
    tail = out[out.index("To try by hand:") :].splitlines()[1:]
    assert tail[0].strip() == f'export PATH="{bin_dir}:$PATH"'
    assert tail[1].strip() == "export BORDERLINK_PASSPHRASE=demo-only-passphrase"
    homes = {Path(m) for line in tail for m in re.findall(r"--home (\S+)", line)}
    assert homes == {tmp_path / "demo" / n for n in ("bar-pcu", "belgrade-accu", "skopje-coord")}
    # Step 10: the coordinator sees the flow (events of the units, not its own only) and a link.
    step10 = out[out.index("10. Skopje") : out.index("To try by hand:")]
    assert "bar-pcu: delivered seizure-alert to belgrade-accu" in step10
    assert "belgrade-accu: received seizure-alert from bar-pcu" in step10
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/#login=[A-Za-z0-9_-]{43}$", step10, re.M)
    assert all((home / "keystore.json").exists() and (home / "node.db").exists() for home in homes)
