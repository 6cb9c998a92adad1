"""The command line's own behaviour: help, unknown commands, light start-up."""
import subprocess
import sys

from incentive.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_market_modules_do_not_import_torch():
    code = "import sys, incentive.cli, market, solvers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
