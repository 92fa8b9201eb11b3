"""Secrets never reach the log table or a socket: values under secret-looking keys are
masked whoever logs them, at any depth of a JSON message and in plain text."""

from __future__ import annotations

import json

import pytest

from actors.registry._redact import MASK, redact

KEY = "sk-proj-0123456789abcdefABCDEF"


def masters_request_log() -> str:
    """The log line the upstream master agent (genai-protocol 1.0.9) sends for each
    invocation: its whole request payload as JSON, decrypted provider key included."""
    payload = {
        "invoked_by": "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be#12",
        "request_payload": {
            "configs": {
                "provider": "openai",
                "model": "gpt-4o",
                "api_key": KEY,
                "temperature": 0.7,
                "max_tokens": 512,
                "max_last_messages": 5,
            },
            "files": [],
            "timestamp": 1764766000.0,
            "user_id": "5f1d3c2e-0000-4000-8000-000000000001",
        },
    }
    return json.dumps(payload)  # as its LoggingManager._convert_message writes it


def test_the_masters_request_log_loses_its_key_and_keeps_the_rest() -> None:
    masked = json.loads(redact(masters_request_log()))
    configs = masked["request_payload"]["configs"]
    assert configs["api_key"] == MASK
    assert configs["max_tokens"] == 512  # "token" in a name is not enough
    assert configs["model"] == "gpt-4o"
    assert masked["invoked_by"].endswith("master_server_be#12")
    assert KEY not in redact(masters_request_log())


@pytest.mark.parametrize(
    "name", ["api_key", "apiKey", "OPENAI_API_KEY", "x-api-key", "password", "client_secret",
             "access_token", "agent_jwt", "Authorization", "private_key"],
)  # fmt: skip
def test_every_secret_name_at_any_depth(name: str) -> None:
    message = json.dumps({"a": [{"b": {name: "s3cr3t-value"}}]})
    assert "s3cr3t-value" not in redact(message)
    assert json.loads(redact(message))["a"][0]["b"][name] == MASK


@pytest.mark.parametrize(
    "text",
    [
        "calling with {'api_key': 's3cr3t-value', 'model': 'm'}",  # a Python repr
        'headers: "Authorization": "Bearer s3cr3t-value"',
        "GET /x?api_key=s3cr3t-value&page=2",
        "sending Authorization: Bearer s3cr3t-value now",
        '{"broken json", "password": "s3cr3t-value"',
        json.dumps({"wrapped": json.dumps({"api_key": "s3cr3t-value"})}),
    ],
)
def test_plain_text_and_nested_serialised_payloads(text: str) -> None:
    assert "s3cr3t-value" not in redact(text)


def test_text_without_secrets_is_returned_as_it_came() -> None:
    for text in ("step 3 of the request", '{"max_tokens": 5}', "tokens used: 12"):
        assert redact(text) is text
