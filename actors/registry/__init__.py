"""The registry: agent registrations and logs from the router, into PostgreSQL.

Registration checks the agent JWT (a bad one stops the agent), normalises the name,
keeps or renews the alias and marks the agent active; a disconnect marks it and its
flows inactive; logs are written in batches and handed to a `LogSink`.
"""

from __future__ import annotations

from ._registry import NOT_REGISTERED as NOT_REGISTERED
from ._registry import GetStatistics as GetStatistics
from ._registry import LogSink as LogSink
from ._registry import RegistryActor as RegistryActor
from ._registry import RegistryClient as RegistryClient
from ._registry import RegistryConfig as RegistryConfig
from ._registry import RegistryMessage as RegistryMessage
from ._registry import RegistryStatistics as RegistryStatistics
from ._registry import registry_spec as registry_spec
from ._reset import mark_agents_inactive as mark_agents_inactive
from ._rules import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._rules import decode_agent_jwt as decode_agent_jwt
from ._rules import next_alias as next_alias
from ._rules import normalise_name as normalise_name
from ._rules import validate_log as validate_log
from ._verifier import agent_verifier as agent_verifier

__all__ = [
    "MAX_NAME_LENGTH",
    "NOT_REGISTERED",
    "GetStatistics",
    "LogSink",
    "RegistryActor",
    "RegistryClient",
    "RegistryConfig",
    "RegistryMessage",
    "RegistryStatistics",
    "agent_verifier",
    "decode_agent_jwt",
    "mark_agents_inactive",
    "next_alias",
    "normalise_name",
    "registry_spec",
    "validate_log",
]
