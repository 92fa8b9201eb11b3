"""Hostile clients on the HTTP face: nothing one client sends takes the service down.

Values PostgreSQL or the response encoder cannot hold (NUL, a lone surrogate, NaN and
infinities, JSON nested past 254 levels) are fired at every route of the endpoint
table, in JSON bodies, query strings, paths and forms, as the owner of the objects:
no answer is a 5xx and the database is unchanged. On ``/frontend/ws`` such a message
is refused with its one ``agent_response`` frame and never reaches the chat actor, so a
crowd of sockets sending it costs the supervision tree no restart. Logins are throttled
per username and per address, and a form of many fields is refused before it is parsed.
Downloads stream from disk: clients that stop reading hold no whole file and are cut
off after the send timeout. Answers carry security headers, CORS never allows ``null``,
the ``Server`` header names no version, handshakes waiting for their token check are
capped, and statement parameters never reach the logs.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from quart.testing import QuartClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from persistence import ChatMessage, create_engine
from web import Settings, create_app
from web._throttle import LoginThrottle, ThrottleLimits
from web.blueprints.ws import TOO_MANY_HANDSHAKES, UNSTORABLE

from ..web.conftest import PASSWORD, Users
from .endpoints import PROBED, Endpoint, Probe
from .live import Live, open_live
from .world import World, dump

DEEP = 300
# JSON fragments: each is a value the server must refuse wherever it appears.
FRAGMENTS: dict[str, str] = {
    "nul": '"a\\u0000b"',
    "surrogate": '"a\\ud800b"',
    "nan": "NaN",
    "infinity": "1e999",
    "deep-array": "[" * DEEP + "]" * DEEP,
    "deep-object": '{"a":' * DEEP + "1" + "}" * DEEP,
    "nul-key": '{"a\\u0000b": 1}',
}
# Percent-encoded text for query strings, paths and forms.
ENCODED: dict[str, str] = {"nul": "a%00b", "surrogate": "a%ED%A0%80b", "latin1": "a%FFb"}


def _json_variants(body: Any) -> list[tuple[str, str]]:
    """Return ``(name, raw JSON)`` pairs: ``body`` with one hostile value each."""
    if not isinstance(body, dict):
        return [(name, fragment) for name, fragment in FRAGMENTS.items()]
    marker = "\x01hostile\x01"
    variants: list[tuple[str, str]] = []
    for key in body:
        for shape in ("{0}", '{{"k": {0}}}', "[{0}]"):
            for name, fragment in FRAGMENTS.items():
                raw = json.dumps({**body, key: marker}).replace(
                    json.dumps(marker), shape.format(fragment)
                )
                variants.append((f"{key}={shape.format(name)}", raw))
    return variants


def _query_string(query: dict[str, str], key: str, encoded: str) -> bytes:
    parts = [f"{k}={encoded if k == key else v}" for k, v in query.items()]
    return "&".join(parts).encode()


def _path_variants(path: str) -> list[tuple[str, str]]:
    """The path with each of its last segments replaced by hostile text."""
    segments = path.split("/")
    variants: list[tuple[str, str]] = []
    for index in range(2, len(segments)):
        if segments[index] in {"api", ""}:
            continue
        for name, encoded in ENCODED.items():
            changed = [*segments[:index], encoded, *segments[index + 1 :]]
            variants.append((f"path[{index}]={name}", "/".join(changed)))
    return variants


async def _fire(
    client: QuartClient, endpoint: Endpoint, probe: Probe, headers: dict[str, str]
) -> list[tuple[str, int, str]]:
    """Send every hostile variant of ``probe``; return ``(variant, status, body)``."""
    method = endpoint.method
    answers: list[tuple[str, int, str]] = []

    async def send(name: str, path: str, query_string: bytes = b"", **kwargs: Any) -> None:
        kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
        if query_string:
            # Raw, so that percent-encoded bytes arrive as the client wrote them.
            path = f"{path}?{query_string.decode()}"
        response = await client.open(path, method=method, **kwargs)
        text = (await response.get_data()).decode("utf-8", "replace")
        answers.append((name, response.status_code, text[:300]))

    query = b"&".join(f"{k}={v}".encode() for k, v in (probe.query or {}).items())
    json_headers = {"Content-Type": "application/json"}
    if probe.json is not None:
        for name, raw in _json_variants(probe.json):
            await send(
                f"json {name}", probe.path, data=raw, headers=json_headers, query_string=query
            )
    for key in probe.query or {}:
        for name, encoded in ENCODED.items():
            qs = _query_string(probe.query or {}, key, encoded)
            extra: dict[str, Any] = {}
            if probe.json is not None:
                extra = {"data": json.dumps(probe.json), "headers": json_headers}
            await send(f"query {key}={name}", probe.path, query_string=qs, **extra)
    if probe.form is not None:
        for key in probe.form:
            for name, encoded in ENCODED.items():
                raw_form = "&".join(
                    f"{k}={encoded if k == key else v}" for k, v in probe.form.items()
                )
                await send(
                    f"form {key}={name}",
                    probe.path,
                    data=raw_form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
    for name, path in _path_variants(probe.path):
        extra = {}
        if probe.json is not None:
            extra = {"data": json.dumps(probe.json), "headers": json_headers}
        await send(name, path, query_string=query, **extra)
    return answers


class TestHostileValues:
    async def test_no_route_answers_5xx_or_stores_a_hostile_value(
        self,
        client: QuartClient,
        world: World,
        sessionmaker: async_sessionmaker[AsyncSession],
        subtests: pytest.Subtests,
    ) -> None:
        alice = world.alice
        before = await dump(sessionmaker)
        total = 0
        for endpoint in PROBED:
            assert endpoint.probe is not None
            # As the owner, on her own objects: the request reaches the database.
            probe = endpoint.own(alice) if endpoint.own else endpoint.probe(alice, alice)
            headers = alice.user.headers
            with subtests.test(msg=endpoint.id):
                answers = await _fire(client, endpoint, probe, headers)
                total += len(answers)
                failed = [answer for answer in answers if answer[1] >= 500]
                assert failed == []
                if probe.json is not None:
                    accepted = [a for a in answers if a[0].startswith("json") and a[1] < 400]
                    assert accepted == []
        after = await dump(sessionmaker)
        changed = {
            table: {
                key
                for key in set(before[table]) | set(after[table])
                if before[table].get(key) != after[table].get(key)
            }
            for table in before
        }
        assert {t: keys for t, keys in changed.items() if keys} == {}
        print(f"hostile variants sent: {total}")
        # Her lists still answer.
        for path in ("/api/agents/", "/api/agentflows/", "/api/llm/model/configs", "/api/chats"):
            response = await client.get(path, headers=alice.user.headers)
            assert response.status_code == 200, path


@pytest.fixture(name="live")
async def _live(
    tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Live]:
    # ``sessionmaker`` empties the tables once the test is over.
    async with open_live(tmp_path, database_url) as live:
        yield live


async def _recv_json(ws: ClientConnection) -> Any:
    with anyio.fail_after(10):
        return json.loads(await ws.recv())


def _tree(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("children", []) for n in _tree(child))]


async def _stored_messages(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(ChatMessage))
    return int(count or 0)


UNSTORABLE_MESSAGES = {
    "nul in message": '{"message": "a\\u0000b", "llm_name": "c"}',
    "nul in llm_name": '{"message": "hi", "llm_name": "c\\u0000"}',
    "nul in provider": '{"message": "hi", "llm_name": "c", "provider": "p\\u0000"}',
    "nul in the older llm": '{"message": "hi", "llm": {"llm_name": "c\\u0000"}}',
}
NOT_MESSAGES = {
    "raw nul in message": '{"message": "a\u0000b", "llm_name": "c"}',
    "surrogate": '{"message": "a\\ud800b", "llm_name": "c"}',
    "nan": '{"message": NaN, "llm_name": "c"}',
    "infinity": '{"message": 1e999, "llm_name": "c"}',
    "deep": '{"message": "hi", "llm_name": "c", "llm": ' + "[" * DEEP + "]" * DEEP + "}",
}


class TestFrontendSocket:
    async def test_an_unstorable_message_gets_one_refusal_and_is_not_stored(
        self, live: Live, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await live.login()
        async with live.chat(token) as ws:
            for name, frame in UNSTORABLE_MESSAGES.items():
                await ws.send(frame)
                reply = await _recv_json(ws)
                assert reply["type"] == "agent_response", (name, reply)
                assert reply["response"]["response"] == {
                    "response": UNSTORABLE,
                    "agents_trace": [],
                    "is_success": False,
                }, name
            for name, frame in NOT_MESSAGES.items():
                await ws.send(frame)
                reply = await _recv_json(ws)
                assert reply["type"] in {"agent_response", "error"}, (name, reply)
                if reply["type"] == "agent_response":
                    assert reply["response"]["response"]["is_success"] is False, (name, reply)
            # Exactly one frame each: the next frame answers the next message.
            await ws.send('{"probe": true}')
            assert (await _recv_json(ws))["details"][0]["input"] == {"probe": True}
        assert await _stored_messages(sessionmaker) == 0

    async def test_twenty_sockets_sending_nul_cost_no_restart(self, live: Live) -> None:
        sockets, messages = 20, 5
        _, token = await live.login()
        tokens = [token, *[(await live.login())[1] for _ in range(sockets - 1)]]
        refused = 0

        async def hammer(user_token: str) -> None:
            nonlocal refused
            async with live.chat(user_token, str(uuid.uuid4())) as ws:
                for _ in range(messages):
                    await ws.send(UNSTORABLE_MESSAGES["nul in message"])
                for _ in range(messages):
                    reply = await _recv_json(ws)
                    assert reply["response"]["response"]["response"] == UNSTORABLE
                    refused += 1

        async with anyio.create_task_group() as tg:
            for user_token in tokens:
                tg.start_soon(hammer, user_token)
        assert refused == sockets * messages
        async with live.http() as http:
            ready = await http.get("/health/ready")
            assert ready.status_code == 200, ready.text
            body = (await http.get("/health")).json()
        nodes = _tree(body["tree"])
        assert {n["path"]: n["restarts"] for n in nodes if n["restarts"]} == {}
        assert [n["path"] for n in nodes if n["state"] == "failed"] == []


LOGIN = "/api/login/access-token"
PER_USER, PER_ADDRESS = 3, 6


@pytest.fixture(name="throttled")
def _throttled(tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession]) -> QuartClient:
    settings = Settings(
        BCRYPT_ROUNDS=4,
        FILES_DIR=tmp_path / "files",
        LOGIN_FAILURES_PER_USER=PER_USER,
        LOGIN_FAILURES_PER_ADDRESS=PER_ADDRESS,
        MAX_FORM_FIELDS=16,
    )
    return create_app(settings, sessionmaker).test_client()


async def _login(client: QuartClient, username: str, password: str) -> Any:
    return await client.post(LOGIN, form={"username": username, "password": password})


class TestLogin:
    async def test_repeated_failures_for_a_user_are_429_with_retry_after(
        self, throttled: QuartClient
    ) -> None:
        users = Users(throttled)
        victim, bystander = await users.register(), await users.register()
        for _ in range(PER_USER):
            failed = await _login(throttled, victim["username"], "Wrong#1234")
            assert failed.status_code == 400
        # Even the right password is not checked now.
        refused = await _login(throttled, victim["username"], PASSWORD)
        assert refused.status_code == 429
        assert await refused.get_json() == {
            "detail": "Too many failed login attempts. Try again later"
        }
        assert 0 < int(refused.headers["Retry-After"]) <= 300
        # Another user from the same address still logs in (and clears nothing of hers).
        assert (await _login(throttled, bystander["username"], PASSWORD)).status_code == 200
        assert (await _login(throttled, victim["username"], PASSWORD)).status_code == 429

    async def test_repeated_failures_from_an_address_are_429(self, throttled: QuartClient) -> None:
        user = await Users(throttled).register()
        for n in range(PER_ADDRESS):
            failed = await _login(throttled, f"nobody{n}", "Wrong#1234")
            assert failed.status_code == 400
        refused = await _login(throttled, user["username"], PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0

    def test_failures_expire_with_the_window_and_a_success_forgets_them(self) -> None:
        now = [0.0]
        throttle = LoginThrottle(ThrottleLimits(2, 10, 60.0), clock=lambda: now[0])
        throttle.failed("ann", "a")
        now[0] = 10.0
        throttle.failed("ann", "a")
        assert throttle.retry_after("ann", "b") == 50
        now[0] = 59.5
        assert throttle.retry_after("ann", "b") == 1
        now[0] = 60.0
        assert throttle.retry_after("ann", "b") == 0  # the first failure left the window
        throttle.failed("ann", "a")
        assert throttle.retry_after("ann", "b") > 0
        throttle.succeeded("ann")
        assert throttle.retry_after("ann", "b") == 0

    def test_the_table_is_bounded(self) -> None:
        throttle = LoginThrottle(ThrottleLimits(1, 1, 60.0), max_keys=100)
        for n in range(1000):
            throttle.failed(f"user{n}" * 1000, f"10.0.{n // 256}.{n % 256}")
        assert throttle.statistics() == (100, 100)

    async def test_a_form_of_100k_fields_is_refused_fast(self, throttled: QuartClient) -> None:
        body = "username=a&password=b&" + "&".join(f"f{n}=" for n in range(100_000))
        started = anyio.current_time()
        response = await throttled.post(
            LOGIN, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        elapsed = anyio.current_time() - started
        assert response.status_code == 413
        print(f"100k-field form refused in {elapsed * 1000:.1f} ms")
        assert elapsed < 0.5  # parsing it took ~0.7 s of the event loop

    async def test_a_multipart_form_of_many_parts_is_413(self, throttled: QuartClient) -> None:
        user = await Users(throttled).login()
        boundary = "b0undary"
        parts = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{n}"\r\n\r\nx\r\n'
            for n in range(1000)
        )
        response = await throttled.post(
            "/files",
            data=parts + f"--{boundary}--\r\n",
            headers={**user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413


class TestHeaders:
    async def test_security_headers_and_no_server_version(self, live: Live) -> None:
        _, token = await live.login()
        async with live.http() as http:
            for path, headers in [
                ("/api/agents/", {"Authorization": f"Bearer {token}"}),
                ("/api/agents/", {}),  # a 401 too
                ("/health/ready", {}),
                ("/docs", {}),
            ]:
                response = await http.get(path, headers=headers)
                assert response.headers["X-Content-Type-Options"] == "nosniff", path
                assert response.headers["X-Frame-Options"] == "DENY", path
                assert "server" not in response.headers, (path, response.headers)
                if path.startswith(("/api", "/health")):
                    assert response.headers["Cache-Control"] == "no-store", path

    async def test_cors_never_allows_the_null_origin(self, live: Live) -> None:
        async with live.http() as http:
            simple = await http.get("/health/live", headers={"Origin": "null"})
            assert "access-control-allow-origin" not in simple.headers
            assert "access-control-allow-credentials" not in simple.headers
            preflight = await http.options(
                "/api/agents/",
                headers={"Origin": "null", "Access-Control-Request-Method": "GET"},
            )
            assert preflight.status_code == 400
            assert "access-control-allow-origin" not in preflight.headers
            # A real origin is still allowed (every origin is, by default).
            allowed = await http.options(
                "/api/agents/",
                headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "GET"},
            )
            assert allowed.headers["access-control-allow-origin"] == "http://ui.example"


class TestHandshakes:
    async def test_handshakes_waiting_for_their_token_check_are_capped(
        self, tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        cap = 2
        async with open_live(tmp_path, database_url, MAX_PENDING_HANDSHAKES=cap) as live:
            tokens = [(await live.login())[1] for _ in range(cap + 1)]
            opened: list[ClientConnection] = []
            async with sessionmaker() as lock:
                # Hold the token checks in the database: these handshakes stay in flight.
                await lock.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
                async with anyio.create_task_group() as tg:

                    async def connect(user_token: str) -> None:
                        opened.append(await live.chat(user_token).__aenter__())

                    for user_token in tokens[:cap]:
                        tg.start_soon(connect, user_token)
                    await _wait_for_blocked_reads(sessionmaker, cap)
                    code = await _refused_handshake(live, tokens[cap])
                    assert code == (1013, TOO_MANY_HANDSHAKES)
                    await lock.rollback()
            assert len(opened) == cap
            for ws in opened:
                await ws.send('{"probe": true}')
                assert (await _recv_json(ws))["type"] == "error"
                await ws.close()
            # The places are given back.
            async with live.chat(tokens[cap]) as ws:
                await ws.send('{"probe": true}')
                assert (await _recv_json(ws))["type"] == "error"


async def _wait_for_blocked_reads(
    sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> None:
    """Wait until ``count`` statements wait for the lock on ``users``."""
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'users'::regclass")
    with anyio.fail_after(10):
        while True:
            async with sessionmaker() as session:
                if await session.scalar(query) == count:
                    return
            await anyio.sleep(0.05)


async def _refused_handshake(live: Live, token: str) -> tuple[int, str]:
    async with live.chat(token) as ws:
        with anyio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


class TestLogs:
    async def test_statement_parameters_never_reach_the_log(
        self, database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        secret = "eyJ-agent-token-" + uuid.uuid4().hex
        engine = create_engine(database_url, echo=True)
        try:
            with caplog.at_level("DEBUG", logger="sqlalchemy.engine"):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT :token"), {"token": secret})
                    with pytest.raises(Exception) as failed:
                        await connection.execute(
                            text("SELECT CAST(:token AS integer)"), {"token": secret}
                        )
        finally:
            await engine.dispose()
        assert "SELECT" in caplog.text
        assert secret not in caplog.text
        assert secret not in str(failed.value)


MIB = 1024 * 1024


def _rss_bytes() -> int:
    # The server runs in this process: its resident memory is ours.
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def _stalled_download(port: int, path: str, token: str) -> socket.socket:
    """Ask for ``path`` and never read: a tiny receive window the server fills at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def _read_to_end(sock: socket.socket) -> tuple[int, bool]:
    """Read what the server sent; return the bytes and whether it closed the connection."""
    sock.settimeout(5)
    received = 0
    try:
        while chunk := sock.recv(MIB):
            received += len(chunk)
    except TimeoutError:
        return received, False
    finally:
        sock.close()
    return received, True


