"""Correlated invocations: many calls of a back-end connection on that one connection."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect

from actors.router import (
    CORRELATION_FEATURE,
    FEATURES_HEADER,
    MASTER_SERVER_ML,
    RoutingTable,
    open_router,
)

from ..agents import free_port
from .test_table import BACKEND, KEYS, MASTER, agent, frames, invoker, send

UNREGISTERED = {
    "message_type": "agent_error",
    "error": {"error_message": "Agent has been unregistered", "agent_uuid": MASTER_SERVER_ML},
}


@pytest.fixture(name="table")
def _table() -> RoutingTable:
    return RoutingTable(KEYS, max_frame_bytes=1000)


def invoke(target: str = MASTER_SERVER_ML, **extra: Any) -> dict[str, Any]:
    return {
        "message_type": "agent_invoke",
        "agent_uuid": target,
        "request_payload": {"q": 1},
        "request_metadata": {"request_id": "r", "session_id": "s"},
        **extra,
    }


def reply(invoked_by: str, response: Any = "ok") -> dict[str, Any]:
    return {
        "message_type": "agent_response",
        "response": response,
        "execution_time": 0,
        "invoked_by": invoked_by,
    }


class TestCorrelatedInvoke:
    def test_forwarded_without_the_key_and_answered_with_it(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        out = send(table, backend, invoke(correlation_id="c1"))
        [(to, forwarded)] = out
        # The master sees exactly what it always saw; invoked_by is opaque to it.
        assert to == master
        assert forwarded == {
            "request_payload": {"q": 1},
            "request_metadata": {"request_id": "r", "session_id": "s"},
            "invoked_by": f"{backend}~c1",
        }
        assert table.statistics().pending_invocations == 1
        assert send(table, master, reply(forwarded["invoked_by"])) == [
            (
                backend,
                {
                    "message_type": "agent_response",
                    "response": "ok",
                    "execution_time": 0,
                    "correlation_id": "c1",
                },
            )
        ]
        assert table.statistics().pending_invocations == 0
        # Answered once: a second reply is a stray.
        assert send(table, master, reply(forwarded["invoked_by"])) == []
        assert table.statistics().stray_replies == 1

    def test_many_calls_at_once_each_get_their_reply(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        tokens = {}
        for n in range(50):
            [(_, forwarded)] = send(table, backend, invoke(correlation_id=f"c{n}"))
            tokens[n] = forwarded["invoked_by"]
        assert len(set(tokens.values())) == 50
        for n in reversed(range(50)):
            [(to, answer)] = send(table, master, reply(tokens[n], n))
            assert (to, answer["correlation_id"], answer["response"]) == (backend, f"c{n}", n)

    def test_a_standby_backend_is_answered_on_its_own_connection(self, table: RoutingTable) -> None:
        table.open(BACKEND)
        standby, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        [(_, forwarded)] = send(table, standby, invoke(correlation_id="c"))
        [(to, answer)] = send(table, master, reply(forwarded["invoked_by"]))
        assert (to, answer["correlation_id"]) == (standby, "c")

    def test_refusals_carry_the_correlation_id(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        assert send(table, backend, invoke(correlation_id="c")) == [
            (
                backend,
                {
                    "message_type": "agent_error",
                    "error": {
                        "error_message": "Agent is NOT active",
                        "error_type": "AgentNotActive",
                    },
                    "correlation_id": "c",
                },
            )
        ]
        out = send(table, backend, {"message_type": "agent_invoke", "correlation_id": "d"})
        assert [frame["correlation_id"] for _, frame in out] == ["d", "d"]

    def test_a_correlation_id_in_use_is_refused(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        table.open(MASTER)
        send(table, backend, invoke(correlation_id="c"))
        [(to, refusal)] = send(table, backend, invoke(correlation_id="c"))
        assert to == backend
        assert refusal["message_type"] == "agent_error"
        assert refusal["correlation_id"] == "c"
        assert table.statistics().pending_invocations == 1

    def test_only_the_callee_answers(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        table.open(MASTER)
        other, _ = table.open(agent("a"))
        [(_, forwarded)] = send(table, backend, invoke(correlation_id="c"))
        assert send(table, other, reply(forwarded["invoked_by"])) == []
        assert table.statistics().pending_invocations == 1

    def test_an_oversized_reply_fails_the_call(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        [(_, forwarded)] = send(table, backend, invoke(correlation_id="c"))
        out = send(table, master, reply(forwarded["invoked_by"], "x" * 2000))
        assert [(to, frame.get("correlation_id")) for to, frame in out] == [
            (master, None),
            (backend, "c"),
        ]
        assert table.statistics().pending_invocations == 0


class TestCorrelatedClose:
    def test_callee_gone_fails_each_pending_call(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        for n in range(3):
            send(table, backend, invoke(correlation_id=f"c{n}"))
        out = frames(table.close(master))
        unregister = {
            "request_payload": {"agent_uuid": MASTER_SERVER_ML, "message_type": "agent_unregister"}
        }
        assert out[0] == (backend, unregister)
        assert sorted(out[1:], key=lambda item: item[1]["correlation_id"]) == [
            (backend, {**UNREGISTERED, "correlation_id": f"c{n}"}) for n in range(3)
        ]
        assert table.statistics().pending_invocations == 0

    def test_backend_gone_drops_its_pending_calls(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        [(_, forwarded)] = send(table, backend, invoke(correlation_id="c"))
        assert table.close(backend) == []
        assert table.statistics().pending_invocations == 0
        # The late reply goes nowhere; the master going later owes nothing.
        assert send(table, master, reply(forwarded["invoked_by"])) == []
        assert [d for d in table.close(master) if d.conn_id == backend] == []


class TestOtherClientsUnchanged:
    def test_an_invoke_socket_keeps_the_key_and_its_connection_id(
        self, table: RoutingTable
    ) -> None:
        target, _ = table.open(agent("a"))
        caller, _ = table.open(invoker("c:a"))
        out = send(table, caller, invoke("a", correlation_id="c"))
        # Not a back-end: no extension; the key goes through as any other would.
        assert out == [
            (
                target,
                {
                    "request_payload": {"q": 1},
                    "request_metadata": {"request_id": "r", "session_id": "s"},
                    "correlation_id": "c",
                    "invoked_by": caller,
                },
            )
        ]
        assert send(table, target, reply(caller)) == [
            (caller, {"message_type": "agent_response", "response": "ok", "execution_time": 0})
        ]

    def test_a_backend_call_without_the_key_is_uncorrelated(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        master, _ = table.open(MASTER)
        [(_, forwarded)] = send(table, backend, invoke())
        assert forwarded["invoked_by"] == backend
        [(to, answer)] = send(table, master, reply(backend))
        assert to == backend and "correlation_id" not in answer


class TestHandshake:
    async def test_the_router_names_its_extension(self) -> None:
        async with open_router("127.0.0.1", free_port(), ping_interval=None) as router:
            headers = {"API-KEY": KEYS.master_be}
            async with connect(router.url, additional_headers=headers) as ws:
                assert ws.response is not None
                assert ws.response.headers.get(FEATURES_HEADER) == CORRELATION_FEATURE
