"""Run a command in the project's environment: ``python3 run.py pytest``.

``python3 run.py ARGS`` is ``uv run ARGS`` with uv brought along: the first time, it
installs a pinned uv into a private virtual environment, ``.uv/`` beside this file, made
by this interpreter's own ``venv`` module. That works on a Python that refuses
``pip install`` outside a virtual environment (PEP 668: Debian's and Ubuntu's own
``python3``) as well as on a pyenv, venv or conda one, and leaves the interpreter
untouched. uv then makes ``.venv`` from ``uv.lock`` and runs the command in it.

The command runs with ``VIRTUAL_ENV`` unset: the project's environment is always
``.venv``, so an activated environment elsewhere is not the one to use, and uv would
warn about it on every command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

UV_VERSION = "0.13.9"
HOME = Path(__file__).resolve().parent / ".uv"
_BIN = "Scripts" if os.name == "nt" else "bin"
_EXE = ".exe" if os.name == "nt" else ""


def _uv() -> Path:
    uv = HOME / _BIN / f"uv{_EXE}"
    stamp = HOME / "uv-version"
    if uv.exists() and stamp.exists() and stamp.read_text().strip() == UV_VERSION:
        return uv
    print(f"run.py: installing uv {UV_VERSION} into {HOME} (once)", file=sys.stderr)
    # Built beside and renamed into place, so that two first runs at once do not meet
    # a half-made environment.
    building = HOME.with_name(f".uv-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        venv.EnvBuilder(with_pip=True).create(building)
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(building, ignore_errors=True)
        sys.exit(
            f"run.py: cannot make a virtual environment with {sys.executable} ({exc}); "
            "on Debian or Ubuntu: apt install python3-venv"
        )
    python = building / _BIN / f"python{_EXE}"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"uv=={UV_VERSION}"],
        check=True,
    )
    (building / "uv-version").write_text(UV_VERSION + "\n")
    # Git ignores the directory, as uv does for .venv.
    (building / ".gitignore").write_text("*\n")
    shutil.rmtree(HOME, ignore_errors=True)
    try:
        building.rename(HOME)
    except OSError:
        # Another first run finished first: use its copy.
        shutil.rmtree(building, ignore_errors=True)
    return uv


def main() -> None:
    """Hand the command line to ``uv run``, in place of this process where possible."""
    uv = _uv()
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    argv = [str(uv), "run", *sys.argv[1:]]
    if os.name == "nt":
        sys.exit(subprocess.call(argv, env=env))
    # exec keeps the process id, so a signal to it (Ctrl-C, a process manager's
    # SIGTERM) reaches uv, which passes it on to the command.
    os.execve(uv, argv, env)


if __name__ == "__main__":
    main()
