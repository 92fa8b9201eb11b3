"""LLM providers (with their API keys), model configs and the default system prompt.

API keys are stored encrypted (:class:`persistence.ApiKeyCipher`) and never leave the
back-end: every response carries :data:`MASKED_API_KEY` instead, and a client that echoes
it back means "unchanged".
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from quart import Blueprint
from quart_schema import tag_blueprint

from persistence import (
    AlreadyExistsError,
    ApiKeyCipher,
    ApiKeyDecryptionError,
    ConfigRepository,
    ModelConfig,
    ModelProvider,
    NotFoundError,
    ProviderRepository,
)

from ..auth import Caller, requires_user
from ..common import PageQuery, Timestamp, empty_response, json_response
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_path, validate_query

__all__ = ["DEFAULT_SYSTEM_PROMPT", "MASKED_API_KEY", "blueprint", "mask_api_key"]

blueprint = Blueprint("llm", __name__)
tag_blueprint(blueprint, ["llm"])

MASKED_API_KEY = "********"
"""What every response shows for a stored API key; sent back, it means "unchanged"."""

DEFAULT_SYSTEM_PROMPT = (
    "You are the coordinating agent of GenAI AgentOS. You answer the user by planning "
    "the work and delegating it to the agents, flows and tools you are given.\n"
    "\n"
    "How to work:\n"
    "1. Read the request carefully and restate to yourself what a complete answer needs. "
    "If something essential is ambiguous, ask one short clarifying question instead of "
    "guessing.\n"
    "2. Split the task into small, ordered steps. Each step should have a clear input and "
    "a clear expected result.\n"
    "3. For each step, pick the tool whose description matches it best. Prefer a flow or "
    "a tool that covers several steps at once over chaining many small ones.\n"
    "4. Call a tool only when it really fits the step. Never force a tool onto a task it "
    "was not made for, and never invent tools, parameters or results.\n"
    "5. Pass each tool exactly the arguments its schema asks for, using what the user "
    "said and what earlier steps returned.\n"
    "6. After every result, check whether it moved you closer to the goal. If a call "
    "failed or returned something unusable, try another suitable tool or a different "
    "approach, and stop retrying once it is clear no tool can help.\n"
    "7. Repeat until the request is fully handled, then reply to the user with a concise, "
    "accurate answer based on the results. Say plainly what could not be done and why.\n"
    "\n"
    "If no tool is needed, answer directly from your own knowledge."
)
"""Our default system prompt: returned by ``GET /api/llm/model/prompt`` exactly as is."""

OLLAMA = "ollama"
MAX_LAST_MESSAGES = 20


def mask_api_key(stored: str | None) -> str | None:
    """Return what a response shows for a stored key: the placeholder, or None."""
    return MASKED_API_KEY if stored else None


def _is_ollama(name: str) -> bool:
    return name.lower().strip() == OLLAMA


def _cipher() -> ApiKeyCipher:
    return services().api_key_cipher()


# -- models ------------------------------------------------------------------------------


class ProviderBody(BaseModel):
    name: str
    api_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _key_rule(self) -> ProviderBody:
        if _is_ollama(self.name):
            self.api_key = None
        elif not self.api_key:
            raise ValueError("'api_key' must be specified for this provider")
        return self


class ProviderPatchBody(BaseModel):
    api_key: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ProviderWritten(BaseModel):
    id: UUID
    provider: str
    api_key: str | None
    metadata: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, row: ModelProvider) -> ProviderWritten:
        return cls(
            id=row.id,
            provider=row.name,
            api_key=mask_api_key(row.api_key),
            metadata=row.provider_metadata,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ConfigDTO(BaseModel):
    id: UUID
    name: str
    model: str
    system_prompt: str
    user_prompt: str | None
    temperature: float
    max_last_messages: int
    credentials: dict[str, Any]

    @classmethod
    def of(cls, row: ModelConfig) -> ConfigDTO:
        return cls(
            id=row.id,
            name=row.name,
            model=row.model,
            system_prompt=row.system_prompt or DEFAULT_SYSTEM_PROMPT,
            user_prompt=row.user_prompt,
            temperature=row.temperature,
            max_last_messages=row.max_last_messages,
            credentials=row.credentials if isinstance(row.credentials, dict) else {},
        )


class ProviderDTO(BaseModel):
    provider: str
    api_key: str | None
    metadata: dict[str, Any]
    configs: list[ConfigDTO]

    @classmethod
    def of(cls, row: ModelProvider, configs: list[ModelConfig] | None = None) -> ProviderDTO:
        return cls(
            provider=row.name,
            api_key=mask_api_key(row.api_key),
            metadata=row.provider_metadata,
            configs=[
                ConfigDTO.of(config) for config in (row.configs if configs is None else configs)
            ],
        )


def _max_last_messages(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= MAX_LAST_MESSAGES:
        raise ValueError(
            f"'max_last_messages' value must be 0 ≤ max_last_messages ≤ {MAX_LAST_MESSAGES}"
        )
    return value


def _credentials(value: dict[str, Any] | None) -> dict[str, str]:
    # Only string values are kept, stripped; they are stored as they are (not secrets).
    return {key: item.strip() for key, item in (value or {}).items() if isinstance(item, str)}


class ConfigFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    user_prompt: str | None = ""
    temperature: float | None = Field(0.7, allow_inf_nan=False)
    max_last_messages: int | None = 5
    credentials: dict[str, Any] | None = Field(default_factory=dict)

    @field_validator("max_last_messages")
    @classmethod
    def _range(cls, value: int | None) -> int | None:
        return _max_last_messages(value)

    def stored(self, *, only_sent: bool) -> dict[str, Any]:
        """Return the stored form of the optional fields (a null reads as the default).

        Args:
            only_sent: leave out the fields the request did not carry (PATCH).
        """
        out: dict[str, Any] = {}
        for name in _OPTIONAL_FIELDS:
            if only_sent and name not in self.model_fields_set:
                continue
            value = getattr(self, name)
            if name == "credentials":
                value = _credentials(value)
            elif value is None:
                value = _NULL_MEANS[name]
            out[name] = value
        return out


_OPTIONAL_FIELDS = (
    "system_prompt",
    "user_prompt",
    "temperature",
    "max_last_messages",
    "credentials",
)
_NULL_MEANS: dict[str, Any] = {
    "system_prompt": DEFAULT_SYSTEM_PROMPT,
    "user_prompt": "",
    "temperature": 0.7,
    "max_last_messages": 5,
}


class ConfigBody(ConfigFields):
    name: str
    model: str
    provider: str


class ConfigPatchBody(ConfigFields):
    name: str | None = None
    model: str | None = None


class PromptOut(BaseModel):
    system_prompt: str


class PromptQuery(BaseModel):
    provider: str | None = None
    model: str | None = None


# -- providers ---------------------------------------------------------------------------


@blueprint.post("/api/llm/model/provider")
@requires_user
@validate_body(ProviderBody)
@responds(ProviderWritten)
async def add_provider(data: ProviderBody, caller: Caller) -> Any:
    """Add one of the caller's LLM providers, its API key encrypted."""
    api_key = None if data.api_key is None else _cipher().encrypt(data.api_key)
    taken = APIError(400, f"Creator_id, name - '{caller.user_id}, {data.name}' already exists")
    async with services().sessionmaker.begin() as session:
        providers = ProviderRepository(session)
        if await providers.get_by_name(data.name, owner_id=caller.user_id) is not None:
            raise taken
        try:
            row = await providers.add(
                creator_id=caller.user_id,
                name=data.name,
                api_key=api_key,
                provider_metadata=data.metadata,
            )
        except AlreadyExistsError:
            raise taken from None
        await session.refresh(row)
        out = ProviderWritten.of(row).model_dump(mode="json", exclude_none=True)
    return json_response(out, model=dict[str, Any])


