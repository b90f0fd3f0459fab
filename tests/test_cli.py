import importlib
import subprocess
import sys

import pytest

import pmv
from pmv.cli.main import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert pmv.__version__ in capsys.readouterr().out


def test_help_lists_every_command_group(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert (command.group or command.name) in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.group} {c.name}")
def test_every_command_module_has_configure_and_run(command):
    module = importlib.import_module(command.module)
    assert callable(module.configure) and callable(module.run)


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "pmv", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pmv {pmv.__version__}"
