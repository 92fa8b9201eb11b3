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
from .processes import Beat as Beat
from .processes import ProcessIdentity as ProcessIdentity
from .processes import ProcessRecord as ProcessRecord
from .processes import ProcessTable as ProcessTable
from .providers import ConfigRepository as ConfigRepository
from .providers import ProviderRepository as ProviderRepository
from .tools import A2ARepository as A2ARepository
from .tools import MCPRepository as MCPRepository
from .tools import NewTool as NewTool
from .tools import ToolSourceUrls as ToolSourceUrls
from .tools import distinct_urls as distinct_urls
from .tools import reevaluate_tool_flows as reevaluate_tool_flows
from .tools import valid_item_keys as valid_item_keys
from .turn_history import CleanUp as CleanUp
from .turn_history import ReplyFor as ReplyFor
from .turn_history import TurnEventRecord as TurnEventRecord
from .turn_history import TurnHistory as TurnHistory
from .turn_history import TurnRecord as TurnRecord
from .turns import TURNS_CHANNEL as TURNS_CHANNEL
from .turns import ChatTurnStore as ChatTurnStore
from .turns import ModelChoice as ModelChoice
from .turns import SessionAttachment as SessionAttachment
from .turns import TurnLookup as TurnLookup
from .turns import TurnRowWrite as TurnRowWrite
from .turns import TurnStatements as TurnStatements
from .turns import TurnWrites as TurnWrites
from .users import ProfileRepository as ProfileRepository
from .users import UserRepository as UserRepository

__all__ = [
    "TURNS_CHANNEL",
    "A2ARepository",
    "AgentListing",
    "AgentRepository",
    "Beat",
    "ChatRepository",
    "ChatTurnStore",
    "CleanUp",
    "ConfigRepository",
    "FileRepository",
    "FlowRepository",
    "LogEntry",
    "LogRepository",
    "MCPRepository",
    "MessagePage",
    "ModelChoice",
    "NewLog",
    "NewTool",
    "ProcessIdentity",
    "ProcessRecord",
    "ProcessTable",
    "ProfileRepository",
    "ProviderRepository",
    "ReplyFor",
    "SessionAttachment",
    "ToolSourceUrls",
    "TurnEventRecord",
    "TurnHistory",
    "TurnLookup",
    "TurnRecord",
    "TurnRowWrite",
    "TurnStatements",
    "TurnWrites",
    "UserRepository",
    "distinct_urls",
    "flow_item_ids",
    "is_eligible",
    "reevaluate_tool_flows",
    "valid_item_keys",
]
