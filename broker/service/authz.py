"""Service: who is calling (access key lookup) and may they (identity-policy evaluation).

Both answers are cached per node and per account generation (``broker.service.cache``):
a change to keys, users, groups, memberships or policies bumps the account's generation, so
the node that made it sees it on the next request and other nodes within the poll interval.
Compiled policies are cached by document text, so evaluation never re-parses JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.clock import Clock
from broker.core import ids
from broker.core.arn import root_arn
from broker.core.keyring import Keyring, SealError
from broker.core.model import Principal, PrincipalKind
from broker.core.policy import (
    CompiledPolicy,
    ContextValue,
    Decision,
    EvaluationResult,
    PolicyKind,
    PolicySet,
    RequestContext,
    compile_policy,
    evaluate_request,
    parse_policy,
)
from broker.core.policy.evaluate import LAYER_BOUNDARY, LAYER_RESOURCE, LAYER_SESSION
from broker.errors import (
    AccessDeniedError,
    InvalidAuthorizationMessageError,
    MalformedPolicyError,
)
from broker.metrics import ACCESS_KEY_CACHE, COMPILED_POLICY_CACHE, POLICY_SET_CACHE
from broker.service.cache import Generations
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.txn import Doc, read, read_many
from broker.store.base import GLOBAL_NS, Store

_POLICY_CACHE_SIZE = 4096
_KEY_CACHE_SIZE = 100_000
NEGATIVE_TTL_SECONDS = 1.0
"""How long an unknown access key id is remembered as unknown (spares the store)."""
_DENY_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}'


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A long-term access key as the authenticator needs it."""

    principal: Principal
    secret: str = field(repr=False)
    active: bool
    generation: int


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Facts about the HTTP request that become policy context keys."""

    source_ip: str
    secure_transport: bool
    current_time: datetime
    user_agent: str = ""
    region: str = ""


REQUEST_FACTS: ContextVar[RequestFacts | None] = ContextVar("request_facts", default=None)
"""Facts of the request being served; set by the API layer for each request."""


class Authenticator:
    """Finds the owner and secret of a long-term access key (cached per generation)."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        generations: Generations,
        clock: Clock,
        negative_ttl: float = NEGATIVE_TTL_SECONDS,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._generations = generations
        self._clock = clock
        self._negative_ttl = negative_ttl
        self._known: dict[str, KeyEntry] = {}
        self._unknown: dict[str, float] = {}

    async def lookup(self, access_key_id: str) -> KeyEntry | None:
        """Return the key's entry, or ``None`` when no such key exists.

        Known keys are cached until their account's generation moves. Unknown keys are
        remembered for ``negative_ttl`` seconds only, and never make this node watch the
        account they name (random key ids must not grow the set of watched namespaces).
        """
        ACCESS_KEY_CACHE.lookups += 1
        hit = self._known.get(access_key_id)
        if (
            hit is not None
            and self._generations.current(hit.principal.account_id) == hit.generation
        ):
            return hit
        now = self._clock.monotonic()
        until = self._unknown.get(access_key_id)
        if until is not None and now < until:
            return None
        ACCESS_KEY_CACHE.misses += 1
        entry: KeyEntry | None = None
        account = ids.account_from_access_key_id(access_key_id)
        if account is not None:
            entry = await self._load(account, access_key_id)
        if entry is None:
            alias = await read(self._store, GLOBAL_NS, f"keyalias/{access_key_id}")
            if alias is not None:
                entry = await self._load(str(alias["account"]), access_key_id)
        if len(self._known) + len(self._unknown) > _KEY_CACHE_SIZE:
            self._known.clear()
            self._unknown.clear()
        if entry is None:
            self._unknown[access_key_id] = now + self._negative_ttl
            self._known.pop(access_key_id, None)
            return None
        self._unknown.pop(access_key_id, None)
        self._known[access_key_id] = entry
        return entry

    async def _load(self, account: str, akid: str) -> KeyEntry | None:
        # The generation is read before the records, so an entry never claims a newer
        # generation than its data; the account is watched only once the key is known.
        gen = self._generations.current(account)
        if gen is None:
            gen = await self._store.generation(account)
        rec = await read(self._store, account, f"akey/{akid}")
        if rec is None:
            return None
        try:
            secret = self._keyring.unseal(rec["secret"], aad=akid.encode("ascii")).decode("utf-8")
        except SealError:
            return None
        if rec["user"] is None:
            principal = Principal(
                PrincipalKind.ROOT, account, root_arn(account), account, "root", akid
            )
        else:
            user = await read(self._store, account, f"user/{rec['user']}")
            if user is None:
                return None
            principal = Principal(
                PrincipalKind.USER, account, user["arn"], user["id"], user["name"], akid
            )
        self._generations.observe(account, gen)
        return KeyEntry(principal, secret, rec["status"] == "Active", gen)


