"""API: the STS actions of the query protocol.

Only ``GetCallerIdentity`` for long-term credentials is served so far; other STS actions
answer ``InvalidAction`` until they are implemented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from broker.api.query import Node, Params
from broker.core.model import Principal

StsHandler = Callable[[Principal, Params], Awaitable[Node]]

STS_ACTIONS: dict[str, StsHandler] = {}


async def get_caller_identity(caller: Principal, p: Params) -> Node:
    """GetCallerIdentity: needs no permission; answers who signed the request."""
    p.check()
    return {"UserId": caller.user_id, "Account": caller.account_id, "Arn": caller.arn}


STS_ACTIONS["GetCallerIdentity"] = get_caller_identity
