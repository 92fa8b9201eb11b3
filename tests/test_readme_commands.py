"""The README's two commands work as typed, on a PEP 668 system Python and on pyenv's.

Each interpreter runs the commands in a copy of the repository (its own ``.uv`` and
``.venv``, so the working tree's environment is left alone), with a fast sub-command in
place of the long-running one: ``--help`` for ``serve``, ``--version`` for ``pytest``.
The first run installs uv from the package index; the rest comes from uv's cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Environments, caches and data: not the project's sources (a running PostgreSQL's
# data directory, with its socket, cannot even be copied).
_SKIP_IN_COPY = {
    ".venv",
    ".uv",
    ".git",
    ".test-cache",
    ".hypothesis",
    ".import_linter_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "__pycache__",
    "var",
    "files",
}


def _readme_commands() -> tuple[str, str]:
    """The serve and test commands of the README's first code block."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    serve = next(line for line in lines if line.endswith("genai-backend serve"))
    test = next(line for line in lines if line.endswith("pytest"))
    return serve, test


def _pyenv_python() -> Path | None:
    """pyenv's current ``python3`` (what ``python3`` runs here), else its newest 3.11+."""
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run([pyenv, "which", "python3"], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            return Path(found.stdout.strip())
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = sorted(root.glob("versions/3.1[1-9]*/bin/python3"))
    return versions[-1] if versions else None


_DEBIAN = Path("/usr/bin/python3")
_PYENV = _pyenv_python()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = _readme_commands()
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in script


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "python",
    [
        pytest.param(
            _DEBIAN,
            id="debian",
            marks=pytest.mark.skipif(
                not (_DEBIAN.exists() and Path("/usr/lib/python3").is_dir()),
                reason="no Debian system Python (/usr/bin/python3) on this machine",
            ),
        ),
        pytest.param(
            _PYENV,
            id="pyenv",
            marks=pytest.mark.skipif(
                _PYENV is None, reason="no pyenv Python ≥ 3.11 under $PYENV_ROOT/versions"
            ),
        ),
    ],
)
def test_the_readme_commands_work_as_typed(python: Path, tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(
        ROOT,
        work,
        ignore=lambda _dir, names: {n for n in names if n in _SKIP_IN_COPY or n.startswith(".uv-")},
    )
    serve, test = _readme_commands()
    # An activated environment elsewhere: uv must neither use it nor warn about it.
    env = {**os.environ, "VIRTUAL_ENV": str(tmp_path / "some-other-venv")}
    for name in ("UV_PROJECT_ENVIRONMENT", "PYTHONPATH"):
        env.pop(name, None)
    for command, fast, expected in (
        (serve, serve + " --help", "usage: genai-backend"),
        (test, test + " --version", "pytest "),
    ):
        assert command.startswith("python3 "), command
        typed = f"{python}{command.removeprefix('python3')}"
        started = time.perf_counter()
        done = subprocess.run(
            ["sh", "-c", fast.replace(command, typed)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
        )
        print(f"{python}: {fast!r} took {time.perf_counter() - started:.1f} s")
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert expected in output, output
        assert "VIRTUAL_ENV" not in output, output
        assert "externally-managed" not in output, output
