"""API: the unsigned STS action AssumeRoleWithWebIdentity (parse -> service call -> render).

The request carries no SigV4 signature (botocore sends it unsigned), so the action is listed in
``UNSIGNED_STS_ACTIONS`` and its caller is ``ANONYMOUS``; the role's trust policy alone decides
(``broker.service.federation``). ``WebIdentityToken`` is checked for length before anything
else, and, being a credential, is never echoed in a validation message (spec/security.md A17,
A21).
"""

from __future__ import annotations

from broker.api.query import Node, Params
from broker.api.sts import (
    ROLE_SESSION_NAME,
    ROLE_SESSION_NAME_TEXT,
    UNSIGNED_STS_ACTIONS,
    StsServices,
    _credentials,
    _duration,
    _policy,
    _policy_arns,
    sts_action,
)
from broker.core.model import Principal
from broker.errors import UnavailableError
from broker.service.federation import (
    MAX_TOKEN_CHARS,
    MIN_TOKEN_CHARS,
    FederationService,
    WebIdentityInput,
)

ACTION = "AssumeRoleWithWebIdentity"


def _federation(services: StsServices) -> FederationService:
    federation = getattr(services, "federation", None)
    if not isinstance(federation, FederationService):  # pragma: no cover - wired by broker.app
        raise UnavailableError()
    return federation


def _token_problem(token: str | None) -> str | None:
    """The model constraint ``WebIdentityToken`` breaks, if any (its value is never shown)."""
    if token is None:
        return "Member must not be null"
    if len(token) < MIN_TOKEN_CHARS:
        return f"Member must have length greater than or equal to {MIN_TOKEN_CHARS}"
    if len(token) > MAX_TOKEN_CHARS:
        return f"Member must have length less than or equal to {MAX_TOKEN_CHARS}"
    return None


@sts_action(ACTION)
async def assume_role_with_web_identity(
    services: StsServices, caller: Principal, p: Params
) -> Node:
    """AssumeRoleWithWebIdentity (unsigned; authorized by the role's trust policy)."""
    del caller  # always ANONYMOUS: the token is the only credential
    token = p.raw("WebIdentityToken")
    problem = _token_problem(token)
    if problem is not None:
        p.fail("WebIdentityToken", None if token is None else "*** (not shown)", problem)
    role_arn = p.req("RoleArn", min_len=20, max_len=2048)
    session_name = p.req(
        "RoleSessionName", min_len=2, max_len=64, pattern=ROLE_SESSION_NAME,
        pattern_text=ROLE_SESSION_NAME_TEXT,
    )  # fmt: skip
    provider_id = p.string("ProviderId", min_len=4, max_len=2048)
    policy = _policy(p)
    policy_arns = _policy_arns(p)
    duration = _duration(p, 900, 43200)
    p.check()
    assert token is not None
    result = await _federation(services).assume_role_with_web_identity(
        WebIdentityInput(
            role_arn=role_arn, session_name=session_name, token=token, duration=duration,
            policy=policy, policy_arns=policy_arns, provider_id=provider_id,
        )
    )  # fmt: skip
    issued, identity = result.issued, result.identity
    return {
        "Credentials": _credentials(issued),
        "SubjectFromWebIdentityToken": identity.subject,
        "AssumedRoleUser": {
            "AssumedRoleId": issued.claims.principal_id,
            "Arn": issued.claims.principal_arn,
        },
        "PackedPolicySize": issued.packed_percent,
        "Provider": identity.issuer,
        "Audience": identity.audience,
        "SourceIdentity": issued.claims.source_identity,
    }


UNSIGNED_STS_ACTIONS.add(ACTION)
