"""``borderlink --help`` stays instant: listing commands imports no heavy module.

Asserting on imports instead of wall time keeps the test deterministic on a noisy machine; the
measured figure is in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "cryptography", "nacl", "node.daemon", "protocol.envelope", "structlog")


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_every_listed_command_loads_and_has_help() -> None:
    from click.testing import CliRunner

    from cli.main import COMMANDS, cli

    runner = CliRunner()
    for name in COMMANDS:
        res = runner.invoke(cli, [name, "--help"], prog_name="borderlink")
        assert res.exit_code == 0, (name, res.output)
        assert f"borderlink {name} [OPTIONS]" in res.output, res.output
