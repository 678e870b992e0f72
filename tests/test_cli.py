"""The one command-line tool: every subcommand's --help runs, the README's commands exist, and the import
structure runs one way (no package imports one above it in the data flow)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
# Lower to higher: each package may import only packages before it (core: the contract everyone shares).
LAYERS = ["core", "training", "export", "app", "studies", "bench", "cli"]
MAY_IMPORT = {"core": set(), "training": {"core"}, "export": {"core", "training"}, "app": {"core"},
              "studies": {"core", "training"}, "bench": {"core", "training", "export", "app"},
              "cli": set(LAYERS) - {"cli"}}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cli", command, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_usage_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0 and "add-item" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2 and "unknown command" in capsys.readouterr().err
    assert main([]) == 2


def test_the_readme_and_docs_name_only_commands_that_exist() -> None:
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    command = re.compile(r"(?:`|bin/|^)scorer ([a-z][a-z-]+)", re.MULTILINE)  # code, not prose ("the scorer on")
    named = {match for path in texts for match in command.findall(path.read_text())}
    assert named, "the README shows no scorer command"
    assert named <= set(COMMANDS), named - set(COMMANDS)


def test_imports_run_one_way() -> None:
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                for name in names:
                    top = name.split(".")[0]
                    if top in LAYERS and top != package and top not in allowed:
                        wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, wrong
