"""`python -m bench --source DIR`: the `flowpods` command it benches runs the other checkout's code, and so do
that command's children (a local run's fork server and workers)."""

import subprocess
from pathlib import Path

import pytest

from bench.run import launcher


def checkout(root: Path, main_py: str) -> Path:
    cli = root / "operator" / "flowpods" / "cli"
    cli.mkdir(parents=True)
    (root / "operator" / "flowpods" / "__init__.py").write_text("")
    (cli / "__init__.py").write_text("")
    (cli / "main.py").write_text(main_py)
    return root


def test_the_launcher_runs_the_other_checkout_and_its_children_inherit_it(tmp_path: Path) -> None:
    # an early build's cli: `main` only (no `entry`), and a child process that imports flowpods again
    source = checkout(tmp_path / "old", (
        "import subprocess, sys\n"
        "def main():\n"
        "    print('old build', sys.argv[1:])\n"
        "    child = 'import flowpods.cli.main as m; print(m.__file__)'\n"
        "    print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout.strip())\n"
        "    return 3\n"
    ))  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([launcher(source, work), "run", "x.yaml"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    said, child = done.stdout.splitlines()
    assert said == "old build ['run', 'x.yaml']"
    assert child == str((source / "operator" / "flowpods" / "cli" / "main.py").resolve())


def test_a_source_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no operator/flowpods/cli/main\.py"):
        launcher(tmp_path, tmp_path)
