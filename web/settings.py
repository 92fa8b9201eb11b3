"""Process settings, read from the environment and from ``.env``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from persistence import ApiKeyCipher

__all__ = [
    "DEFAULT_ENCRYPTION_KEYS",
    "DEFAULT_JWT_SECRET_KEY",
    "DEFAULT_MASTER_AGENT_API_KEY",
    "DEFAULT_MASTER_BE_API_KEY",
    "DEFAULT_SECRET_KEY",
    "UPSTREAM_MASTER_BE_API_KEY",
    "Settings",
]

# Development defaults. Outside development mode a default secret is refused at start-up.
DEFAULT_SECRET_KEY = "c41302ce0f1758f4ae5dcc65729fd50a"
DEFAULT_JWT_SECRET_KEY = "development-jwt-secret-key-change-me"
DEFAULT_ENCRYPTION_KEYS = "dev:development-api-key-encryption-key-change-me"
DEFAULT_MASTER_BE_API_KEY = "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be"
DEFAULT_MASTER_AGENT_API_KEY = "e1adc3d8-fca1-40b2-b90a-7b48290f2d6a::master_server_ml"
# The upstream master agent's own default for MASTER_BE_API_KEY, which differs from the
# back-end's: a stock master left unconfigured sends it as X-API-KEY.
UPSTREAM_MASTER_BE_API_KEY = "30805518-19f3-49a6-9702-c0b0a6e87310::master_server_be"


class Settings(BaseSettings):
    """Everything the HTTP face needs to know about its deployment.

    Names follow the original back-end where it had one (``SECRET_KEY``,
    ``HASH_ALGORITHM``, ``MASTER_BE_API_KEY``, ``ROUTER_WS_URL``,
    ``BACKEND_CORS_ORIGINS``; ``FILES_DIR`` also reads ``DEFAULT_FILES_FOLDER_NAME``).
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=True,
        extra="ignore",
    )

    ENVIRONMENT: str = "development"
    DEBUG: bool = False
    # Log lines: "text" for people, "json" for one object per line; from LOG_LEVEL up.
    LOG_FORMAT: Literal["text", "json"] = "text"
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # JWT signing (user and agent tokens). Kept apart from the API-key encryption keys.
    JWT_SECRET_KEY: str = DEFAULT_JWT_SECRET_KEY
    HASH_ALGORITHM: str = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = 6 * 60
    BCRYPT_ROUNDS: int = Field(12, ge=4, le=31)

    # API-key encryption: new keys are written with ENCRYPTION_KEYS (``<key id>:<key>``,
    # comma-separated, the first one writes); SECRET_KEY still reads the original's ciphertexts.
    ENCRYPTION_KEYS: str = DEFAULT_ENCRYPTION_KEYS
    SECRET_KEY: str = DEFAULT_SECRET_KEY

    MASTER_BE_API_KEY: str = DEFAULT_MASTER_BE_API_KEY
    # The key the master agent connects to the router with (its id is master_server_ml).
    MASTER_AGENT_API_KEY: str = DEFAULT_MASTER_AGENT_API_KEY
    MASTER_AGENT_TIMEOUT: float = 300.0
    # Who answers chat turns as master_server_ml: "builtin", our own master agent (the
    # default with the embedded router), or "external", the original master agent run
    # apart (the default with ROUTER_WS_URL).
    MASTER_AGENT: Literal["builtin", "external"] | None = None
    # The built-in master: seconds one model call and one agent call may take, and the
    # model calls a turn may make.
    MASTER_MODEL_TIMEOUT: float = Field(60.0, gt=0)
    MASTER_TOOL_TIMEOUT: float = Field(120.0, gt=0)
    MASTER_MAX_STEPS: int = Field(10, ge=1)

    BACKEND_CORS_ORIGINS: Annotated[list[str], NoDecode] = ["*"]

    FILES_DIR: Path = Field(
        Path("files"), validation_alias=AliasChoices("FILES_DIR", "DEFAULT_FILES_FOLDER_NAME")
    )
    MAX_UPLOAD_BYTES: int = 50 * 1024 * 1024
    MAX_JSON_BYTES: int = 1024 * 1024
    # A larger /frontend/ws message closes its socket with 1009.
    MAX_WS_FRAME_BYTES: int = Field(1024 * 1024, ge=1024)
    # Open /frontend/ws sockets per user, over all sessions; one more is closed with 1013.
    MAX_SOCKETS_PER_USER: int = Field(20, ge=1)
    # Hostile input (see the README's Security section).
    # Levels of arrays and objects a JSON value may nest (the serialisers stop at 255).
    MAX_JSON_DEPTH: int = Field(64, ge=2, le=200)
    # Fields of a url-encoded or multipart form (login, upload); more is a 413.
    MAX_FORM_FIELDS: int = Field(32, ge=3)
    # Failed logins allowed per username and per client address within the window; the
    # next attempt is answered 429 with Retry-After until the oldest failure expires.
    LOGIN_FAILURES_PER_USER: int = Field(5, ge=1)
    LOGIN_FAILURES_PER_ADDRESS: int = Field(20, ge=1)
    LOGIN_FAILURE_WINDOW_SECONDS: float = Field(300.0, gt=0)
    # Seconds a download waits for the client to take its next chunk before closing.
    DOWNLOAD_SEND_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    # /frontend/ws handshakes in flight (not yet authenticated), over all clients; one
    # more is closed with 1013 before its token is looked at.
    MAX_PENDING_HANDSHAKES: int = Field(64, ge=1)

    HTTP_HOST: str = "0.0.0.0"
    HTTP_PORT: int = 8000
    # Bearer token that opens /health and /metrics from beyond loopback ("" = loopback only).
    OPERATOR_TOKEN: str = ""
    # Seconds open requests and chat turns get to finish once a stop begins.
    SHUTDOWN_GRACE_SECONDS: float = Field(10.0, ge=0)

    # MCP servers and A2A agents: every stored URL is probed again this often (seconds).
    MCP_A2A_REFRESH_SECONDS: float = Field(60.0, gt=0)
    # Probes of distinct URLs that run at once during a refresh.
    MCP_A2A_PROBE_CONCURRENCY: int = Field(8, ge=1)
    # Outbound requests to users' URLs: time-outs, the whole probe's deadline, the bytes read.
    OUTBOUND_CONNECT_TIMEOUT: float = Field(5.0, gt=0)
    OUTBOUND_READ_TIMEOUT: float = Field(10.0, gt=0)
    OUTBOUND_DEADLINE: float = Field(20.0, gt=0)
    OUTBOUND_MAX_BYTES: int = Field(4 * 1024 * 1024, ge=1024)
    # Loopback, private and link-local addresses: allowed in development unless set false,
    # refused elsewhere unless set true.
    OUTBOUND_ALLOW_PRIVATE: bool | None = None
    # Chat turns and their events are kept this long (hours), then deleted by the janitor,
    # which looks for them this often (seconds).
    TURN_RETENTION_HOURS: float = Field(168.0, gt=0)
    TURN_JANITOR_INTERVAL_SECONDS: float = Field(600.0, gt=0)
    # Several processes on one database: each writes its heartbeat row this often
    # (seconds), and a peer whose row has not moved for PEER_TIMEOUT_SECONDS is taken for
    # dead (its open chat turns are answered as interrupted). The timeout must exceed
    # twice the interval, so that one late beat is not a death.
    HEARTBEAT_SECONDS: float = Field(2.0, gt=0)
    PEER_TIMEOUT_SECONDS: float = Field(10.0, gt=0)

    ROUTER_WS_URL: str | None = None
    ROUTER_HOST: str = "0.0.0.0"
    ROUTER_PORT: int = 8080
    # Each verified agent's log budget on the embedded router (token buckets): frames
    # and bytes per second on average, and at once; a log past either is dropped.
    ROUTER_LOG_RATE: float = Field(100.0, gt=0)
    ROUTER_LOG_BURST: float = Field(1000.0, ge=1)
    ROUTER_LOG_BYTES_RATE: float = Field(256 * 1024, gt=0)
    ROUTER_LOG_BYTES_BURST: float = Field(4 * 1024 * 1024, ge=1024)

    @field_validator("LOG_LEVEL", "LOG_FORMAT", mode="before")
    @classmethod
    def _fold_case(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "LOG_LEVEL" else value.lower()

    @field_validator("BACKEND_CORS_ORIGINS", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        # The original's form is "[*, http://a]"; a JSON list or a comma list also work.
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(item).strip() for item in parsed if str(item).strip()]
        text = text.removeprefix("[").removesuffix("]")
        return [part.strip().strip('"') for part in text.split(",") if part.strip().strip('"')]

    @model_validator(mode="after")
    def _check_peer_timeout(self) -> Settings:
        if self.PEER_TIMEOUT_SECONDS <= 2 * self.HEARTBEAT_SECONDS:
            raise ValueError(
                f"PEER_TIMEOUT_SECONDS ({self.PEER_TIMEOUT_SECONDS}) must exceed twice "
                f"HEARTBEAT_SECONDS ({self.HEARTBEAT_SECONDS})"
            )
        return self

    @property
    def builtin_master(self) -> bool:
        """Whether the built-in master agent answers chat turns (``MASTER_AGENT``)."""
        if self.MASTER_AGENT is None:
            return self.ROUTER_WS_URL is None
        return self.MASTER_AGENT == "builtin"

    @property
    def is_development(self) -> bool:
        """Tell whether the process runs in development mode."""
        return self.ENVIRONMENT.lower() in {"development", "dev", "local", "test"}

    @property
    def outbound_allows_private(self) -> bool:
        """Whether users' URLs may name loopback, private or link-local addresses."""
        if self.OUTBOUND_ALLOW_PRIVATE is None:
            return self.is_development
        return self.OUTBOUND_ALLOW_PRIVATE

    def insecure_secrets(self) -> list[str]:
        """Name the signing and encryption secrets that still hold a default or are empty.

        Outside development mode the server refuses to start while this is non-empty.
        """
        defaults = {
            "JWT_SECRET_KEY": (self.JWT_SECRET_KEY, {DEFAULT_JWT_SECRET_KEY}),
            "ENCRYPTION_KEYS": (self.ENCRYPTION_KEYS, {DEFAULT_ENCRYPTION_KEYS}),
            # Whoever knows a published key receives users' chat turns (with their
            # decrypted provider keys) or reads any user's data as the master agent.
            "MASTER_BE_API_KEY": (
                self.MASTER_BE_API_KEY,
                {DEFAULT_MASTER_BE_API_KEY, UPSTREAM_MASTER_BE_API_KEY},
            ),
            "MASTER_AGENT_API_KEY": (self.MASTER_AGENT_API_KEY, {DEFAULT_MASTER_AGENT_API_KEY}),
        }
        return [
            name
            for name, (value, published) in defaults.items()
            if not value.strip() or value in published
        ]

    def master_api_keys(self) -> tuple[str, ...]:
        """The ``X-API-KEY`` values that identify the master agent on the HTTP API.

        ``MASTER_BE_API_KEY``; in development, while it is left at its default, also the
        upstream master agent's own default, so that a stock master works out of the box.
        """
        if self.is_development and self.MASTER_BE_API_KEY == DEFAULT_MASTER_BE_API_KEY:
            return (DEFAULT_MASTER_BE_API_KEY, UPSTREAM_MASTER_BE_API_KEY)
        return (self.MASTER_BE_API_KEY,)

    def api_key_cipher(self) -> ApiKeyCipher:
        """Build the cipher for provider API keys from ``ENCRYPTION_KEYS`` and ``SECRET_KEY``.

        Raises:
            ValueError: ``ENCRYPTION_KEYS`` is malformed or empty.
        """
        return ApiKeyCipher.from_key_ring(self.ENCRYPTION_KEYS, legacy_secrets=[self.SECRET_KEY])

    @property
    def user_token_lifetime_seconds(self) -> int:
        """Return the lifetime of a user token in seconds."""
        return self.ACCESS_TOKEN_EXPIRE_MINUTES * 60
