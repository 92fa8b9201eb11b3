"""The public surfaces of ``actors.chat`` and ``actors.fanout`` are exactly their ``__all__``."""

from __future__ import annotations

import actors.chat
import actors.fanout


def test_all_names_are_exported_and_public() -> None:
    for module in (actors.chat, actors.fanout):
        for name in module.__all__:
            assert hasattr(module, name), name
            assert not name.startswith("_"), name


def test_public_surface_is_pinned() -> None:
    assert sorted(actors.chat.__all__) == sorted(
        [
            "CANCELLED",
            "DATABASE_UNAVAILABLE",
            "INTERRUPTED",
            "CancelOutcome",
            "CancelTurn",
            "TurnDirectory",
            "TurnEvent",
            "TurnJournal",
            "TurnStep",
            "TurnRelay",
            "Rooms",
            "turn_relay_spec",
            "agent_response_body",
            "stored_content",
            "stored_error",
            "turn_event_frame",
            "DEFAULT_CHAT_INTENSITY",
            "DEFAULT_MASTER_TIMEOUT",
            "DEFAULT_QUEUED_MESSAGES",
            "SHUTTING_DOWN",
            "ApiKeyDecrypter",
            "ChatActor",
            "ChatBusyError",
            "ChatDeps",
            "ChatDrain",
            "ChatError",
            "ChatInput",
            "ChatMessage",
            "ChatSession",
            "ChatStoppingError",
            "ChatSupervisor",
            "ChatUnavailableError",
            "ChatsClient",
            "MasterInvoker",
            "PostMessage",
            "Reply",
            "Subscribe",
            "TurnObserver",
            "Unsubscribe",
            "agent_response_frame",
            "chat_supervisor_spec",
            "current_request_id",
            "current_session_id",
            "error_reply",
            "master_payload",
        ]
    )
    assert sorted(actors.fanout.__all__) == sorted(
        [
            "DEFAULT_OUTBOX_CAPACITY",
            "LogFanout",
            "LogFanoutClient",
            "LogRelay",
            "LogSink",
            "LogsStored",
            "SocketOutbox",
            "SubscribeLogs",
            "Subscriptions",
            "log_relay_spec",
            "UnsubscribeLogs",
            "log_fanout_spec",
            "log_frame",
        ]
    )
