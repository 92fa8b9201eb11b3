"""Front-end conversations: one `ChatActor` per user and session, under `ChatSupervisor`.

A turn (ENDPOINTS.md §9 "Handling one message") finds or creates the conversation,
stamps the attached files, resolves the provider and config, decrypts the API key,
stores the user's message, invokes the master agent through the `MasterInvoker` port
(its reply comes back as a message; the invoker owns the deadline), stores the reply
and sends one ``agent_response`` frame to every socket subscribed to the session.
Failures are answered with the same frame carrying
``{"response": "<error text>", "agents_trace": [], "is_success": false}``.

Messages of one session run one at a time, in order; one posted during a turn waits.
Meanwhile the actor keeps serving sockets that subscribe or leave. While a turn runs,
`current_session_id` and `current_request_id` name it for log lines. A server stop goes
through `ChatDrain`: every admitted message is answered (its reply, or `SHUTTING_DOWN`
once the deadline has passed) before the sockets close.

Composition: start `chat_supervisor_spec(ChatDeps(...))` in the system, then hand
``ChatsClient(system, fanout=LogFanoutClient(system))`` to web/ (``AppServices.chats``).
"""

from __future__ import annotations

from ._actor import DEFAULT_MASTER_TIMEOUT as DEFAULT_MASTER_TIMEOUT
from ._actor import CancelOutcome as CancelOutcome
from ._actor import CancelTurn as CancelTurn
from ._actor import ChatActor as ChatActor
from ._actor import ChatDeps as ChatDeps
from ._actor import ChatMessage as ChatMessage
from ._actor import PostMessage as PostMessage
from ._actor import Room as Room
from ._actor import Rooms as Rooms
from ._actor import Subscribe as Subscribe
from ._actor import TurnObserver as TurnObserver
from ._actor import Unsubscribe as Unsubscribe
from ._context import current_request_id as current_request_id
from ._context import current_session_id as current_session_id
from ._directory import TurnDirectory as TurnDirectory
from ._directory import TurnStep as TurnStep
from ._drain import SHUTTING_DOWN as SHUTTING_DOWN
from ._drain import ChatDrain as ChatDrain
from ._exceptions import ChatBusyError as ChatBusyError
from ._exceptions import ChatError as ChatError
from ._exceptions import ChatStoppingError as ChatStoppingError
from ._exceptions import ChatUnavailableError as ChatUnavailableError
from ._frames import CANCELLED as CANCELLED
from ._frames import DATABASE_UNAVAILABLE as DATABASE_UNAVAILABLE
from ._frames import INTERRUPTED as INTERRUPTED
from ._frames import ChatInput as ChatInput
from ._frames import Reply as Reply
from ._frames import agent_response_body as agent_response_body
from ._frames import agent_response_frame as agent_response_frame
from ._frames import error_reply as error_reply
from ._frames import master_payload as master_payload
from ._frames import stored_content as stored_content
from ._frames import stored_error as stored_error
from ._journal import TurnEvent as TurnEvent
from ._journal import TurnJournal as TurnJournal
from ._journal import turn_event_frame as turn_event_frame
from ._ports import ApiKeyDecrypter as ApiKeyDecrypter
from ._ports import MasterInvoker as MasterInvoker
from ._relay import TurnRelay as TurnRelay
from ._relay import turn_relay_spec as turn_relay_spec
from ._supervisor import DEFAULT_CHAT_INTENSITY as DEFAULT_CHAT_INTENSITY
from ._supervisor import DEFAULT_QUEUED_MESSAGES as DEFAULT_QUEUED_MESSAGES
from ._supervisor import ChatsClient as ChatsClient
from ._supervisor import ChatSession as ChatSession
from ._supervisor import ChatSupervisor as ChatSupervisor
from ._supervisor import chat_supervisor_spec as chat_supervisor_spec

__all__ = [
    "CANCELLED",
    "DATABASE_UNAVAILABLE",
    "DEFAULT_CHAT_INTENSITY",
    "DEFAULT_MASTER_TIMEOUT",
    "DEFAULT_QUEUED_MESSAGES",
    "INTERRUPTED",
    "SHUTTING_DOWN",
    "ApiKeyDecrypter",
    "CancelOutcome",
    "CancelTurn",
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
    "Rooms",
    "Subscribe",
    "TurnDirectory",
    "TurnEvent",
    "TurnJournal",
    "TurnObserver",
    "TurnRelay",
    "TurnStep",
    "Unsubscribe",
    "agent_response_body",
    "agent_response_frame",
    "chat_supervisor_spec",
    "current_request_id",
    "current_session_id",
    "error_reply",
    "master_payload",
    "stored_content",
    "stored_error",
    "turn_event_frame",
    "turn_relay_spec",
]