@dataclass(frozen=True, slots=True)
class PrincipalPolicies:
    """A principal's compiled identity policies and permissions boundary."""

    identity: PolicySet
    boundary: tuple[str, CompiledPolicy] | None
    generation: int
    tags: tuple[tuple[str, str], ...] = ()


class Authorizer:
    """Decides IAM actions from the caller's identity policies (user, groups, attached)."""

    def __init__(
        self, store: Store, generations: Generations, sealer: Keyring | None = None
    ) -> None:
        self._store = store
        self._generations = generations
        self._sealer = sealer
        self._sets: dict[tuple[str, str], PrincipalPolicies] = {}
        self._compiled: OrderedDict[str, CompiledPolicy] = OrderedDict()
        self._managed: dict[tuple[str, str], tuple[int, str | None]] = {}

    def compiled(self, document: str) -> CompiledPolicy:
        """Return the compiled form of ``document`` (cached by content)."""
        digest = hashlib.sha256(document.encode("utf-8")).hexdigest()
        COMPILED_POLICY_CACHE.lookups += 1
        hit = self._compiled.get(digest)
        if hit is not None:
            self._compiled.move_to_end(digest)
            return hit
        COMPILED_POLICY_CACHE.misses += 1
        compiled = compile_policy(parse_policy(document, PolicyKind.IDENTITY))
        self._compiled[digest] = compiled
        if len(self._compiled) > _POLICY_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    def _add(self, out: list[tuple[str, CompiledPolicy]], pid: str, document: str) -> None:
        try:
            out.append((pid, self.compiled(document)))
        except MalformedPolicyError:  # pragma: no cover - documents are validated on write
            pass

    def compiled_session(self, document: str) -> CompiledPolicy:
        """Return the compiled form of a session policy (cached by content)."""
        key = "session:" + hashlib.sha256(document.encode("utf-8")).hexdigest()
        COMPILED_POLICY_CACHE.lookups += 1
        hit = self._compiled.get(key)
        if hit is not None:
            self._compiled.move_to_end(key)
            return hit
        COMPILED_POLICY_CACHE.misses += 1
        compiled = compile_policy(parse_policy(document, PolicyKind.SESSION))
        self._compiled[key] = compiled
        if len(self._compiled) > _POLICY_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    async def policies_for(self, principal: Principal) -> PrincipalPolicies:
        """Return the identity policies and boundary behind ``principal`` (cached).

        Users (and their GetSessionToken / GetFederationToken sessions) get the user's policies;
        role sessions get the role's. Cached per account generation.
        """
        account = principal.account_id
        gen = await self._generations.watch(account)
        kind, name = _subject(principal)
        key = (account, f"{kind}/{name.lower()}")
        POLICY_SET_CACHE.lookups += 1
        hit = self._sets.get(key)
        if hit is not None and hit.generation == gen:
            return hit
        POLICY_SET_CACHE.misses += 1
        found = await (self._load_role if kind == "role" else self._load_user)(account, name, gen)
        if len(self._sets) > 100_000:
            self._sets.clear()
        self._sets[key] = found
        return found

    async def session_policies(
        self, principal: Principal
    ) -> tuple[tuple[str, CompiledPolicy], ...] | None:
        """Return the session policies of temporary credentials (``None``: not a scoped session).

        A federated user's session without any session policy allows nothing, as on AWS.
        """
        claims = principal.session
        if claims is None or claims.kind == "session":
            return None
        if not claims.session_policy and not claims.session_policy_arns:
            return () if claims.kind == "federated-user" else None
        out: list[tuple[str, CompiledPolicy]] = []
        if claims.session_policy:
            out.append(("session-policy", self.compiled_session(claims.session_policy)))
        gen = await self._generations.watch(principal.account_id)
        for arn in claims.session_policy_arns:
            text = await self._managed_document(principal.account_id, arn, gen)
            # A managed session policy that no longer exists allows nothing.
            out.append((arn, self.compiled_session(text if text is not None else _DENY_ALL)))
        return tuple(out)

    async def _managed_document(self, account: str, arn: str, gen: int) -> str | None:
        hit = self._managed.get((account, arn))
        if hit is not None and hit[0] == gen:
            return hit[1]
        text = await self._policy_document(account, arn)
        if len(self._managed) > 100_000:
            self._managed.clear()
        self._managed[(account, arn)] = (gen, text)
        return text

    async def _policy_document(self, account: str, arn: str) -> str | None:
        aws = AWS_POLICIES.get(arn)
        if aws is not None:
            return aws.document
        doc = await read(self._store, account, f"policy/{arn.rsplit('/', 1)[1].lower()}")
        if doc is None or doc["arn"] != arn:
            return None
        return str(doc["versions"][doc["default"]]["doc"])

    async def _holder_policies(
        self, account: str, holders: list[Doc]
    ) -> list[tuple[str, CompiledPolicy]]:
        out: list[tuple[str, CompiledPolicy]] = []
        arns: list[str] = []
        for holder in holders:
            for name, document in holder["inline"].items():
                self._add(out, f"{holder['arn']}#{name}", document)
            arns += [a for a in holder["attached"] if a not in arns]
        own = [a for a in arns if a not in AWS_POLICIES]
        docs = await read_many(
            self._store, account, [f"policy/{a.rsplit('/', 1)[1].lower()}" for a in own]
        )
        for arn in arns:
            aws = AWS_POLICIES.get(arn)
            if aws is not None:
                self._add(out, arn, aws.document)
        for arn, doc in zip(own, docs, strict=True):
            if doc is not None and doc["arn"] == arn:
                self._add(out, arn, doc["versions"][doc["default"]]["doc"])
        return out

    async def _boundary(self, account: str, holder: Doc) -> tuple[str, CompiledPolicy] | None:
        if not holder.get("boundary"):
            return None
        text = await self._policy_document(account, holder["boundary"])
        # A boundary whose policy vanished allows nothing (fail closed).
        return (holder["boundary"], self.compiled(text if text is not None else _DENY_ALL))

    async def _load_user(self, account: str, name: str, gen: int) -> PrincipalPolicies:
        user = await read(self._store, account, f"user/{name.lower()}")
        if user is None:
            return PrincipalPolicies(PolicySet(), None, gen)
        tags = tuple((str(k), str(v)) for k, v in user.get("tags", []))
        holders: list[Doc] = [user]
        groups = await read_many(self._store, account, [f"group/{g}" for g in user["groups"]])
        holders += [g for g in groups if g is not None]
        out = await self._holder_policies(account, holders)
        return PrincipalPolicies(PolicySet(out), await self._boundary(account, user), gen, tags)

    async def _load_role(self, account: str, name: str, gen: int) -> PrincipalPolicies:
        role = await read(self._store, account, f"role/{name.lower()}")
        if role is None:
            # The role was deleted: its sessions can do nothing.
            return PrincipalPolicies(PolicySet(), None, gen)
        tags = tuple((str(k), str(v)) for k, v in role.get("tags", []))
        out = await self._holder_policies(account, [role])
        return PrincipalPolicies(PolicySet(out), await self._boundary(account, role), gen, tags)

    def context(
        self,
        principal: Principal,
        action: str,
        resource: str,
        policies: PrincipalPolicies | None = None,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> RequestContext:
        """Build the request context for one decision (spec/iam-policy.md section 9).

        ``extra`` holds action-specific keys (``aws:RequestTag/k``, ``aws:TagKeys``,
        ``iam:PolicyARN``, ``iam:ResourceTag/k`` ...); names are matched case-insensitively.
        Keys AWS sets only for some credentials (``aws:MultiFactorAuthPresent``,
        ``aws:TokenIssueTime``) are absent for long-term access keys, as on AWS.
        """
        facts = REQUEST_FACTS.get()
        claims = principal.session
        keys: dict[str, ContextValue] = {
            "aws:principalaccount": principal.account_id,
            "aws:principaltype": _PRINCIPAL_TYPE[principal.kind],
            "aws:userid": principal.user_id,
        }
        if principal.kind is PrincipalKind.ASSUMED_ROLE and claims is not None:
            keys["aws:principalarn"] = claims.issuer_arn  # the role's ARN, as on AWS
        else:
            keys["aws:principalarn"] = principal.arn
        if principal.kind is PrincipalKind.USER:
            keys["aws:username"] = principal.name
        if facts is not None:
            keys["aws:sourceip"] = facts.source_ip
            keys["aws:securetransport"] = "true" if facts.secure_transport else "false"
            keys["aws:currenttime"] = facts.current_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            keys["aws:epochtime"] = str(int(facts.current_time.timestamp()))
            if facts.user_agent:
                keys["aws:useragent"] = facts.user_agent
            if facts.region:
                keys["aws:requestedregion"] = facts.region
        if policies is not None:
            for tag, tag_value in policies.tags:
                keys[f"aws:principaltag/{tag.lower()}"] = tag_value
        if claims is not None:
            # Temporary credentials: the keys AWS sets only for them.
            keys["aws:tokenissuetime"] = _iso(claims.issued_at)
            keys["aws:multifactorauthpresent"] = "true" if claims.mfa_authenticated else "false"
            if claims.mfa_authenticated and claims.mfa_auth_time is not None and facts is not None:
                age = int(facts.current_time.timestamp()) - claims.mfa_auth_time
                keys["aws:multifactorauthage"] = str(max(age, 0))
            if claims.source_identity:
                keys["aws:sourceidentity"] = claims.source_identity
            for tag, tag_value in claims.tags:  # session tags win over the role's tags
                keys[f"aws:principaltag/{tag.lower()}"] = tag_value
        if extra:
            for key, value in extra.items():
                keys[key.lower()] = value
        return RequestContext(
            action=action,
            resource=resource,
            principal_arn=principal.arn,
            principal_account=principal.account_id,
            keys=keys,
            issuer_arn=claims.issuer_arn if claims is not None else None,
            has_boundary=policies is not None and policies.boundary is not None,
        )

    async def evaluate(
        self,
        principal: Principal,
        action: str,
        resource: str,
        extra: Mapping[str, ContextValue] | None = None,
        *,
        resource_policy: tuple[str, CompiledPolicy] | None = None,
        resource_account: str | None = None,
        resource_policy_required: bool = False,
    ) -> EvaluationResult:
        """Decide ``action`` on ``resource`` for ``principal`` over every policy that applies."""
        policies = await self.policies_for(principal)
        session = await self.session_policies(principal)
        ctx = self.context(principal, action, resource, policies, extra)
        return evaluate_request(
            ctx,
            identity=policies.identity,
            boundary=policies.boundary,
            session=session,
            resource_policy=resource_policy,
            resource_account=resource_account,
            resource_policy_required=resource_policy_required,
        )

    async def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> None:
        """Raise ``AccessDeniedError`` unless the principal may do ``action`` on ``resource``.

        The root user may do everything in its own account.
        """
        if principal.is_root:
            return
        result = await self.evaluate(principal, action, resource, extra)
        if result.decision is not Decision.ALLOW:
            raise self.denial(principal, action, resource, result, extra)

    def decode_message(self, account: str, encoded: str) -> str:
        """Open an encoded authorization failure message issued for ``account``."""
        if self._sealer is None:  # pragma: no cover - always wired by broker.app
            raise InvalidAuthorizationMessageError()
        return decode_authorization_message(self._sealer, account, encoded)

    def denial(
        self,
        principal: Principal,
        action: str,
        resource: str,
        result: EvaluationResult,
        extra: Mapping[str, ContextValue] | None = None,
        message: str | None = None,
    ) -> AccessDeniedError:
        """Return the AccessDenied error for a non-allow decision.

        The message says which kind of policy decided (never its text) and ends with an
        encoded authorization failure message that ``DecodeAuthorizationMessage`` opens.
        """
        text = message or denied(principal, action, resource, result).message
        if self._sealer is None:
            return AccessDeniedError(text)
        ctx = self.context(principal, action, resource, None, extra)
        encoded = encode_authorization_message(self._sealer, principal, ctx, result)
        return AccessDeniedError(f"{text} Encoded authorization failure message: {encoded}")


def _plain(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _aad(account: str) -> bytes:
    return f"authorization-message:{account}".encode("ascii")


def encode_authorization_message(
    sealer: Keyring, principal: Principal, ctx: RequestContext, result: EvaluationResult
) -> str:
    """Seal the decision and its request context for ``DecodeAuthorizationMessage``."""
    conditions = []
    for key, value in sorted(ctx.keys.items()):
        values = value if isinstance(value, list | tuple) else [value]
        conditions.append({"key": key, "values": {"items": [{"value": _plain(v)} for v in values]}})
    payload = {
        "allowed": result.decision is Decision.ALLOW,
        "explicitDeny": result.decision is Decision.EXPLICIT_DENY,
        "matchedStatements": {
            "items": [
                {"statementId": m.sid or "", "effect": m.effect, "policyId": m.policy_id}
                for m in result.matched
            ]
        },
        "failures": {"items": []},
        "context": {
            "principal": {"id": principal.user_id, "arn": principal.arn},
            "action": ctx.action,
            "resource": ctx.resource,
            "conditions": {"items": conditions},
        },
    }
    raw = zlib.compress(json.dumps(payload, separators=(",", ":")).encode("utf-8"), 9)
    return sealer.seal(raw, aad=_aad(principal.account_id))


def decode_authorization_message(sealer: Keyring, account: str, encoded: str) -> str:
    """Open a message sealed for ``account``; raise InvalidAuthorizationMessageError otherwise."""
    try:
        raw = sealer.unseal(encoded.strip(), aad=_aad(account))
        return zlib.decompress(raw).decode("utf-8")
    except (SealError, zlib.error, UnicodeDecodeError, ValueError):
        raise InvalidAuthorizationMessageError() from None


def denied(
    principal: Principal, action: str, resource: str, result: EvaluationResult
) -> AccessDeniedError:
    """Return the AccessDenied error for a non-allow decision, saying which kind of policy."""
    kind = {
        LAYER_BOUNDARY: "permissions boundary",
        LAYER_SESSION: "session policy",
        LAYER_RESOURCE: "resource-based policy",
    }.get(result.layer or "", "identity-based policy")
    article = "an" if kind[0] in "aeiou" else "a"
    how = (
        f"with an explicit deny in {article} {kind}"
        if result.decision is Decision.EXPLICIT_DENY
        else f"because no {kind} allows the {action} action"
    )
    return AccessDeniedError(
        f"User: {principal.arn} is not authorized to perform: {action} "
        f"on resource: {resource} {how}"
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(principal: Principal) -> tuple[str, str]:
    """Whose stored policies apply: ``("user", name)``, ``("role", name)`` or ``("root", "")``."""
    claims = principal.session
    if principal.kind is PrincipalKind.ASSUMED_ROLE and claims is not None:
        return "role", claims.issuer_name
    if principal.kind is PrincipalKind.FEDERATED_USER and claims is not None:
        return "user", claims.issuer_name
    if principal.is_root:
        return "root", ""
    return "user", principal.name


_PRINCIPAL_TYPE = {
    PrincipalKind.ROOT: "Account",
    PrincipalKind.USER: "User",
    PrincipalKind.ASSUMED_ROLE: "AssumedRole",
    PrincipalKind.FEDERATED_USER: "FederatedUser",
    PrincipalKind.ANONYMOUS: "Anonymous",
}


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
