"""The `shellquote` filter: an input interpolated into a Shell command stays one literal word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowpods.core.shellquote import shellquote
from flowpods.core.templating import RenderError, render_string

REPO = Path(__file__).resolve().parents[2]
ATTACKS = ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "a'; touch pwned; echo '", "x\ntouch pwned", "-n", ""]


@pytest.mark.parametrize("value", ATTACKS)
def test_the_shell_sees_one_word_whatever_the_value_holds(value: str, tmp_path: Path) -> None:
    command = render_string("printf '%s' {{ inputs.v | shellquote }}", {"inputs": {"v": value}})
    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert result.stdout == value
    assert not (tmp_path / "pwned").exists()


def test_values_that_are_not_text_are_quoted_as_json() -> None:
    assert shellquote({"a": [1, "b c"]}) == '\'{"a":[1,"b c"]}\''
    assert shellquote(42) == "42" and shellquote(True) == "true"


def test_a_nul_character_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="a NUL character cannot be passed to a shell"):
        render_string("echo {{ v | shellquote }}", {"v": "a\x00b"})


def test_the_example_flow_prints_a_hostile_input_instead_of_running_it(tmp_path: Path) -> None:
    hostile = f"x'; touch {tmp_path}/pwned; echo '"
    flowpods = str(Path(sys.executable).parent / "flowpods")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, "COLUMNS": "500"}
    result = subprocess.run([flowpods, "run", str(REPO / "examples" / "shell-quoting.yaml"), "--input",
                             f"name={hostile}"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Hello, {hostile}!" in result.stdout
    assert not (tmp_path / "pwned").exists()
