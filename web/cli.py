"""The ``genai-backend`` command line: ``serve``, ``router`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="genai-backend",
        description="GenAI AgentOS back-end: REST API, front-end WebSocket and agent router.",
        epilog="Settings come from the environment and from .env (see README.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser("serve", help="run the server (embedded router and database by default)")
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations to an external database before serving",
    )
    sub.add_parser(
        "router",
        help="run only the agent router, for back-ends started with ROUTER_WS_URL",
        description=(
            "Run only the agent router on ROUTER_HOST:ROUTER_PORT. With a database "
            "(DATABASE_URL or POSTGRES_*) agent tokens are checked against it and the "
            "agents are marked inactive when the router starts and stops; without one "
            "the token's sub is trusted."
        ),
    )
    sub.add_parser("migrate", help="apply database migrations up to head")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    # Where PYTHONDONTWRITEBYTECODE is set (container images, CI), nothing keeps the
    # compiled modules, and every start compiled some 800 of them again: 2.5 s of a warm
    # start. The server's own environment keeps them (where it is writable).
    sys.dont_write_bytecode = False
    # Imported here so that `--help` stays instant.
    from persistence import DatabaseSettings, PersistenceError

    from ._logging import configure_logging
    from ._server import DatabaseBehindError, InsecureSettingsError
    from .settings import Settings

    settings = Settings()
    configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT)
    # Alembic announces its context each time one is opened (the schema check, then the
    # upgrade): keep its "Running upgrade" lines, once each, and drop that chatter.
    logging.getLogger("alembic.runtime.migration").addFilter(_drop_alembic_context_lines)
    db_settings = DatabaseSettings()
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(db_settings))
        if args.command == "router":
            from ._router_server import serve_router

            return asyncio.run(serve_router(settings, db_settings))
        from ._server import serve

        return asyncio.run(serve(settings, db_settings, migrate=args.migrate))
    except Exception as exc:
        # The edge of the program: a start-up refusal arrives wrapped in task groups.
        cause = _unwrap(exc)
        if not isinstance(
            cause, DatabaseBehindError | InsecureSettingsError | PersistenceError | OSError
        ):
            raise
        print(f"genai-backend: {cause}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


_ALEMBIC_CONTEXT_LINES = ("Context impl ", "Will assume ")


def _drop_alembic_context_lines(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_ALEMBIC_CONTEXT_LINES)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _migrate(db_settings: object) -> int:
    from persistence import DatabaseSettings, open_embedded_postgres, upgrade_to_head

    assert isinstance(db_settings, DatabaseSettings)
    url = db_settings.url()
    if url is None:
        async with open_embedded_postgres(db_settings.resolved_pgdata_dir()) as server:
            await upgrade_to_head(server.url())
    else:
        await upgrade_to_head(url)
    print("genai-backend: the database is at the newest revision")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
