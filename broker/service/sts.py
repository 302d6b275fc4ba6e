"""Service: STS use cases: AssumeRole, GetSessionToken, GetFederationToken, key info.

Minting follows AWS's rules: who may ask (the root user cannot assume roles; session
credentials cannot call GetSessionToken/GetFederationToken), duration ranges, role chaining
limits, trust-policy evaluation (the role's trust policy, and for callers the trust policy does
not name directly, their own identity policies too), session policies and tags, sticky source
identity, MFA. The credentials are a fresh ``ASIA`` key id (unique among live sessions), a
secret, and a session token sealed with the active token key (``core.tokens``). Each session
is recorded in the store with its expiry (for listing, revocation and audit) before the
credentials are returned; session records never move an account's generation, so issuing
credentials does not invalidate any cache.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from broker.clock import Clock
from broker.config import LimitsConfig
from broker.core import ids
from broker.core.arn import parse_arn
from broker.core.model import Principal, PrincipalKind
from broker.core.policy import (
    CompiledPolicy,
    ContextValue,
    Decision,
    PolicyKind,
    compile_policy,
    parse_policy,
)
from broker.core.ratelimit import TokenBuckets
from broker.core.tokens import SessionClaims, packed_policy_percent, seal_session_token
from broker.errors import (
    AccessDeniedError,
    InvalidParameterValueError,
    PackedPolicyTooLargeError,
    ThrottledError,
    UnavailableError,
    ValidationError,
)
from broker.service.authz import REQUEST_FACTS, Authorizer
from broker.service.cache import Generations
from broker.service.keys import KeyService
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.reads import RecordCache
from broker.service.txn import Doc, Txn, read, transact
from broker.store.base import GLOBAL_NS, Store, StoreUnavailable

ROLE_SESSION_DEFAULT_SECONDS = 3600
ROLE_SESSION_MIN_SECONDS = 900
ROLE_CHAINING_MAX_SECONDS = 3600
USER_SESSION_DEFAULT_SECONDS = 43200
USER_SESSION_MAX_SECONDS = 129600
ROOT_SESSION_MAX_SECONDS = 3600
MAX_SESSION_POLICY_ARNS = 10
MAX_SESSION_TAGS = 50
MFA_FAILED = "MultiFactorAuthentication failed with invalid MFA one time pass code."


class MfaVerifier(Protocol):
    """Checks an MFA code of a user's (or the root user's) enabled device; see MfaService."""

    def __call__(
        self, account_id: str, user_name: str | None, serial: str, code: str
    ) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class AssumeRoleInput:
    """AssumeRole parameters (already checked against the model's constraints)."""

    role_arn: str
    session_name: str
    duration: int | None = None
    external_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None
    serial_number: str | None = None
    token_code: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """Freshly minted temporary credentials and what the response reports about them."""

    claims: SessionClaims
    token: str = field(repr=False)
    packed_percent: int | None = None


class StsService:
    """Mints temporary credentials."""

    def __init__(
        self,
        store: Store,
        keys: KeyService,
        authz: Authorizer,
        clock: Clock,
        limits: LimitsConfig,
        mfa: MfaVerifier | None = None,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        generations: Generations | None = None,
    ) -> None:
        self._store = store
        self._generations = generations
        self._reads = RecordCache(store, generations) if generations is not None else None
        self._keys = keys
        self._authz = authz
        self.authorizer = authz
        self._clock = clock
        self._mfa = mfa
        self._rng = rng
        self._per_principal = TokenBuckets(limits.issue_rps_per_principal, limits.issue_burst)
        self._per_role = TokenBuckets(limits.issue_rps_per_role, limits.issue_burst)
        self._trust_cache: dict[str, CompiledPolicy] = {}

    # -- shared steps ----------------------------------------------------------------------

    async def read_role(self, account: str, name: str) -> Doc | None:
        """Return the role record ``name`` of ``account`` (cached per account generation).

        Trust policy and duration changes reach this node's cache as every other IAM change
        does: at once from its own commits, within the propagation time from other nodes'.
        """
        key = f"role/{name.lower()}"
        if self._reads is None or self._generations is None:
            return await read(self._store, account, key)
        try:
            await self._generations.watch(account)
        except StoreUnavailable:
            raise UnavailableError() from None
        return await self._reads.get(account, key)

    def _throttle(self, principal_arn: str, role_arn: str | None = None) -> None:
        now = self._clock.monotonic()
        if not self._per_principal.allow(principal_arn, now):
            raise ThrottledError()
        if role_arn is not None and not self._per_role.allow(role_arn.lower(), now):
            raise ThrottledError()

    def _session_policy(self, policy: str | None, arns: Sequence[str], account: str) -> None:
        if policy is not None:
            parse_policy(policy, PolicyKind.SESSION)
        if len(arns) > MAX_SESSION_POLICY_ARNS:
            raise ValidationError(
                f"1 validation error detected: Value at 'policyArns' failed to satisfy "
                f"constraint: Member must have length less than or equal to "
                f"{MAX_SESSION_POLICY_ARNS}"
            )
        for arn in arns:
            parsed = parse_arn(arn)
            if (
                parsed is None
                or parsed.service != "iam"
                or not parsed.resource.startswith("policy/")
            ):
                raise InvalidParameterValueError(f"Invalid policy ARN: {arn}")
            if arn not in AWS_POLICIES and parsed.account != account:
                raise InvalidParameterValueError(
                    f"The policy {arn} must be in the same account as the role or user."
                )

    async def _mfa_check(
        self, caller: Principal, serial: str | None, code: str | None
    ) -> int | None:
        """Verify SerialNumber + TokenCode for the caller; return the authentication time."""
        if serial is None and code is None:
            return None
        if serial is None or code is None:
            raise AccessDeniedError(MFA_FAILED)
        if self._mfa is None or caller.kind not in (PrincipalKind.USER, PrincipalKind.ROOT):
            raise AccessDeniedError(MFA_FAILED)
        user = None if caller.is_root else caller.name
        return await self._mfa(caller.account_id, user, serial, code)

    async def _mint(
        self,
        account: str,
        *,
        kind: str,
        principal_arn: str,
        principal_id: str,
        issuer_arn: str,
        issuer_name: str,
        duration: int,
        caller_arn: str,
        caller_claims: SessionClaims | None,
        mfa_time: int | None,
        source_identity: str | None = None,
        chain_depth: int = 0,
        tags: tuple[tuple[str, str], ...] = (),
        transitive: tuple[str, ...] = (),
        policy: str | None = None,
        policy_arns: tuple[str, ...] = (),
    ) -> IssuedSession:
        """Create the credentials, record the session, and seal the token."""
        now = int(self._clock.now().timestamp())
        key = await self._keys.active_token_key()
        session_id = self._rng(16).hex()
        secret = ids.new_secret_access_key(self._rng)
        facts_ip = _source_ip()

        async def record(txn: Txn) -> SessionClaims:
            akid = ids.new_access_key_id("ASIA", account, self._rng)
            txn.expect_absent(f"asia/{akid}")  # an id clash among live sessions retries
            claims = SessionClaims(
                access_key_id=akid,
                secret_access_key=secret,
                account_id=account,
                kind=kind,
                principal_arn=principal_arn,
                principal_id=principal_id,
                issuer_arn=issuer_arn,
                issuer_name=issuer_name,
                session_id=session_id,
                issued_at=now,
                expires_at=now + duration,
                mfa_authenticated=mfa_time is not None
                or bool(caller_claims and caller_claims.mfa_authenticated),
                mfa_auth_time=mfa_time
                if mfa_time is not None
                else (caller_claims.mfa_auth_time if caller_claims else None),
                source_identity=source_identity,
                chain_depth=chain_depth,
                tags=tags,
                transitive_tag_keys=transitive,
                session_policy=policy,
                session_policy_arns=policy_arns,
                source_ip=facts_ip,
            )
            expires = float(claims.expires_at)
            txn.bump = False  # sessions never change what caches derive
            txn.put(f"asia/{akid}", {"sid": session_id}, expires_at=expires, listed=False)
            # The session id is the key and absent facts are left out: every byte counts
            # when millions of sessions live in Redis (``SessionService`` restores them).
            session: Doc = {
                "akid": akid,
                "kind": kind,
                "arn": principal_arn,
                "issuer": issuer_arn,
                "caller": caller_arn,
                "issued_at": now,
                "expires_at": claims.expires_at,
            }
            if facts_ip:
                session["source_ip"] = facts_ip
            if source_identity is not None:
                session["source_identity"] = source_identity
            txn.put(f"session/{session_id}", session, expires_at=expires)
            return claims

        claims = await transact(self._store, account, record)
        token = seal_session_token(claims, key, self._rng)
        percent = packed_policy_percent(policy, policy_arns, tags) if (
            policy or policy_arns or tags
        ) else None  # fmt: skip
        return IssuedSession(claims, token, percent)

    async def mint_role_session(
        self,
        role: Doc,
        session_name: str,
        duration: int,
        *,
        caller_arn: str,
        policy: str | None = None,
        policy_arns: tuple[str, ...] = (),
        tags: tuple[tuple[str, str], ...] = (),
        transitive: tuple[str, ...] = (),
        source_identity: str | None = None,
    ) -> IssuedSession:
        """Mint a session of ``role`` for a caller already authorized by its own channel.

        For AssumeRoleWithWebIdentity, instance metadata and container credentials: the
        caller (``caller_arn`` names it in the session record) has passed the role's trust
        policy there. Duration and session-policy rules are checked here.
        """
        if duration > int(role["max_session"]):
            raise ValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        account = parse_arn(str(role["arn"]))
        assert account is not None
        self._session_policy(policy, policy_arns, account.account)
        percent = packed_policy_percent(policy, policy_arns, tags)
        if percent > 100:
            raise PackedPolicyTooLargeError(
                f"Packed size of the session policy and session tags consumes {percent}% "
                "of the allotted space."
            )
        self._throttle(caller_arn, str(role["arn"]))
        return await self._mint(
            account.account,
            kind="assumed-role",
            principal_arn=(
                f"arn:aws:sts::{account.account}:assumed-role/{role['name']}/{session_name}"
            ),
            principal_id=f"{role['id']}:{session_name}",
            issuer_arn=str(role["arn"]),
            issuer_name=str(role["name"]),
            duration=duration,
            caller_arn=caller_arn,
            caller_claims=None,
            mfa_time=None,
            source_identity=source_identity,
            tags=tags,
            transitive=transitive,
            policy=policy,
            policy_arns=policy_arns,
        )

    # -- AssumeRole ------------------------------------------------------------------------

    def _trust_policy(self, role: Doc) -> CompiledPolicy:
        text = str(role["trust"])
        hit = self._trust_cache.get(text)
        if hit is None:
            hit = compile_policy(parse_policy(text, PolicyKind.TRUST))
            if len(self._trust_cache) > 10_000:
                self._trust_cache.clear()
            self._trust_cache[text] = hit
        return hit

    async def assume_role(self, caller: Principal, inp: AssumeRoleInput) -> IssuedSession:
        """AssumeRole: trust check, duration and session rules, then mint."""
        if caller.is_root:
            raise AccessDeniedError("Roles may not be assumed by root accounts.")
        arn = parse_arn(inp.role_arn)
        if arn is None or arn.service != "iam" or not arn.resource.startswith("role/"):
            raise ValidationError(f"{inp.role_arn} is invalid")
        role_account, role_name = arn.account, arn.resource.rsplit("/", 1)[1]
        self._throttle(caller.arn, inp.role_arn)
        role = await self.read_role(role_account, role_name)
        not_authorized = AccessDeniedError(
            f"User: {caller.arn} is not authorized to perform: sts:AssumeRole "
            f"on resource: {inp.role_arn}"
        )
        if role is None or role["arn"] != inp.role_arn:
            raise not_authorized
        caller_claims = caller.session
        chained = caller_claims is not None
        if chained and caller_claims is not None and caller_claims.kind == "federated-user":
            raise not_authorized
        duration = inp.duration or ROLE_SESSION_DEFAULT_SECONDS
        if chained and inp.duration is not None and inp.duration > ROLE_CHAINING_MAX_SECONDS:
            raise ValidationError(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles "
                "assumed by role chaining."
            )
        if duration > int(role["max_session"]):
            raise ValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        self._session_policy(inp.policy, inp.policy_arns, role_account)

        # Session tags: transitive tags of the calling session carry over and cannot change.
        inherited: dict[str, tuple[str, str]] = {}
        if caller_claims is not None:
            keys = {k.lower() for k in caller_claims.transitive_tag_keys}
            inherited = {k.lower(): (k, v) for k, v in caller_claims.tags if k.lower() in keys}
        for key, _ in inp.tags:
            if key.lower() in inherited:
                raise InvalidParameterValueError(
                    f"One or more tags are transitive and cannot be overridden: {key}"
                )
        tag_keys = {k.lower() for k, _ in inp.tags}
        for key in inp.transitive_tag_keys:
            if key.lower() not in tag_keys:
                raise InvalidParameterValueError(
                    "The specified transitive tag key must be included in the requested tags."
                )
        tags = tuple(inherited.values()) + tuple(inp.tags)
        if len(tags) > MAX_SESSION_TAGS:
            raise InvalidParameterValueError(
                f"The number of session tags cannot exceed {MAX_SESSION_TAGS}."
            )
        transitive = tuple(
            dict.fromkeys([k for k, _ in inherited.values()] + list(inp.transitive_tag_keys))
        )
        # Source identity is sticky across chaining.
        source_identity = inp.source_identity
        if caller_claims is not None and caller_claims.source_identity:
            if source_identity and source_identity != caller_claims.source_identity:
                raise AccessDeniedError(
                    "Source identity cannot be changed once set for a role session."
                )
            source_identity = caller_claims.source_identity

        percent = packed_policy_percent(inp.policy, inp.policy_arns, tags)
        if percent > 100:
            raise PackedPolicyTooLargeError(
                f"Packed size of the session policy and session tags consumes {percent}% "
                "of the allotted space."
            )
        mfa_time = await self._mfa_check(caller, inp.serial_number, inp.token_code)

        extra: dict[str, ContextValue] = {"sts:RoleSessionName": inp.session_name}
        if inp.external_id is not None:
            extra["sts:ExternalId"] = inp.external_id
        if mfa_time is not None:
            extra["aws:MultiFactorAuthPresent"] = "true"
            extra["aws:MultiFactorAuthAge"] = str(
                max(0, int(self._clock.now().timestamp()) - mfa_time)
            )
        if inp.tags:
            extra.update({f"aws:RequestTag/{k}": v for k, v in inp.tags})
            extra["aws:TagKeys"] = [k for k, _ in inp.tags]
        if inp.transitive_tag_keys:
            extra["sts:TransitiveTagKeys"] = list(inp.transitive_tag_keys)
        if inp.source_identity:
            extra["sts:SourceIdentity"] = inp.source_identity
        trust = ("trust", self._trust_policy(role))
        actions = ["sts:AssumeRole"]
        if inp.tags or inp.transitive_tag_keys:
            actions.append("sts:TagSession")
        if inp.source_identity:
            actions.append("sts:SetSourceIdentity")
        for action in actions:
            result = await self._authz.evaluate(
                caller,
                action,
                inp.role_arn,
                extra,
                resource_policy=trust,
                resource_account=role_account,
                resource_policy_required=True,
            )
            if result.decision is not Decision.ALLOW:
                message = not_authorized.message if action == "sts:AssumeRole" else None
                raise self._authz.denial(caller, action, inp.role_arn, result, extra, message)

        role_path_arn = str(role["arn"])
        session_arn = f"arn:aws:sts::{role_account}:assumed-role/{role['name']}/{inp.session_name}"
        return await self._mint(
            role_account,
            kind="assumed-role",
            principal_arn=session_arn,
            principal_id=f"{role['id']}:{inp.session_name}",
            issuer_arn=role_path_arn,
            issuer_name=str(role["name"]),
            duration=duration,
            caller_arn=caller.arn,
            caller_claims=caller.session,
            mfa_time=mfa_time,
            source_identity=source_identity,
            chain_depth=(caller_claims.chain_depth + 1) if caller_claims else 0,
            tags=tags,
            transitive=transitive,
            policy=inp.policy,
            policy_arns=inp.policy_arns,
        )

    # -- GetSessionToken / GetFederationToken -------------------------------------------------

    async def get_session_token(
        self,
        caller: Principal,
        duration: int | None,
        serial: str | None,
        code: str | None,
    ) -> IssuedSession:
        """GetSessionToken: temporary credentials for an IAM user or the root user."""
        if caller.is_temporary:
            raise AccessDeniedError("Cannot call GetSessionToken with session credentials")
        limit = ROOT_SESSION_MAX_SECONDS if caller.is_root else USER_SESSION_MAX_SECONDS
        default = ROOT_SESSION_MAX_SECONDS if caller.is_root else USER_SESSION_DEFAULT_SECONDS
        duration = default if duration is None else duration
        if duration > limit:
            raise ValidationError(
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                f"to satisfy constraint: Member must have value less than or equal to {limit}"
            )
        self._throttle(caller.arn)
        mfa_time = await self._mfa_check(caller, serial, code)
        return await self._mint(
            caller.account_id,
            kind="session",
            principal_arn=caller.arn,
            principal_id=caller.user_id,
            issuer_arn=caller.arn,
            issuer_name="root" if caller.is_root else caller.name,
            duration=duration,
            caller_arn=caller.arn,
            caller_claims=caller.session,
            mfa_time=mfa_time,
        )

    async def mint_user_session(
        self, user: Principal, duration: int, mfa_time: int | None
    ) -> IssuedSession:
        """Mint a GetSessionToken-style session of an IAM user proven by another channel.

        For the sign-in API: the caller has already checked the user's password (and MFA
        code, whose time is ``mfa_time``); the session is recorded like any other.
        """
        return await self._mint(
            user.account_id,
            kind="session",
            principal_arn=user.arn,
            principal_id=user.user_id,
            issuer_arn=user.arn,
            issuer_name=user.name,
            duration=duration,
            caller_arn=user.arn,
            caller_claims=None,
            mfa_time=mfa_time,
        )

    async def get_federation_token(
        self,
        caller: Principal,
        name: str,
        policy: str | None,
        policy_arns: tuple[str, ...],
        duration: int | None,
        tags: tuple[tuple[str, str], ...],
    ) -> IssuedSession:
        """GetFederationToken: a federated-user session scoped by its session policies."""
        if caller.is_temporary:
            raise AccessDeniedError("Cannot call GetFederationToken with session credentials")
        limit = ROOT_SESSION_MAX_SECONDS if caller.is_root else USER_SESSION_MAX_SECONDS
        default = ROOT_SESSION_MAX_SECONDS if caller.is_root else USER_SESSION_DEFAULT_SECONDS
        duration = default if duration is None else duration
        if duration > limit:
            raise ValidationError(
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                f"to satisfy constraint: Member must have value less than or equal to {limit}"
            )
        await self._authz.authorize(
            caller,
            "sts:GetFederationToken",
            f"arn:aws:sts::{caller.account_id}:federated-user/{name}",
        )
        self._session_policy(policy, policy_arns, caller.account_id)
        if tags:
            await self._authz.authorize(
                caller, "sts:TagSession", f"arn:aws:sts::{caller.account_id}:federated-user/{name}"
            )
        percent = packed_policy_percent(policy, policy_arns, tags)
        if percent > 100:
            raise PackedPolicyTooLargeError(
                f"Packed size of the session policy and session tags consumes {percent}% "
                "of the allotted space."
            )
        self._throttle(caller.arn)
        return await self._mint(
            caller.account_id,
            kind="federated-user",
            principal_arn=f"arn:aws:sts::{caller.account_id}:federated-user/{name}",
            principal_id=f"{caller.account_id}:{name}",
            issuer_arn=caller.arn,
            issuer_name="root" if caller.is_root else caller.name,
            duration=duration,
            caller_arn=caller.arn,
            caller_claims=caller.session,
            mfa_time=None,
            tags=tags,
            policy=policy,
            policy_arns=policy_arns,
        )

    # -- key information -------------------------------------------------------------------

    async def get_access_key_info(self, caller: Principal, access_key_id: str) -> str:
        """GetAccessKeyInfo: the account that owns a key id, decoded from the id itself."""
        del caller  # any authenticated caller may ask; no key state is revealed
        alias = await read(self._store, GLOBAL_NS, f"keyalias/{access_key_id}")
        if alias is not None:  # a key imported at bootstrap whose id does not encode it
            return str(alias["account"])
        account = ids.account_from_access_key_id(access_key_id)
        if account is None:
            raise InvalidParameterValueError(f"Invalid access key id: {access_key_id}")
        return account


def _source_ip() -> str | None:
    facts = REQUEST_FACTS.get()
    return facts.source_ip if facts is not None else None