@blueprint.patch("/api/llm/model/providers/<provider_name>")
@requires_user
@validate_body(ProviderPatchBody)
@responds(ProviderWritten)
async def patch_provider(provider_name: str, data: ProviderPatchBody, caller: Caller) -> Any:
    """Replace a provider's metadata and, unless the placeholder is echoed, its API key."""
    missing = APIError(400, f"Provider named '{provider_name}' does not exist")
    if "\x00" in provider_name:
        raise missing
    async with services().sessionmaker.begin() as session:
        providers = ProviderRepository(session)
        row = await providers.get_by_name(provider_name, owner_id=caller.user_id)
        if row is None:
            raise missing
        changes: dict[str, Any] = {"provider_metadata": data.metadata}
        if _is_ollama(provider_name):
            changes["api_key"] = None
        elif (
            data.api_key
            and data.api_key != MASKED_API_KEY
            and not await _holds_key(row.api_key, data.api_key)
        ):
            changes["api_key"] = _cipher().encrypt(data.api_key)
        row = await providers.change(row, **changes)
        await session.refresh(row)
        out = ProviderWritten.of(row)
    return json_response(out)


async def _holds_key(stored: str | None, api_key: str) -> bool:
    """Tell whether ``stored`` is ``api_key`` encrypted with the current key.

    Then sending it again changes nothing (a fresh ciphertext would move
    ``updated_at``); a key stored in an older format or key is written anew.
    """
    cipher = _cipher()
    if stored is None or not cipher.is_current(stored):
        return False
    try:
        return await cipher.decrypt_async(stored) == api_key
    except ApiKeyDecryptionError:
        return False


