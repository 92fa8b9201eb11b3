"""The provider side of the built-in master: settings, pooled clients, one call, errors.

Against a real OpenAI-compatible HTTP server on loopback (`fake_openai`), never a mock;
on asyncio and trio.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from actors.master import ProviderError, ProviderPool, model_settings

from .fake_openai import HANG, Reply, error, open_fake_openai, text, tool_call


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # No database here: the provider side runs on trio as on asyncio.
    backend: str = request.param
    return backend


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def configs(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-test",
        "temperature": "0.3",
        "system_prompt": "",
        "user_prompt": "",
        "config_name": "c",
        "max_last_messages": 5,
        "api_key": "sk-one",
    }
    return {**values, **overrides}


class TestModelSettings:
    def test_openai_with_a_base_url_reaches_any_compatible_server(self) -> None:
        settings = model_settings(configs(base_url="http://127.0.0.1:1/v1", provider="OpenAI"))
        assert (settings.kind, settings.base_url, settings.temperature) == (
            "openai",
            "http://127.0.0.1:1/v1",
            0.3,
        )

    def test_ollama_serves_the_openai_api_under_v1_and_needs_no_key(self) -> None:
        settings = model_settings(
            configs(provider="ollama", base_url="http://host:11434/", api_key=None)
        )
        assert (settings.base_url, settings.api_key) == ("http://host:11434/v1", None)

    def test_azure_takes_endpoint_version_and_deployment(self) -> None:
        settings = model_settings(
            configs(
                provider="azure openai",
                endpoint="https://x.openai.azure.com",
                api_version="2024-06-01",
                deployment_name="dep",
            )
        )
        assert (settings.base_url, settings.api_version, settings.model) == (
            "https://x.openai.azure.com",
            "2024-06-01",
            "dep",
        )

    def test_azure_without_its_endpoint_says_what_to_add(self) -> None:
        with pytest.raises(ProviderError, match="'endpoint' and 'api_version'"):
            model_settings(configs(provider="azure openai"))

    def test_another_provider_is_refused_with_the_ones_it_takes(self) -> None:
        with pytest.raises(ProviderError, match="'anthropic' is none of them"):
            model_settings(configs(provider="anthropic"))


class TestCalls:
    async def test_a_completion_and_a_tool_call_come_back(self) -> None:
        replies = iter([text("hello"), tool_call("echo_agent_abcdef", {"text": "x"})])
        async with open_fake_openai(lambda _request: next(replies)) as fake:
            pool = ProviderPool()
            try:
                settings = model_settings(configs(base_url=fake.base_url))
                first = await pool.complete(settings, MESSAGES, [], timeout=5)
                tools = [{"type": "function", "function": {"name": "echo_agent_abcdef"}}]
                second = await pool.complete(settings, MESSAGES, tools, timeout=5)
            finally:
                await pool.aclose()
        assert first.message["content"] == "hello"
        assert first.usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        calls = second.message["tool_calls"]
        assert [call["function"]["name"] for call in calls] == ["echo_agent_abcdef"]
        assert fake.requests[0]["model"] == "gpt-test"
        assert fake.requests[0]["temperature"] == 0.3
        assert "tools" not in fake.requests[0]
        assert fake.requests[1]["tools"] == tools
        assert fake.headers[0]["authorization"] == "Bearer sk-one"

    async def test_azure_calls_the_deployment_with_its_key_header(self) -> None:
        async with open_fake_openai(lambda _request: text("hello")) as fake:
            pool = ProviderPool()
            try:
                settings = model_settings(
                    configs(
                        provider="Azure OpenAI",
                        endpoint=f"http://127.0.0.1:{fake.port}",
                        api_version="2024-06-01",
                        deployment_name="dep",
                    )
                )
                completion = await pool.complete(settings, MESSAGES, [], timeout=5)
            finally:
                await pool.aclose()
        assert completion.message["content"] == "hello"
        assert fake.paths == ["/openai/deployments/dep/chat/completions?api-version=2024-06-01"]
        assert fake.headers[0]["api-key"] == "sk-one"

    async def test_each_call_is_the_request_the_client_builds_with_its_own_body(
        self,
    ) -> None:
        async with open_fake_openai(lambda _request: text("ok")) as fake:
            pool = ProviderPool()
            try:
                settings = model_settings(configs(base_url=fake.base_url))
                client = pool.client(settings)
                short = [{"role": "user", "content": "hi"}]
                long = [{"role": "user", "content": "é" * 5000}]
                for messages in (short, long, short):
                    await pool.complete(settings, messages, [], timeout=5)
            finally:
                await pool.aclose()
        assert [r["messages"] for r in fake.requests] == [short, long, short]
        assert fake.paths == ["/v1/chat/completions"] * 3
        for headers in fake.headers:
            assert headers["user-agent"] == client.user_agent
            assert headers["x-stainless-retry-count"] == "0"
            assert headers["content-type"] == "application/json"
        assert len({h["content-length"] for h in fake.headers}) == 2

    async def test_azure_calls_each_model_at_its_own_deployment(self) -> None:
        async with open_fake_openai(lambda _request: text("hello")) as fake:
            pool = ProviderPool()
            try:
                for deployment in ("one", "two", "one"):
                    settings = model_settings(
                        configs(
                            provider="Azure OpenAI",
                            endpoint=f"http://127.0.0.1:{fake.port}",
                            api_version="2024-06-01",
                            deployment_name=deployment,
                        )
                    )
                    await pool.complete(settings, MESSAGES, [], timeout=5)
            finally:
                await pool.aclose()
        assert fake.paths == [
            f"/openai/deployments/{name}/chat/completions?api-version=2024-06-01"
            for name in ("one", "two", "one")
        ]
        assert [r["model"] for r in fake.requests] == ["one", "two", "one"]

    async def test_clients_share_one_pool_per_base_url_whatever_the_key(self) -> None:
        async with open_fake_openai(lambda _request: text("ok")) as fake:
            pool = ProviderPool()
            try:
                one = model_settings(configs(base_url=fake.base_url))
                two = model_settings(configs(base_url=fake.base_url, api_key="sk-two"))
                await pool.complete(one, MESSAGES, [], timeout=5)
                await pool.complete(two, MESSAGES, [], timeout=5)
                assert pool.client(one) is not pool.client(two)
                assert pool.client(one)._client is pool.client(two)._client
            finally:
                await pool.aclose()
        assert [h["authorization"] for h in fake.headers] == ["Bearer sk-one", "Bearer sk-two"]

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            (error(401, "Incorrect API key provided"), "refused the API key \\(401\\)"),
            (error(429, "Rate limit reached", "rate_limit"), "rate limiting requests \\(429\\)"),
            (error(404, "The model does not exist"), "does not know the model gpt-test"),
            (error(500, "boom", "server_error"), "answered 500: boom"),
            (Reply(200, {"unexpected": True}), "answered no choice"),
            (Reply(200, ["not", "an", "object"]), "not a chat completion"),
        ],
    )
    async def test_errors_say_what_to_do(self, reply: Reply, expected: str) -> None:
        async with open_fake_openai(lambda _request: reply) as fake:
            pool = ProviderPool()
            try:
                settings = model_settings(configs(base_url=fake.base_url))
                with pytest.raises(ProviderError, match=expected):
                    await pool.complete(settings, MESSAGES, [], timeout=5)
            finally:
                await pool.aclose()
        assert len(fake.requests) == 1  # no retry: the user sees it at once

    async def test_a_hang_ends_at_the_step_deadline(self) -> None:
        async with open_fake_openai(lambda _request: HANG) as fake:
            pool = ProviderPool()
            try:
                settings = model_settings(configs(base_url=fake.base_url))
                started = time.perf_counter()
                with pytest.raises(ProviderError, match=r"did not answer within 0\.3 s"):
                    await pool.complete(settings, MESSAGES, [], timeout=0.3)
                assert time.perf_counter() - started < 5
            finally:
                await pool.aclose()

    async def test_an_unreachable_server_says_to_check_its_url(self) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there any more
        pool = ProviderPool()
        try:
            settings = model_settings(configs(base_url=f"http://127.0.0.1:{port}/v1"))
            with pytest.raises(ProviderError, match="cannot be reached: check its base URL"):
                await pool.complete(settings, MESSAGES, [], timeout=5)
        finally:
            await pool.aclose()
