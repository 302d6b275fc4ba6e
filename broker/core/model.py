"""Core model: the authenticated caller and IAM entity kinds (pure values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from broker.core.tokens import SessionClaims


class PrincipalKind(enum.Enum):
    """What kind of identity signed a request."""

    ROOT = "root"
    USER = "user"
    ASSUMED_ROLE = "assumed-role"
    FEDERATED_USER = "federated-user"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request.

    ``name`` is the IAM user name, role session name or federated user name; ``access_key_id``
    is the key used (log it only through :func:`key_hint`). ``session`` holds the claims of
    temporary credentials (``None`` for long-term access keys).
    """

    kind: PrincipalKind
    account_id: str
    arn: str
    user_id: str
    name: str
    access_key_id: str
    session: SessionClaims | None = None

    @property
    def is_root(self) -> bool:
        """True for the account's root user (with long-term or session credentials)."""
        return self.kind is PrincipalKind.ROOT

    @property
    def is_temporary(self) -> bool:
        """True when the request was signed with temporary (``ASIA``) credentials."""
        return self.session is not None


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS, "", "", "", "anonymous", "")
"""The caller of an unsigned action (AssumeRoleWithWebIdentity): it has no identity yet."""


def key_hint(access_key_id: str) -> str:
    """Return a loggable form of an access key id: only its last 4 characters."""
    return "…" + access_key_id[-4:] if access_key_id else "-"


def principal_from_claims(claims: SessionClaims) -> Principal:
    """Return the principal that temporary credentials with ``claims`` stand for."""
    if claims.kind == "assumed-role":
        kind = PrincipalKind.ASSUMED_ROLE
        name = claims.principal_arn.rsplit("/", 1)[1]
    elif claims.kind == "federated-user":
        kind = PrincipalKind.FEDERATED_USER
        name = claims.principal_arn.rsplit("/", 1)[1]
    elif claims.issuer_name == "root":
        kind = PrincipalKind.ROOT
        name = "root"
    else:
        kind = PrincipalKind.USER
        name = claims.issuer_name
    return Principal(
        kind=kind,
        account_id=claims.account_id,
        arn=claims.principal_arn,
        user_id=claims.principal_id,
        name=name,
        access_key_id=claims.access_key_id,
        session=claims,
    )
