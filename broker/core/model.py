"""Core model: the authenticated caller and IAM entity kinds (pure values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PrincipalKind(enum.Enum):
    """What kind of identity signed a request."""

    ROOT = "root"
    USER = "user"
    ASSUMED_ROLE = "assumed-role"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    ``name`` is the IAM user name (or role session name); ``key`` is the access key id used
    (safe to log only through :func:`broker.core.model.key_hint`).
    """

    kind: PrincipalKind
    account_id: str
    arn: str
    user_id: str
    name: str
    access_key_id: str

    @property
    def is_root(self) -> bool:
        """True for the account's root user."""
        return self.kind is PrincipalKind.ROOT


def key_hint(access_key_id: str) -> str:
    """Return a loggable form of an access key id: only its last 4 characters."""
    return "…" + access_key_id[-4:] if access_key_id else "-"
