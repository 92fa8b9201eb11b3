from __future__ import annotations

import subprocess
import sys
import time


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "serve" in out
    assert "migrate" in out


def test_help_imports_neither_the_app_nor_the_database() -> None:
    # `genai-backend --help` must stay instant: the console script imports web.cli, and
    # the web package must not pull in Quart, SQLAlchemy or the actors on the way.
    probe = (
        "import sys\n"
        "from web.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
        "               & {'quart', 'sqlalchemy', 'actors', 'persistence', 'pydantic'})\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    print(f"--help took {time.perf_counter() - started:.3f} s")
    assert out.splitlines()[-1] == "HEAVY ", out
