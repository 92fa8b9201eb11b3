"""Example frames of the AsyncAPI document (each one is checked against its schema)."""

from __future__ import annotations

from typing import Any

SESSION = "0b6f4a53-8d0e-4a43-9d4b-8c1f3a8e2d11"
REQUEST = "5d1c1b7e-3f0a-4c8e-9a4e-2b6d8f0c7a95"
USER = "9a3e2f10-6c1b-4d7a-8e5f-1c2b3d4e5f60"
AGENT = "3f0c2a1e-7b6d-4e5f-9a8b-0c1d2e3f4a5b"
FILE = "55704c5d-1e2f-4a3b-8c9d-0e1f2a3b4c5d"
AT = "2026-12-04T16:50:01.123456"
BE_KEY = "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be"
ML_KEY = "e1adc3d8-fca1-40b2-b90a-7b48290f2d6a::master_server_ml"

# -- front-end socket -----------------------------------------------------------------

CHAT_MESSAGE = {
    "message": "Weather in Paris tomorrow?",
    "llm_name": "my-gpt4o",
    "provider": "openai",
    "files": [FILE],
}
CHAT_MESSAGE_OLDER = {"message": "Weather in Paris tomorrow?", "llm": {"llm_name": "my-gpt4o"}}
CANCEL = {"type": "cancel", "request_id": REQUEST}

_REPLY = {
    "response": "Tomorrow in Paris: 21 °C, sunny.",
    "is_success": True,
    "agents_trace": [
        {
            "id": AGENT,
            "name": "get_weather",
            "type": "genai",
            "input": {"city_name": "Paris"},
            "output": {"t": 21},
            "execution_time": 0.41,
            "is_success": True,
        }
    ],
}
AGENT_RESPONSE = {
    "type": "agent_response",
    "response": {
        "execution_time": 3.2,
        "response": _REPLY,
        "request_id": REQUEST,
        "session_id": SESSION,
        "files": [
            {
                "id": FILE,
                "session_id": SESSION,
                "request_id": REQUEST,
                "original_name": "a.txt",
                "mimetype": "text/plain",
                "internal_id": FILE,
                "internal_name": f"{FILE}.txt",
                "from_agent": False,
                "creator_id": USER,
            }
        ],
    },
}
AGENT_RESPONSE_FAILED = {
    "type": "agent_response",
    "response": {
        "execution_time": 0.0,
        "request_id": REQUEST,
        "session_id": SESSION,
        "files": [],
        "response": {"response": "Turn cancelled", "agents_trace": [], "is_success": False},
    },
}
AGENT_LOG = {
    "type": "agent_log",
    "log": {
        "session_id": SESSION,
        "request_id": REQUEST,
        "log_level": "info",
        "message": "Inside get_weather",
        "creator_id": USER,
        "agent_id": AGENT,
        "created_at": AT,
        "updated_at": AT,
    },
}
ERROR_VALIDATION = {
    "type": "error",
    "error": "Message validation failed",
    "details": [
        {"type": "missing", "loc": ["message"], "msg": "Field required", "input": {"llm_name": "x"}}
    ],
}
ERROR_CANCEL = {"type": "error", "error": "Turn is already finished"}


def _event(seq: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "turn_event",
        "session_id": SESSION,
        "request_id": REQUEST,
        "seq": seq,
        "kind": kind,
        "at": AT,
        "data": data,
    }


TURN_EVENTS = [
    _event(
        1,
        "accepted",
        {
            "message": "Weather in Paris tomorrow?",
            "llm_name": "my-gpt4o",
            "provider": "openai",
            "files": [],
            "queued": False,
        },
    ),
    _event(2, "started", {}),
    _event(3, "master_invoked", {"master": "builtin"}),
    _event(4, "agent_invoked", {"agent_id": AGENT, "agent_name": "get_weather"}),
    _event(
        5, "agent_log", {"agent_id": AGENT, "log_type": "info", "message": "Inside get_weather"}
    ),
    _event(6, "agent_answered", {"agent_id": AGENT, "agent_name": "get_weather"}),
    _event(
        7, "agent_failed", {"agent_id": AGENT, "agent_name": None, "error": "Agent is NOT active"}
    ),
    _event(8, "answered", {"reply": AGENT_RESPONSE}),
    _event(9, "late_reply", {"response": _REPLY}),
]

