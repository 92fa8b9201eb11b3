"""The ``genai-backend`` command line: ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="genai-backend",
        description="GenAI AgentOS back-end: REST API, front-end WebSocket and agent router.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser("serve", help="run the server (embedded router and database by default)")
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations to an external database before serving",
    )
    sub.add_parser("migrate", help="apply database migrations up to head")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    raise SystemExit(f"genai-backend: '{args.command}' is not available yet")


if __name__ == "__main__":
    raise SystemExit(main())
