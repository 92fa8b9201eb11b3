from __future__ import annotations

import subprocess
import sys


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "serve" in out
    assert "migrate" in out