# -- router socket ---------------------------------------------------------------------

_SCHEMA = {
    "type": "function",
    "function": {
        "name": AGENT,
        "description": "Echoes text",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
}
REGISTER: dict[str, Any] = {
    "message_type": "agent_register",
    "request_payload": {
        "agent_name": "echo_agent",
        "agent_description": "Echoes text",
        "agent_input_schema": _SCHEMA,
    },
}
REGISTER_109 = {
    "message_type": "agent_register",
    "request_payload": {
        "agent_name": "Echoes text",
        "agent_description": "Echoes text",
        "agent_input_schema": _SCHEMA,
    },
}
_META = {"request_id": REQUEST, "session_id": SESSION}
INVOKE = {
    "message_type": "agent_invoke",
    "agent_uuid": AGENT,
    "request_payload": {"text": "hello"},
    "request_metadata": _META,
}
INVOKE_STOP = {
    "message_type": "agent_invoke",
    "agent_uuid": AGENT,
    "request_payload": {
        "error_message": "Agent ID was not registered before",
        "error_type": "AgentGeneralError",
    },
}
_BY = f"{ML_KEY}:{AGENT}#12"
RESPONSE_203 = {
    "response": {"text": "hello"},
    "message_type": "agent_response",
    "execution_time": 0.0128,
    "invoked_by": _BY,
    "response_metadata": _META,
}
RESPONSE_109 = {
    "response": {"text": "hello"},
    "message_type": "agent_response",
    "execution_time": 0.0128,
    "invoked_by": _BY,
}
RESPONSE_FLAT = {
    "text": "m",
    "n": 2,
    "message_type": "agent_response",
    "execution_time": 0.01,
    "invoked_by": _BY,
}
ERROR_203 = {
    "message_type": "agent_error",
    "error": {"error_message": "boom"},
    "execution_time": 0,
    "invoked_by": _BY,
    "response_metadata": _META,
}
LOG_2X = {
    "message_type": "agent_log",
    "log_message": "Inside get_weather",
    "log_level": "info",
    "agent_uuid": AGENT,
    "request_id": REQUEST,
    "session_id": SESSION,
    "invoked_by": _BY,
}
LOG_109 = {
    "message_type": "agent_log",
    "log_message": "Inside get_weather",
    "log_level": "info",
    "agent_uuid": AGENT,
    "request_id": REQUEST,
    "session_id": SESSION,
}
INVOCATION = {"request_payload": {"text": "hello"}, "request_metadata": _META, "invoked_by": _BY}
RESPONSE_OUT = {
    "response": {"text": "hello"},
    "execution_time": 0.0128,
    "response_metadata": _META,
    "message_type": "agent_response",
}
NOT_ACTIVE = {
    "message_type": "agent_error",
    "error": {"error_message": "Agent is NOT active", "error_type": "AgentNotActive"},
}
UNREGISTERED = {
    "message_type": "agent_error",
    "error": {"error_message": "Agent has been unregistered", "agent_uuid": AGENT},
}
INVALID_JSON = {
    "error": {"error_message": "Invalid JSON format", "error_type": "InvalidJSONRequestFormat"}
}
TOKEN_REFUSED = {
    "error": {
        "error_message": "Agent ID was not registered before",
        "error_type": "AgentGeneralError",
        "message_type": "agent_error",
    }
}
FORWARD_REGISTER: dict[str, Any] = {
    "request_payload": {
        **REGISTER["request_payload"],
        "agent_uuid": AGENT,
        "agent_jwt": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "message_type": "agent_register",
    }
}
FORWARD_UNREGISTER: dict[str, Any] = {
    "request_payload": {"agent_uuid": AGENT, "message_type": "agent_unregister"}
}
FORWARD_LOG = {
    "request_payload": {
        "message_type": "agent_log",
        "agent_uuid": AGENT,
        **{k: v for k, v in LOG_2X.items() if k not in ("message_type", "agent_uuid")},
    }
}
