"""Database access: models, engine, repositories, migrations and embedded PostgreSQL."""

from __future__ import annotations

from ._catalogue import CATALOGUE_CHANNEL as CATALOGUE_CHANNEL
from ._catalogue import CatalogueVersions as CatalogueVersions
from ._catalogue import listen_for_catalogue_changes as listen_for_catalogue_changes
from ._crypto import ApiKeyCipher as ApiKeyCipher
from ._crypto import parse_key_ring as parse_key_ring
from ._db import bound_engine as bound_engine
from ._db import create_engine as create_engine
from ._db import create_sessionmaker as create_sessionmaker
from ._db import is_database_unavailable as is_database_unavailable
from ._db import open_driver_connection as open_driver_connection
from ._embedded import EmbeddedPostgres as EmbeddedPostgres
from ._embedded import open_embedded_postgres as open_embedded_postgres
from ._exceptions import AlreadyExistsError as AlreadyExistsError
from ._exceptions import ApiKeyDecryptionError as ApiKeyDecryptionError
from ._exceptions import EmbeddedPostgresError as EmbeddedPostgresError
from ._exceptions import MigrationError as MigrationError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import PersistenceError as PersistenceError
from ._exceptions import TurnConflictError as TurnConflictError
from ._migrations import current_revision as current_revision
from ._migrations import downgrade_to as downgrade_to
from ._migrations import head_revision as head_revision
from ._migrations import is_up_to_date as is_up_to_date
from ._migrations import upgrade_to as upgrade_to
from ._migrations import upgrade_to_head as upgrade_to_head
from ._models import A2ACard as A2ACard
from ._models import Agent as Agent
from ._models import AgentFlow as AgentFlow
from ._models import BackendProcess as BackendProcess
from ._models import Base as Base
from ._models import ChatConversation as ChatConversation
from ._models import ChatMessage as ChatMessage
from ._models import ChatTurn as ChatTurn
from ._models import ChatTurnEvent as ChatTurnEvent
from ._models import File as File
from ._models import Log as Log
from ._models import MCPServer as MCPServer
from ._models import MCPTool as MCPTool
from ._models import ModelConfig as ModelConfig
from ._models import ModelProvider as ModelProvider
from ._models import Project as Project
from ._models import SenderType as SenderType
from ._models import Team as Team
from ._models import TurnStatus as TurnStatus
from ._models import User as User
from ._models import UserProfile as UserProfile
from ._models import utcnow as utcnow
from ._naming import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._naming import alias_matches as alias_matches
from ._naming import new_alias as new_alias
from ._naming import normalise_name as normalise_name
from ._notify import listen as listen
from ._settings import DatabaseSettings as DatabaseSettings
from ._settings import to_async_url as to_async_url
from .repositories import TURNS_CHANNEL as TURNS_CHANNEL
from .repositories import A2ARepository as A2ARepository
from .repositories import AgentListing as AgentListing
from .repositories import AgentRepository as AgentRepository
from .repositories import Beat as Beat
from .repositories import ChatRepository as ChatRepository
from .repositories import ChatTurnStore as ChatTurnStore
from .repositories import CleanUp as CleanUp
from .repositories import ConfigRepository as ConfigRepository
from .repositories import FileRepository as FileRepository
from .repositories import FlowRepository as FlowRepository
from .repositories import LogEntry as LogEntry
from .repositories import LogRepository as LogRepository
from .repositories import MCPRepository as MCPRepository
from .repositories import MessagePage as MessagePage
from .repositories import ModelChoice as ModelChoice
from .repositories import NewLog as NewLog
from .repositories import NewTool as NewTool
from .repositories import ProcessIdentity as ProcessIdentity
from .repositories import ProcessRecord as ProcessRecord
from .repositories import ProcessTable as ProcessTable
from .repositories import ProfileRepository as ProfileRepository
from .repositories import ProviderRepository as ProviderRepository
from .repositories import ReplyFor as ReplyFor
from .repositories import SessionAttachment as SessionAttachment
from .repositories import ToolSourceUrls as ToolSourceUrls
from .repositories import TurnEventRecord as TurnEventRecord
from .repositories import TurnHistory as TurnHistory
from .repositories import TurnLookup as TurnLookup
from .repositories import TurnRecord as TurnRecord
from .repositories import TurnRowWrite as TurnRowWrite
from .repositories import TurnStatements as TurnStatements
from .repositories import TurnWrites as TurnWrites
from .repositories import UserRepository as UserRepository
from .repositories import distinct_urls as distinct_urls
from .repositories import flow_item_ids as flow_item_ids
from .repositories import is_eligible as is_eligible
from .repositories import reevaluate_tool_flows as reevaluate_tool_flows
from .repositories import valid_item_keys as valid_item_keys
from .repositories.agents import AgentListings as AgentListings
from .repositories.flows import FlowListing as FlowListing
from .repositories.flows import FlowListings as FlowListings
from .repositories.flows import FlowVersions as FlowVersions
from .repositories.flows import item_key as item_key
from .repositories.flows import items_eligible as items_eligible

__all__ = [
    "CATALOGUE_CHANNEL",
    "MAX_NAME_LENGTH",
    "TURNS_CHANNEL",
    "A2ACard",
    "A2ARepository",
    "Agent",
    "AgentFlow",
    "AgentListing",
    "AgentListings",
    "AgentRepository",
    "AlreadyExistsError",
    "ApiKeyCipher",
    "ApiKeyDecryptionError",
    "BackendProcess",
    "Base",
    "Beat",
    "CatalogueVersions",
    "ChatConversation",
    "ChatMessage",
    "ChatRepository",
    "ChatTurn",
    "ChatTurnEvent",
    "ChatTurnStore",
    "CleanUp",
    "ConfigRepository",
    "DatabaseSettings",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "File",
    "FileRepository",
    "FlowListing",
    "FlowListings",
    "FlowRepository",
    "FlowVersions",
    "Log",
    "LogEntry",
    "LogRepository",
    "MCPRepository",
    "MCPServer",
    "MCPTool",
    "MessagePage",
    "MigrationError",
    "ModelChoice",
    "ModelConfig",
    "ModelProvider",
    "NewLog",
    "NewTool",
    "NotFoundError",
    "PersistenceError",
    "ProcessIdentity",
    "ProcessRecord",
    "ProcessTable",
    "ProfileRepository",
    "Project",
    "ProviderRepository",
    "ReplyFor",
    "SenderType",
    "SessionAttachment",
    "Team",
    "ToolSourceUrls",
    "TurnConflictError",
    "TurnEventRecord",
    "TurnHistory",
    "TurnLookup",
    "TurnRecord",
    "TurnRowWrite",
    "TurnStatements",
    "TurnStatus",
    "TurnWrites",
    "User",
    "UserProfile",
    "UserRepository",
    "alias_matches",
    "bound_engine",
    "create_engine",
    "create_sessionmaker",
    "current_revision",
    "distinct_urls",
    "downgrade_to",
    "flow_item_ids",
    "head_revision",
    "is_database_unavailable",
    "is_eligible",
    "is_up_to_date",
    "item_key",
    "items_eligible",
    "listen",
    "listen_for_catalogue_changes",
    "new_alias",
    "normalise_name",
    "open_driver_connection",
    "open_embedded_postgres",
    "parse_key_ring",
    "reevaluate_tool_flows",
    "to_async_url",
    "upgrade_to",
    "upgrade_to_head",
    "utcnow",
    "valid_item_keys",
]
