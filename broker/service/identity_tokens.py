"""Service: outbound identity federation (GetWebIdentityToken and the per-account switch).

The broker is an OIDC issuer for its own principals (DESIGN section 5): a caller asks for a
short-lived JWT that says who it is, signs nothing itself, and hands the JWT to an outside
service, which verifies it against the broker's published JWKS.

* **Per-account switch.** Outbound federation is off until ``EnableOutboundWebIdentityFederation``
  writes the ``outbound`` record in the account's namespace; while it is absent,
  ``GetWebIdentityToken`` fails with ``OutboundWebIdentityFederationDisabledException``.
  Disabling does not invalidate JWTs already issued (they expire on their own).
* **Issuer.** The issuer URL is the broker's own base URL as the request reached it
  (``scheme://host[:port]``, no path), the same for every account: the API layer derives it
  from the request and passes it in; discovery is served at that URL's ``/.well-known/``.
* **Claims** (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_outbound_token_claims.html):
  ``iss``, ``sub`` (the caller's ARN; a role session's role ARN, as AWS does), ``aud`` (one
  string, or a list for several audiences), ``iat``, ``exp``, ``jti``, and under
  ``"https://sts.amazonaws.com/"``: ``aws_account``, ``principal_id`` (the same ARN),
  ``source_region`` (the signed request's region), ``principal_tags`` and ``request_tags``
  when there are any. The header names the signing key's ``kid``.
* **Authorization.** ``sts:GetWebIdentityToken`` on ``*`` with the context keys
  ``sts:IdentityTokenAudience`` (multi-valued), ``sts:DurationSeconds``,
  ``sts:SigningAlgorithm``, ``aws:RequestTag/<key>`` and ``aws:TagKeys``; the switch actions
  need ``iam:EnableOutboundWebIdentityFederation`` (and friends) on ``*``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt

from broker.clock import Clock, iso8601
from broker.core.keyring import SIGNING_ALGORITHMS
from broker.core.model import Principal
from broker.core.policy import ContextValue
from broker.errors import (
    FeatureDisabledError,
    FeatureEnabledError,
    JwtPayloadSizeExceededError,
    OutboundFederationDisabledError,
    SessionDurationEscalationError,
    ValidationError,
)
from broker.service.authz import Authorizer
from broker.service.cache import Generations
from broker.service.keys import MAX_JWT_LIFETIME_SECONDS, KeyService
from broker.service.reads import RecordCache
from broker.service.txn import Txn, transact
from broker.store.base import Store

OUTBOUND_KEY = "outbound"
"""Record in an account's namespace whose presence means outbound federation is enabled."""

CLAIMS_NAMESPACE = "https://sts.amazonaws.com/"
"""Claim that holds the AWS-specific claims, as AWS names it."""

DEFAULT_DURATION_SECONDS = 300
MIN_DURATION_SECONDS = 60
MAX_DURATION_SECONDS = MAX_JWT_LIFETIME_SECONDS
MAX_AUDIENCES = 10
MAX_AUDIENCE_LENGTH = 1000
MAX_REQUEST_TAGS = 50

MAX_JWT_PAYLOAD_BYTES = 8192
"""Largest JSON payload of an identity JWT. AWS documents no number; 8 KiB keeps the encoded
token (about 4/3 of the payload plus a signature) within what HTTP headers commonly accept."""

ACTION_GET_TOKEN = "sts:GetWebIdentityToken"
ACTION_ENABLE = "iam:EnableOutboundWebIdentityFederation"
ACTION_DISABLE = "iam:DisableOutboundWebIdentityFederation"
ACTION_INFO = "iam:GetOutboundWebIdentityFederationInfo"


# -- errors (the STS and IAM models' shapes for these actions) -----------------------------


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebIdentityTokenInput:
    """GetWebIdentityToken parameters (already checked against the model's constraints)."""

    audiences: tuple[str, ...]
    signing_algorithm: str
    issuer: str
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    tags: tuple[tuple[str, str], ...] = ()
    region: str = ""


@dataclass(frozen=True, slots=True)
class IssuedIdentityToken:
    """A signed identity JWT and what the response reports about it."""

    token: str = field(repr=False)
    expiration: datetime
    jti: str
    kid: str


@dataclass(frozen=True, slots=True)
class OutboundFederationInfo:
    """The account's outbound federation state (only ever reported while enabled)."""

    enabled: bool
    issuer: str
    enabled_at: str | None = None


def _check_tags(tags: Sequence[tuple[str, str]]) -> None:
    if len(tags) > MAX_REQUEST_TAGS:
        raise ValidationError(f"Tags: at most {MAX_REQUEST_TAGS} tags are allowed.")
    seen: set[str] = set()
    for key, _ in tags:
        if key.lower() in seen:
            raise ValidationError(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive."
            )
        seen.add(key.lower())


