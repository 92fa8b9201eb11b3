"""The model's side of a turn: which provider, and one chat-completion call to it.

All three providers speak the OpenAI chat-completions API, so the official ``openai``
client serves them: ``openai`` (optionally at ``base_url`` from the provider's metadata,
for any OpenAI-compatible server), ``azure openai`` (``endpoint`` and ``api_version``
from the metadata, ``deployment_name`` if given) and ``ollama`` (its ``base_url``, whose
OpenAI-compatible API lives under ``/v1``).

HTTP clients are pooled per provider kind and base URL: users of one server share its
connections, whatever their keys. The client does not retry and has no timeout of its
own: the caller's cancel scope owns each call's deadline, and a rate limit is the
user's to see at once rather than ours to wait out.

The client builds each key and model's request once (URL, headers, auth); each call
sends that request with its own body on the pooled HTTP client and reads three keys of
the answer's JSON, and an error answer is read by the client into its own exceptions.
Its per-call machinery (options copied and merged, the URL parsed and joined, headers
merged and validated, retries, the answer's models) cost as much server CPU as the
HTTP exchange it wraps.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import anyio
import httpx2
import openai

from ._exceptions import ProviderError
from ._http import ProviderTransport

__all__ = ["Completion", "ModelSettings", "ProviderPool", "model_settings"]

OPENAI = "openai"
AZURE = "azure openai"
OLLAMA = "ollama"
_KINDS = (OPENAI, AZURE, OLLAMA)
_DEFAULT_OLLAMA_URL = "http://localhost:11434"
# Ollama's key is sent as null by the back-end; the client insists on some value.
_NO_KEY = "none"


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSettings:
    """What one turn's model calls need, read from the payload's flat ``configs``.

    Attributes:
        kind: ``openai``, ``azure openai`` or ``ollama``.
        provider: The provider's name as the user wrote it (for messages).
        model: The model (Azure: the deployment when one is named).
        temperature: Sampling temperature; None leaves the server's default.
        api_key: The plain key (None for Ollama).
        base_url: OpenAI-compatible base URL, or the Azure endpoint; None: OpenAI's.
        api_version: Azure's API version.
        system_prompt: The config's system prompt ("" when it has none).
        user_prompt: The config's extra instructions ("" when none).
    """

    kind: str
    provider: str
    model: str
    temperature: float | None
    api_key: str | None
    base_url: str | None
    api_version: str | None
    system_prompt: str
    user_prompt: str

    @property
    def where(self) -> str:
        """Where the calls go, for messages."""
        return self.base_url or "api.openai.com"


def model_settings(configs: Mapping[str, Any]) -> ModelSettings:
    """Read the model settings from the master payload's ``configs``.

    Raises:
        ProviderError: The provider is none of the three, or its settings are unusable.
    """
    provider = str(configs.get("provider") or "")
    kind = provider.lower().strip()
    if kind not in _KINDS:
        raise ProviderError(
            f"The built-in master agent calls models of OpenAI, Azure OpenAI and Ollama "
            f"providers (or any OpenAI-compatible server as an 'openai' provider with a "
            f"base_url); '{provider}' is none of them. Choose a model of one of those."
        )
    model = _text(configs.get("model"))
    base_url = _text(configs.get("base_url")) or None
    api_version: str | None = None
    if kind == AZURE:
        base_url = _text(configs.get("endpoint")) or base_url
        api_version = _text(configs.get("api_version")) or None
        model = _text(configs.get("deployment_name")) or model
        if not base_url or not api_version:
            raise ProviderError(
                f"The Azure OpenAI provider '{provider}' needs 'endpoint' and "
                "'api_version' in its metadata: add them in the provider's settings."
            )
    elif kind == OLLAMA:
        base_url = (base_url or _DEFAULT_OLLAMA_URL).rstrip("/")
        if not base_url.endswith("/v1"):
            base_url += "/v1"
    if not model:
        raise ProviderError("The model config names no model: choose one in its settings.")
    api_key = configs.get("api_key")
    return ModelSettings(
        kind=kind,
        provider=provider,
        model=model,
        temperature=_temperature(configs.get("temperature")),
        api_key=api_key if isinstance(api_key, str) and api_key else None,
        base_url=base_url,
        api_version=api_version,
        system_prompt=_text(configs.get("system_prompt")),
        user_prompt=_text(configs.get("user_prompt")),
    )


def _http_client() -> httpx2.AsyncClient:
    """The HTTP client of one provider base URL: the ``openai`` client's default one, on
    `ProviderTransport` unless the environment names a proxy (which a transport of
    our own would bypass)."""
    if urllib.request.getproxies():
        return openai.DefaultAsyncHttpxClient(timeout=None)
    return openai.DefaultAsyncHttpxClient(
        timeout=None, transport=ProviderTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _temperature(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


class ProviderPool:
    """Pooled provider clients; `complete` makes one chat-completion call.

    Args:
        max_keys: Clients kept per key (each a thin wrapper over a pooled HTTP client);
            the least recently used go first.
    """

    def __init__(self, *, max_keys: int = 1024) -> None:
        self._http: dict[tuple[str, str | None], httpx2.AsyncClient] = {}
        self._clients: collections.OrderedDict[
            tuple[str, str | None, str | None, str], openai.AsyncOpenAI
        ] = collections.OrderedDict()
        self._endpoints: collections.OrderedDict[
            tuple[str, str | None, str | None, str, str], _Endpoint
        ] = collections.OrderedDict()
        self._max_keys = max_keys

    def client(self, settings: ModelSettings) -> openai.AsyncOpenAI:
        """Return the client for these settings, sharing its base URL's connections."""
        key = (settings.kind, settings.base_url, settings.api_version, settings.api_key or "")
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        http = self._http.get((settings.kind, settings.base_url))
        if http is None:
            http = self._http[(settings.kind, settings.base_url)] = _http_client()
        api_key = settings.api_key or _NO_KEY
        if settings.kind == AZURE:
            assert settings.base_url is not None  # model_settings requires the endpoint
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=settings.base_url,
                api_version=settings.api_version,
                api_key=api_key,
                max_retries=0,
                timeout=None,
                http_client=http,
            )
        else:
            client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=settings.base_url,
                max_retries=0,
                timeout=None,
                http_client=http,
            )
        self._clients[key] = client
        if len(self._clients) > self._max_keys:
            self._clients.popitem(last=False)  # its HTTP client stays, shared
        return client

    async def _endpoint(self, settings: ModelSettings) -> _Endpoint:
        """Return the chat-completions request of these settings' client and model, as
        the client builds it (URL, headers, extensions), but for its body.

        The client builds it once, for a probe that goes nowhere: its own request
        machinery (options, retries, URL and header merging, the answer's models)
        costs more server CPU per call than the HTTP exchange it wraps, and gives the
        same request each time for one key and model.
        """
        key = (
            settings.kind,
            settings.base_url,
            settings.api_version,
            settings.api_key or "",
            settings.model,
        )
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            self._endpoints.move_to_end(key)
            return endpoint
        client = self.client(settings)
        built: list[httpx2.Request] = []

        def probe(request: httpx2.Request) -> httpx2.Response:
            built.append(request)
            return httpx2.Response(200, json={})

        async with httpx2.AsyncClient(transport=httpx2.MockTransport(probe)) as http:
            await client.with_options(http_client=http).post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body={"model": settings.model, "messages": []},
            )
        request = built[0]
        endpoint = _Endpoint(
            client=client,
            http=self._http[(settings.kind, settings.base_url)],
            url=request.url,
            # The body's length is each call's own.
            headers=httpx2.Headers(
                [
                    (name, value)
                    for name, value in request.headers.raw
                    if name.lower() != b"content-length"
                ]
            ),
            extensions=dict(request.extensions),
        )
        self._endpoints[key] = endpoint
        if len(self._endpoints) > self._max_keys:
            self._endpoints.popitem(last=False)
        return endpoint

    async def complete(
        self,
        settings: ModelSettings,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        timeout: float,  # noqa: ASYNC109 - each call is a step with its own deadline
        tool_choice: Any = None,
    ) -> Completion:
        """Make one chat-completion call; its deadline is ``timeout`` seconds.

        Raises:
            ProviderError: The provider refused the call (its status and what to do),
                could not be reached, answered nothing usable, or passed the deadline.
        """
        endpoint = await self._endpoint(settings)
        body: dict[str, Any] = {"model": settings.model, "messages": messages}
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if tools:
            body["tools"] = tools
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        # As the client encodes JSON bodies.
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        request = httpx2.Request(
            "POST",
            endpoint.url,
            headers=endpoint.headers,  # copied as they are, not parsed again
            content=content.encode(),
            extensions=endpoint.extensions,  # copied
        )
        try:
            with anyio.fail_after(timeout):
                response = await endpoint.http.send(request)
        except TimeoutError:
            raise ProviderError(
                f"The model {settings.model} at {settings.where} did not answer within "
                f"{timeout:g} s: try again, or check that the provider is up."
            ) from None
        # The client's own reading of what went wrong, as its request machinery has it.
        except httpx2.TimeoutException as exc:
            raise _provider_error(settings, openai.APITimeoutError(request)) from exc
        except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
            raise _provider_error(settings, openai.APIConnectionError(request=request)) from exc
        if not response.is_success:
            error = endpoint.client._make_status_error_from_response(response)
            raise _provider_error(settings, error)
        return _completion(settings, response.content)

    async def aclose(self) -> None:
        """Close every pooled HTTP client (bounded; waits for their connections)."""
        clients, self._http = list(self._http.values()), {}
        self._clients.clear()
        self._endpoints.clear()
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
            for http in clients:
                with contextlib.suppress(Exception):
                    await http.aclose()