class TestDownloads:
    async def test_stalled_downloads_hold_no_file_and_are_closed(
        self, tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        size, clients = 32 * MIB, 8
        async with open_live(tmp_path, database_url, DOWNLOAD_SEND_TIMEOUT_SECONDS=1) as live:
            _, token = await live.login()
            async with live.http() as http:
                uploaded = await http.post(
                    "/files",
                    files={"file": ("big.bin", b"\x5a" * size, "application/octet-stream")},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert uploaded.status_code == 201, uploaded.text
                file_id = uploaded.json()["id"]
                # A reader that keeps up gets every byte.
                whole = await http.get(
                    f"/files/{file_id}", headers={"Authorization": f"Bearer {token}"}
                )
                assert len(whole.content) == size
            port = int(live.http_url.rsplit(":", 1)[1])
            before = _rss_bytes()
            sockets = [_stalled_download(port, f"/files/{file_id}", token) for _ in range(clients)]
            # Let the server fill every socket buffer it can.
            peak = before
            for _ in range(10):
                await anyio.sleep(0.05)
                peak = max(peak, _rss_bytes())
            growth = peak - before
            print(f"RSS growth, {clients} stalled downloads: {growth / MIB:.1f} MiB")
            assert growth < clients * size / 4
            await anyio.sleep(1.5)  # past the send timeout
            results = [await anyio.to_thread.run_sync(_read_to_end, sock) for sock in sockets]
            for received, closed in results:
                assert closed, "the stalled download is still open"
                assert received < size
            async with live.http() as http:
                assert (await http.get("/health/ready")).status_code == 200