class IdentityTokenService:
    """Issues identity JWTs and keeps each account's outbound federation switch."""

    def __init__(
        self,
        store: Store,
        keys: KeyService,
        authz: Authorizer,
        generations: Generations,
        clock: Clock,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._store = store
        self._keys = keys
        self._authz = authz
        self._generations = generations
        self._clock = clock
        self._rng = rng
        self._reads = RecordCache(store, generations)

    # -- the per-account switch ------------------------------------------------------------

    async def enable(self, caller: Principal, issuer: str) -> OutboundFederationInfo:
        """EnableOutboundWebIdentityFederation: turn the switch on; ``FeatureEnabled`` if on."""
        await self._authz.authorize(caller, ACTION_ENABLE, "*")
        stamp = iso8601(self._clock.now())

        async def fn(txn: Txn) -> None:
            if await txn.get(OUTBOUND_KEY) is not None:
                raise FeatureEnabledError()
            txn.put(OUTBOUND_KEY, {"enabled_at": stamp, "by": caller.arn})

        await transact(self._store, caller.account_id, fn, on_commit=self._generations.observe)
        return OutboundFederationInfo(True, issuer, stamp)

    async def disable(self, caller: Principal) -> None:
        """DisableOutboundWebIdentityFederation: turn the switch off; ``FeatureDisabled`` if off."""
        await self._authz.authorize(caller, ACTION_DISABLE, "*")

        async def fn(txn: Txn) -> None:
            if await txn.get(OUTBOUND_KEY) is None:
                raise FeatureDisabledError()
            txn.delete(OUTBOUND_KEY)

        await transact(self._store, caller.account_id, fn, on_commit=self._generations.observe)

    async def info(self, caller: Principal, issuer: str) -> OutboundFederationInfo:
        """GetOutboundWebIdentityFederationInfo: the issuer while on; ``FeatureDisabled`` if off."""
        await self._authz.authorize(caller, ACTION_INFO, "*")
        record = await self._record(caller.account_id)
        if record is None:
            raise FeatureDisabledError()
        return OutboundFederationInfo(True, issuer, str(record.get("enabled_at") or "") or None)

    async def is_enabled(self, account_id: str) -> bool:
        """True when outbound federation is on for ``account_id`` (cached per generation)."""
        return await self._record(account_id) is not None

    async def _record(self, account_id: str) -> Mapping[str, object] | None:
        await self._generations.watch(account_id)
        return await self._reads.get(account_id, OUTBOUND_KEY)

    # -- tokens ----------------------------------------------------------------------------

    async def get_web_identity_token(
        self, caller: Principal, inp: WebIdentityTokenInput
    ) -> IssuedIdentityToken:
        """GetWebIdentityToken: sign a JWT saying who ``caller`` is, for ``inp.audiences``.

        Order of checks: parameter rules, authorization, the account's switch, the session's
        own expiry (a session cannot mint a JWT that outlives it), then the payload size.
        """
        if inp.signing_algorithm not in SIGNING_ALGORITHMS:
            raise ValidationError(
                f"SigningAlgorithm must be one of: {', '.join(SIGNING_ALGORITHMS)}."
            )
        if not 1 <= len(inp.audiences) <= MAX_AUDIENCES:
            raise ValidationError(f"Audience must list 1 to {MAX_AUDIENCES} values.")
        if not MIN_DURATION_SECONDS <= inp.duration_seconds <= MAX_DURATION_SECONDS:
            raise ValidationError(
                f"DurationSeconds must be between {MIN_DURATION_SECONDS} and "
                f"{MAX_DURATION_SECONDS}."
            )
        _check_tags(inp.tags)
        extra: dict[str, ContextValue] = {
            "sts:identitytokenaudience": list(inp.audiences),
            "sts:durationseconds": inp.duration_seconds,
            "sts:signingalgorithm": inp.signing_algorithm,
        }
        if inp.tags:
            extra["aws:tagkeys"] = [k for k, _ in inp.tags]
            for key, value in inp.tags:
                extra[f"aws:requesttag/{key}"] = value
        await self._authz.authorize(caller, ACTION_GET_TOKEN, "*", extra)
        if not await self.is_enabled(caller.account_id):
            raise OutboundFederationDisabledError()

        now = self._clock.now()
        iat = int(now.timestamp())
        exp = iat + inp.duration_seconds
        session = caller.session
        if session is not None and exp > session.expires_at:
            raise SessionDurationEscalationError()

        subject = _subject(caller)
        aws: dict[str, object] = {"aws_account": caller.account_id, "principal_id": subject}
        if inp.region:
            aws["source_region"] = inp.region
        principal_tags = await self._principal_tags(caller)
        if principal_tags:
            aws["principal_tags"] = principal_tags
        if inp.tags:
            aws["request_tags"] = dict(inp.tags)
        jti = str(uuid.UUID(bytes=self._rng(16), version=4))
        audience: str | list[str] = (
            inp.audiences[0] if len(inp.audiences) == 1 else list(inp.audiences)
        )
        claims: dict[str, object] = {
            "iss": inp.issuer,
            "sub": subject,
            "aud": audience,
            "iat": iat,
            "exp": exp,
            "jti": jti,
            CLAIMS_NAMESPACE: aws,
        }
        size = len(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_JWT_PAYLOAD_BYTES:
            raise JwtPayloadSizeExceededError(
                f"The token payload would be {size} bytes; at most {MAX_JWT_PAYLOAD_BYTES} "
                "are allowed. Reduce the number of request tags."
            )
        signer = await self._keys.signer(inp.signing_algorithm)
        token = jwt.encode(
            claims,
            signer.private,
            algorithm=inp.signing_algorithm,
            headers={"kid": signer.key.kid, "typ": "JWT"},
        )
        return IssuedIdentityToken(
            token=token, expiration=datetime.fromtimestamp(exp, UTC), jti=jti, kid=signer.key.kid
        )

    async def _principal_tags(self, caller: Principal) -> dict[str, str]:
        tags: dict[str, str] = {}
        if not caller.is_root:
            for key, value in (await self._authz.policies_for(caller)).tags:
                tags[key] = value
        if caller.session is not None:
            for key, value in caller.session.tags:
                tags[key] = value
        return tags


def _subject(caller: Principal) -> str:
    """The ARN a JWT names: a role session's role ARN, otherwise the caller's own ARN."""
    if caller.session is not None and caller.session.kind == "assumed-role":
        return caller.session.issuer_arn
    return caller.arn
