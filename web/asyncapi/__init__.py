"""The AsyncAPI 3.0 document of the front-end socket and the router socket.

``asyncapi_document()`` builds it from pydantic models: the front-end's chat message
is the model the socket validates with (`web.blueprints.ws.IncomingMessage`), the
other frames are modelled in ``_frontend`` and ``_router``. ``render_page`` renders it
as HTML; ``payload_schema`` gives the JSON Schema one direction of a channel must match.
"""

from __future__ import annotations

from ._document import ASYNCAPI_VERSION as ASYNCAPI_VERSION
from ._document import Action as Action
from ._document import asyncapi_document as asyncapi_document
from ._document import payload_schema as payload_schema
from ._frontend import CancelMessage as CancelMessage
from ._frontend import FrontendQuery as FrontendQuery
from ._frontend import TurnEventFrame as TurnEventFrame
from ._page import render_page as render_page
from ._router import RouterFrameIn as RouterFrameIn

__all__ = [
    "ASYNCAPI_VERSION",
    "Action",
    "CancelMessage",
    "FrontendQuery",
    "RouterFrameIn",
    "TurnEventFrame",
    "asyncapi_document",
    "payload_schema",
    "render_page",
]
