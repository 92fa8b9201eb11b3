"""Repositories: one class per aggregate around an ``AsyncSession``; they never commit."""

from __future__ import annotations

from .agents import AgentListing as AgentListing
from .agents import AgentRepository as AgentRepository
from .chats import ChatRepository as ChatRepository
from .chats import MessagePage as MessagePage
from .files import FileRepository as FileRepository
from .flows import FlowRepository as FlowRepository
from .flows import flow_item_ids as flow_item_ids
from .flows import is_eligible as is_eligible
from .logs import LogEntry as LogEntry
from .logs import LogRepository as LogRepository
from .logs import NewLog as NewLog
from .providers import ConfigRepository as ConfigRepository
from .providers import ProviderRepository as ProviderRepository
from .turns import ChatTurnStore as ChatTurnStore
from .turns import ModelChoice as ModelChoice
from .turns import TurnLookup as TurnLookup
from .turns import TurnStatements as TurnStatements
from .users import ProfileRepository as ProfileRepository
from .users import UserRepository as UserRepository

__all__ = [
    "AgentListing",
    "AgentRepository",
    "ChatRepository",
    "ChatTurnStore",
    "ConfigRepository",
    "FileRepository",
    "FlowRepository",
    "LogEntry",
    "LogRepository",
    "MessagePage",
    "ModelChoice",
    "NewLog",
    "ProfileRepository",
    "ProviderRepository",
    "TurnLookup",
    "TurnStatements",
    "UserRepository",
    "flow_item_ids",
    "is_eligible",
]
