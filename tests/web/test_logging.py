"""Log lines: text by default, JSON lines on request, each naming its chat turn."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from actors.chat._context import turn_context
from web import Settings
from web._logging import configure_logging

SESSION = "7d6c1c8e-0000-4000-8000-000000000001"
REQUEST = "7d6c1c8e-0000-4000-8000-000000000002"


@pytest.fixture(name="restore_root")
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def log_some(stream: io.StringIO) -> list[str]:
    log = logging.getLogger("tests.turn")
    log.info("outside")
    with turn_context(SESSION, REQUEST):
        log.info("inside %s", "a turn")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.debug("hidden at INFO")
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("restore_root")
class TestFormats:
    def test_text_is_the_default_and_names_the_turn(self) -> None:
        stream = io.StringIO()
        settings = Settings()
        configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT, stream=stream)
        lines = log_some(stream)
        assert lines[0].endswith("INFO tests.turn: outside")
        assert lines[1].endswith(f"inside a turn [session={SESSION} request={REQUEST}]")
        assert f"failed [session={SESSION} request={REQUEST}]" in lines[2]
        assert "ValueError: boom" in stream.getvalue()
        assert "hidden" not in stream.getvalue()

    def test_json_lines_carry_the_turn(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOG_FORMAT", "JSON")
        monkeypatch.setenv("LOG_LEVEL", "debug")
        settings = Settings()
        stream = io.StringIO()
        configure_logging(settings.LOG_LEVEL, settings.LOG_FORMAT, stream=stream)
        entries = [json.loads(line) for line in log_some(stream)]
        assert [e["message"] for e in entries] == [
            "outside",
            "inside a turn",
            "failed",
            "hidden at INFO",
        ]
        assert entries[0]["session_id"] is None and entries[0]["request_id"] is None
        assert entries[1]["session_id"] == SESSION
        assert entries[1]["request_id"] == REQUEST
        assert entries[1]["level"] == "INFO" and entries[1]["logger"] == "tests.turn"
        assert "ValueError: boom" in entries[2]["exc_info"]
        assert entries[3]["session_id"] is None

    def test_unknown_format_or_level_is_refused(self) -> None:
        with pytest.raises(ValueError, match="LOG_FORMAT"):
            configure_logging("INFO", "xml")
        with pytest.raises(ValueError, match="LOG_LEVEL"):
            configure_logging("LOUD", "text")


@pytest.mark.usefixtures("restore_root")
class TestQuietDependencies:
    def test_the_embedded_database_helper_speaks_only_of_warnings(self) -> None:
        pgserver = logging.getLogger("pgserver")
        before = pgserver.level
        try:
            stream = io.StringIO()
            configure_logging("INFO", "text", stream=stream)
            pgserver.info("running pg_ctl ...")
            pgserver.warning("server log shows a problem")
            assert stream.getvalue().splitlines()[-1].endswith("server log shows a problem")
            assert "pg_ctl" not in stream.getvalue()
            configure_logging("DEBUG", "text", stream=stream)
            pgserver.info("running pg_ctl again")
            assert "pg_ctl again" in stream.getvalue()
        finally:
            pgserver.setLevel(before)