@dataclasses.dataclass(frozen=True, slots=True)
class _Endpoint:
    """One client's chat-completions request but for its body, and where it is sent.

    Attributes:
        client: The provider client that built it (and reads its error answers).
        http: The pooled HTTP client of its base URL.
        url: The request's URL (Azure's: of the deployment, with the API version).
        headers: The request's headers but its length: the key's, the client's own.
        extensions: The request's ``httpx2`` extensions (its time-outs: none).
    """

    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    url: httpx2.URL
    headers: httpx2.Headers
    extensions: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """What a model call answered: its message (as JSON) and its token usage, if given."""

    message: dict[str, Any]
    usage: dict[str, Any] | None


def _completion(settings: ModelSettings, answer: bytes) -> Completion:
    """Read a chat completion's first message.

    Raises:
        ProviderError: The answer is not a chat completion, or has no message.
    """
    try:
        body = json.loads(answer)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"The provider '{settings.provider}' ({settings.where}) answered something that "
            "is not a chat completion: check that its base URL serves the OpenAI API."
        )
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise ProviderError(
            f"The model {settings.model} at {settings.where} answered no choice: "
            "try again, or choose another model."
        )
    usage = body.get("usage")
    return Completion(message, usage if isinstance(usage, dict) else None)


def _provider_error(settings: ModelSettings, exc: openai.APIError) -> ProviderError:
    """Say what went wrong with the provider, and what the user can do about it."""
    who = f"The provider '{settings.provider}' ({settings.where})"
    match exc:
        case openai.AuthenticationError():
            return ProviderError(
                f"{who} refused the API key (401): check the key in the provider's settings."
            )
        case openai.PermissionDeniedError():
            return ProviderError(
                f"{who} does not allow this key to use {settings.model} (403): check the "
                "key's permissions or choose another model."
            )
        case openai.RateLimitError():
            return ProviderError(
                f"{who} is rate limiting requests (429): wait a moment and try again, or "
                "check the account's quota."
            )
        case openai.NotFoundError():
            return ProviderError(
                f"{who} does not know the model {settings.model} (404): check the model "
                "name in the model config (and the base URL)."
            )
        case openai.APITimeoutError():
            return ProviderError(f"{who} timed out: try again, or check that it is up.")
        case openai.APIConnectionError():
            return ProviderError(
                f"{who} cannot be reached: check its base URL and that it is running."
            )
        case openai.APIStatusError():
            return ProviderError(
                f"{who} answered {exc.status_code}: {_short(_detail(exc))}. Try again, or "
                "check the model config."
            )
        case openai.APIResponseValidationError():
            return ProviderError(
                f"{who} answered something that is not a chat completion: check that its "
                "base URL serves the OpenAI API."
            )
    return ProviderError(f"{who} failed: {_short(str(exc))}")


def _detail(exc: openai.APIError) -> str:
    """The provider's own error text, without the client's prefix."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else exc.message


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
