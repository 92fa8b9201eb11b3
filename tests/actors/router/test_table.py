"""Pure state transitions of the routing table and identity extraction (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from actors.router import (
    MASTER_SERVER_BE,
    MASTER_SERVER_ML,
    ApiKeys,
    ClientKind,
    Deliver,
    Identity,
    RoutingTable,
    identify,
)

from .conftest import mint_jwt

KEYS = ApiKeys()
BACKEND = Identity(MASTER_SERVER_BE, ClientKind.BACKEND)
MASTER = Identity(MASTER_SERVER_ML, ClientKind.MASTER)


def agent(agent_id: str) -> Identity:
    return Identity(agent_id, ClientKind.AGENT, agent_jwt=f"jwt-{agent_id}")


def invoker(key: str) -> Identity:
    return Identity(key, ClientKind.INVOKE)


def frames(out: list[Deliver]) -> list[tuple[str, dict[str, Any]]]:
    return [(d.conn_id, json.loads(d.text)) for d in out]


def send(table: RoutingTable, conn_id: str, frame: dict[str, Any]) -> list[Any]:
    return frames(table.receive(conn_id, json.dumps(frame)))


@pytest.fixture(name="table")
def _table() -> RoutingTable:
    return RoutingTable(KEYS, max_frame_bytes=1000)


class TestIdentify:
    def headers(self, **values: str) -> Any:
        lowered = {k.lower().replace("_", "-"): v for k, v in values.items()}
        return lambda name: lowered.get(name.lower())

    def test_api_keys(self) -> None:
        assert identify(self.headers(api_key=KEYS.master_be), KEYS) == BACKEND
        assert identify(self.headers(api_key=KEYS.master_agent), KEYS) == MASTER
        assert identify(self.headers(api_key="other"), KEYS) is None

    def test_agent_jwt_sub_is_read_without_the_secret(self) -> None:
        token = mint_jwt("a1")
        found = identify(self.headers(x_custom_authorization=token), KEYS)
        assert found == Identity("a1", ClientKind.AGENT, agent_jwt=token)

    def test_agent_jwt_sub_is_read_without_a_pyjwt_decode(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The verifier checks the token; reading the claim must not cost a second
        # decode per socket in a storm of thousands.
        decodes: list[str] = []
        decode = jwt.decode

        def counted(token: str, *args: Any, **kwargs: Any) -> Any:
            decodes.append(token)
            return decode(token, *args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counted)
        token = mint_jwt("a1")
        found = identify(self.headers(x_custom_authorization=token), KEYS)
        assert found == Identity("a1", ClientKind.AGENT, agent_jwt=token)
        assert decodes == []

    def test_a_token_that_is_not_a_jwt_with_a_sub_is_the_id(self) -> None:
        deep = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
        no_sub = jwt.encode({"user_id": "u"}, "k" * 32, algorithm="HS256")
        for token in ("a.b.c", "e30.e30.", "!!.e30.x", f"{deep}.e30.x", f"e30.{deep}.x", no_sub):
            found = identify(self.headers(x_custom_authorization=token), KEYS)
            assert found == Identity(token, ClientKind.AGENT, agent_jwt=token)

    def test_non_jwt_value_is_the_id(self) -> None:
        found = identify(self.headers(x_custom_authorization="fake"), KEYS)
        assert found == Identity("fake", ClientKind.AGENT, agent_jwt="fake")

    def test_invoke_key_and_precedence(self) -> None:
        assert identify(self.headers(x_custom_invoke_key="a:b"), KEYS) == invoker("a:b")
        both = self.headers(x_custom_authorization="x", x_custom_invoke_key="a:b")
        assert identify(both, KEYS) == Identity("x", ClientKind.AGENT, agent_jwt="x")
        assert identify(self.headers(), KEYS) is None

    def test_master_ids_need_their_api_key(self) -> None:
        for claimed in (MASTER_SERVER_BE, MASTER_SERVER_ML):
            assert identify(self.headers(x_custom_authorization=mint_jwt(claimed)), KEYS) is None
            assert identify(self.headers(x_custom_invoke_key=claimed), KEYS) is None


class TestRouting:
    def test_invoke_and_response_use_the_connection_id(self, table: RoutingTable) -> None:
        target, _ = table.open(agent("a"))
        one, _ = table.open(invoker("c:a"))
        two, _ = table.open(invoker("c:a"))
        assert one != two
        invoke = {"message_type": "agent_invoke", "agent_uuid": "a", "request_payload": {"x": 1}}
        assert send(table, one, invoke) == [
            (target, {"request_payload": {"x": 1}, "invoked_by": one})
        ]
        send(table, two, invoke)
        assert table.statistics().pending_invocations == 2
        reply = {"message_type": "agent_response", "response": 5, "invoked_by": two}
        assert send(table, target, reply) == [
            (two, {"response": 5, "message_type": "agent_response"})
        ]
        assert table.statistics().pending_invocations == 1

    def test_close_notifies_only_waiting_callers(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        target, _ = table.open(agent("a"))
        waiting, _ = table.open(invoker("c:a"))
        idle, _ = table.open(invoker("d:a"))
        send(
            table,
            waiting,
            {"message_type": "agent_invoke", "agent_uuid": "a", "request_payload": {}},
        )
        assert frames(table.close(target)) == [
            (backend, {"request_payload": {"agent_uuid": "a", "message_type": "agent_unregister"}}),
            (
                waiting,
                {
                    "message_type": "agent_error",
                    "error": {"error_message": "Agent has been unregistered", "agent_uuid": "a"},
                },
            ),
        ]
        assert idle and table.statistics().pending_invocations == 0

    def test_invoke_sockets_and_the_backend_cause_no_unregister(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        temp, _ = table.open(invoker("a:b"))
        assert table.close(temp) == []
        assert table.close(backend) == []

    def test_old_socket_closing_keeps_the_new_one(self, table: RoutingTable) -> None:
        table.open(BACKEND)
        old, _ = table.open(agent("a"))
        new, _ = table.open(agent("a"))
        assert table.close(old) == []
        assert table.conn_id_of("a") == new

    def test_register_is_forwarded_and_replayed(self, table: RoutingTable) -> None:
        conn, _ = table.open(agent("a"))
        register = {"message_type": "agent_register", "request_payload": {"agent_name": "n"}}
        assert send(table, conn, register) == []  # no back-end yet, no reply to the agent
        backend, replayed = table.open(BACKEND)
        expected = {
            "request_payload": {
                "agent_name": "n",
                "agent_uuid": "a",
                "agent_jwt": "jwt-a",
                "message_type": "agent_register",
            }
        }
        assert frames(replayed) == [(backend, expected)]
        assert send(table, conn, register) == [(backend, expected)]
        master, _ = table.open(MASTER)
        assert send(table, master, register) == []

    def test_log_is_forwarded_with_the_connection_client_id(self, table: RoutingTable) -> None:
        backend, _ = table.open(BACKEND)
        conn, _ = table.open(agent("a"))
        log = {
            "message_type": "agent_log",
            "agent_uuid": "spoof",
            "log_message": "m",
            "log_level": "info",
            "request_id": "r",
            "session_id": "s",
            "invoked_by": "i",
        }
        assert send(table, conn, log) == [
            (
                backend,
                {
                    "request_payload": {
                        "message_type": "agent_log",
                        "agent_uuid": "a",
                        "log_message": "m",
                        "log_level": "info",
                        "request_id": "r",
                        "session_id": "s",
                        "invoked_by": "i",
                    }
                },
            )
        ]

    def test_what_agents_send_while_no_backend_listens_reaches_the_next_one_in_order(
        self, table: RoutingTable
    ) -> None:
        # The back-end restarting (a crash of its session) must not lose logs or the
        # leaving of an agent: they wait, in order, ahead of the replayed registrations.
        first, _ = table.open(BACKEND)
        stays, _ = table.open(agent("stays"))
        leaves, _ = table.open(agent("leaves"))
        send(table, stays, {"message_type": "agent_register", "request_payload": {}})
        table.close(first)
        for n in range(3):
            send(table, stays, {"message_type": "agent_log", "log_message": str(n)})
        table.close(leaves)
        assert table.statistics().backend_backlog == 4
        backend, out = table.open(BACKEND)
        received = [(conn, frame["request_payload"]) for conn, frame in frames(out)]
        assert [conn for conn, _ in received] == [backend] * 5
        assert [
            (p["message_type"], p["agent_uuid"], p.get("log_message")) for _, p in received
        ] == [
            ("agent_log", "stays", "0"),
            ("agent_log", "stays", "1"),
            ("agent_log", "stays", "2"),
            ("agent_unregister", "leaves", None),
            ("agent_register", "stays", None),
        ]
        assert table.statistics().backend_backlog == 0
        assert table.close(backend) == []
        _, again = table.open(BACKEND)
        assert [f["request_payload"]["message_type"] for _, f in frames(again)] == [
            "agent_register"
        ]

    def test_the_backlog_is_bounded_in_bytes_and_drops_the_oldest(self) -> None:
        table = RoutingTable(KEYS, backend_backlog=600)
        conn, _ = table.open(agent("a"))
        for n in range(10):
            send(table, conn, {"message_type": "agent_log", "log_message": f"{n:03}"})
        stats = table.statistics()
        assert 0 < stats.backend_backlog < 10
        assert stats.backend_backlog + stats.backlog_dropped == 10
        _, out = table.open(BACKEND)
        logs = [f["request_payload"]["log_message"] for _, f in frames(out)]
        assert logs == [f"{n:03}" for n in range(stats.backlog_dropped, 10)]

    def test_only_the_backend_invokes_the_master(self, table: RoutingTable) -> None:
        master, _ = table.open(MASTER)
        other, _ = table.open(invoker("a:master_server_ml"))
        invoke = {
            "message_type": "agent_invoke",
            "agent_uuid": MASTER_SERVER_ML,
            "request_payload": {},
        }
        [(to, refused)] = send(table, other, invoke)
        assert (to, refused["error"]["error_message"]) == (other, "Agent is NOT active")
        be_temp, _ = table.open(invoker(f"{KEYS.master_be}:master_server_ml"))
        assert send(table, be_temp, invoke) == [
            (master, {"request_payload": {}, "invoked_by": be_temp})
        ]

    def test_backend_error_notice_reaches_the_agent(self, table: RoutingTable) -> None:
        target, _ = table.open(agent("a"))
        be_temp, _ = table.open(invoker(f"{KEYS.master_be}:a"))
        notice = {
            "error_message": "Agent ID was not registered before",
            "error_type": "AgentGeneralError",
        }
        invoke = {"message_type": "agent_invoke", "agent_uuid": "a", "request_payload": notice}
        assert send(table, be_temp, invoke) == [
            (target, {"error": {**notice, "message_type": "agent_error"}})
        ]

    @pytest.mark.parametrize("data", ["[" * 100_000, b'{"a":' * 50_000])
    def test_absurdly_nested_frames_get_error_frames(
        self, table: RoutingTable, data: str | bytes
    ) -> None:
        conn, _ = table.open(invoker("a:b"))
        [(to, frame)] = frames(table.receive(conn, data))
        assert to == conn
        assert frame["error"]["error_type"] == "InvalidJSONRequestFormat"

    def test_bad_frames_get_error_frames(self, table: RoutingTable) -> None:
        conn, _ = table.open(invoker("a:b"))
        assert frames(table.receive(conn, b"[1]")) == [
            (
                conn,
                {
                    "error": {
                        "error_message": "Invalid JSON format",
                        "error_type": "InvalidJSONRequestFormat",
                    }
                },
            )
        ]
        [(_, unexpected)] = send(table, conn, {"message_type": "ml_invoke"})
        assert unexpected["error"]["error_type"] == "AgentGeneralError"
        assert unexpected["error"]["error_message"].startswith("Unexpected exception: {")
        missing = send(table, conn, {"message_type": "agent_invoke"})
        assert [f["error"]["error_type"] for _, f in missing] == [
            "NoRequestPayload",
            "AgentNotActive",
        ]

    def test_oversize_reply_fails_its_caller(self, table: RoutingTable) -> None:
        target, _ = table.open(agent("a"))
        caller, _ = table.open(invoker("c:a"))
        send(
            table,
            caller,
            {"message_type": "agent_invoke", "agent_uuid": "a", "request_payload": {}},
        )
        big = {"message_type": "agent_response", "response": "x" * 2000, "invoked_by": caller}
        [(to_sender, refused), (to_caller, failed)] = send(table, target, big)
        assert (to_sender, to_caller) == (target, caller)
        assert refused["error"]["error_type"] == "InvalidJSONRequestFormat"
        assert failed["message_type"] == "agent_error"
        assert table.statistics().pending_invocations == 0
        assert table.statistics().refused_frames == 1