# -- configs -----------------------------------------------------------------------------


@blueprint.get("/api/llm/model/configs")
@requires_user
@validate_query(PageQuery)
@responds(list[ProviderDTO])
async def list_configs(query: PageQuery, caller: Caller) -> Any:
    """List the caller's providers, newest first, each with all its configs."""
    async with services().sessionmaker() as session:
        rows = await ProviderRepository(session).list_for_user(
            caller.user_id, offset=query.offset, limit=query.limit
        )
        out = [ProviderDTO.of(row) for row in rows]
    return json_response(out, model=list[ProviderDTO])


def _config_missing(config_id: UUID) -> APIError:
    return APIError(400, f"Config with id '{config_id}' was not found")


def _config_taken(name: str) -> APIError:
    return APIError(400, f"Model config named '{name}' already exists")


@blueprint.get("/api/llm/model/config/<model_config_id>")
@requires_user
@validate_path(model_config_id=UUID)
@responds(ProviderDTO)
async def get_config(model_config_id: UUID, caller: Caller) -> Any:
    """Return the config's provider, with only that config."""
    async with services().sessionmaker() as session:
        row = await ConfigRepository(session).get(model_config_id, owner_id=caller.user_id)
        if row is None or row.provider is None:
            raise _config_missing(model_config_id)
        out = ProviderDTO.of(row.provider, [row])
    return json_response(out)


@blueprint.post("/api/llm/model/config")
@requires_user
@validate_body(ConfigBody)
@responds(list[ProviderDTO])
async def add_config(data: ConfigBody, caller: Caller) -> Any:
    """Add a config to one of the caller's providers; answer that provider with all configs."""
    async with services().sessionmaker.begin() as session:
        providers = ProviderRepository(session)
        provider = await providers.get_by_name(data.provider, owner_id=caller.user_id)
        if provider is None:
            raise APIError(400, f"Provider named {data.provider} does not exist")
        try:
            await ConfigRepository(session).add(
                creator_id=caller.user_id,
                provider_id=provider.id,
                name=data.name,
                model=data.model,
                **data.stored(only_sent=False),
            )
        except AlreadyExistsError:
            raise _config_taken(data.name) from None
        provider = await providers.get_by_name(data.provider, owner_id=caller.user_id)
        assert provider is not None
        out = [ProviderDTO.of(provider)]
    return json_response(out, model=list[ProviderDTO])


@blueprint.patch("/api/llm/model/config/<model_config_id>")
@requires_user
@validate_path(model_config_id=UUID)
@validate_body(ConfigPatchBody)
@responds(ConfigDTO)
async def patch_config(model_config_id: UUID, data: ConfigPatchBody, caller: Caller) -> Any:
    """Change the fields sent; the others keep their value."""
    changes = data.stored(only_sent=True)
    for name in ("name", "model"):
        value = getattr(data, name)
        if value is not None:
            changes[name] = value
    async with services().sessionmaker.begin() as session:
        try:
            row = await ConfigRepository(session).patch(
                model_config_id, owner_id=caller.user_id, **changes
            )
        except NotFoundError:
            raise _config_missing(model_config_id) from None
        except AlreadyExistsError:
            raise _config_taken(changes["name"]) from None
        await session.refresh(row)
        out = ConfigDTO.of(row)
    return json_response(out)


@blueprint.delete("/api/llm/model/config/<model_config_id>")
@requires_user
@validate_path(model_config_id=UUID)
@responds(None, 204)
async def delete_config(model_config_id: UUID, caller: Caller) -> Any:
    """Delete one of the caller's configs."""
    async with services().sessionmaker.begin() as session:
        try:
            await ConfigRepository(session).delete(model_config_id, owner_id=caller.user_id)
        except NotFoundError:
            raise _config_missing(model_config_id) from None
    return empty_response()


@blueprint.get("/api/llm/model/prompt")
@requires_user
@validate_query(PromptQuery)
@responds(PromptOut)
async def default_prompt(query: PromptQuery, caller: Caller) -> Any:
    """Return our default system prompt (``provider`` and ``model`` are ignored)."""
    return json_response(PromptOut(system_prompt=DEFAULT_SYSTEM_PROMPT))
