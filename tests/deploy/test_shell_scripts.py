"""The shell scripts stay small enough to read (a long one is split into parts, as
deploy/local/stack.sh is) and parse; stack.sh loads every part it is made of."""

import re
import subprocess
from pathlib import Path

import pytest

from .stack_model import ROOT, STACK_PARTS, STACK_SH, parse_shell_defaults, stack_scripts

MAX_LINES = 400


def shell_scripts() -> list[Path]:
    """Every *.sh of the repository, leaving out hidden directories (.venv, .local, .git)."""
    return sorted(
        path
        for path in ROOT.rglob("*.sh")
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts[:-1])
    )


def test_no_shell_script_is_too_long() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in shell_scripts()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: split them"


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_shell_script_parses(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_stack_sh_sources_each_of_its_parts() -> None:
    sourced = re.findall(r'^source "\$STACK_LIB/([\w.-]+)"$', STACK_SH.read_text(), re.MULTILINE)
    assert sourced[0] == "common.sh", "the shared helpers come first: the parts use them"
    assert sorted(sourced) == sorted(p.name for p in STACK_PARTS.glob("*.sh"))


def test_each_stack_variable_has_its_default_in_one_place() -> None:
    seen: dict[str, list[str]] = {}
    for script in stack_scripts():
        for name in parse_shell_defaults(script.read_text()):
            seen.setdefault(name, []).append(script.name)
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "PGPORT", "REDIS_URL", "SHOP_PG_DATABASES"} <= set(seen)
