"""Service: OIDC identity providers as IAM entities, and their look-up for web identity.

The IAM actions (Create/Get/List/Delete, client ids, thumbprints, tags) authorize the caller
first, as every IAM action does: a caller without the permission gets ``AccessDenied`` whether
or not the provider exists. :meth:`OidcProviderService.find` is the one unauthorized read: it
serves ``AssumeRoleWithWebIdentity``, which is authorized by the role's trust policy.

URLs follow ``broker.core.oidc`` (canonical form, provider id, ARN); ``[federation]
allow_http_issuers`` decides whether ``http://``, loopback and link-local hosts and ports are
accepted, both when a provider is registered and when a token's issuer is looked up.

Records (in the account's namespace, next to those of ``broker.service.iam``):

=========================  ==========================================================
key                        record
=========================  ==========================================================
``oidc/<id lower>``        provider: ARN, canonical URL, client ids, thumbprints (lower
                           case), creation time, tags. ``<id>`` is the provider id
                           (``host[:port][/path]``); ids differing only in case cannot
                           both be registered.
``count/oidc``             number of providers (the account quota)
=========================  ==========================================================

``find`` runs on every ``AssumeRoleWithWebIdentity``: it reads through the per-generation
record cache (``broker.service.reads``), so a node reads a provider from the store once per
change of its account.

The listener's IAM handlers (``broker.api.oidc``) find the service built for their authorizer
with :func:`providers_for`; every ``OidcProviderService`` registers itself there when built.
"""

from __future__ import annotations

import builtins
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from broker.clock import Clock
from broker.config import FederationConfig
from broker.core.model import Principal
from broker.core.oidc import (
    CLIENT_IDS_PER_PROVIDER,
    OIDC_PROVIDERS_PER_ACCOUNT,
    THUMBPRINTS_PER_PROVIDER,
    OidcUrlError,
    is_thumbprint,
    normalize_issuer_url,
    provider_arn,
    provider_id,
    split_provider_arn,
)
from broker.core.policy import ContextValue
from broker.errors import (
    EntityAlreadyExistsError,
    InvalidInputError,
    LimitExceededError,
    NoSuchEntityError,
    ValidationError,
)
from broker.service.authz import Authorizer
from broker.service.cache import Generations
from broker.service.iam import (
    _tags_merge,
    check_tags,
    now_text,
    request_tag_keys,
    resource_keys,
)
from broker.service.reads import RecordCache
from broker.service.txn import Doc, Txn, scan, transact
from broker.store.base import Store

T = TypeVar("T")

PROVIDER = "oidc"
"""Record prefix of OIDC providers."""

COUNT_KEY = f"count/{PROVIDER}"

ACTION_CREATE = "iam:CreateOpenIDConnectProvider"
ACTION_GET = "iam:GetOpenIDConnectProvider"
ACTION_LIST = "iam:ListOpenIDConnectProviders"
ACTION_DELETE = "iam:DeleteOpenIDConnectProvider"
ACTION_ADD_CLIENT_ID = "iam:AddClientIDToOpenIDConnectProvider"
ACTION_REMOVE_CLIENT_ID = "iam:RemoveClientIDFromOpenIDConnectProvider"
ACTION_UPDATE_THUMBPRINT = "iam:UpdateOpenIDConnectProviderThumbprint"
ACTION_TAG = "iam:TagOpenIDConnectProvider"
ACTION_UNTAG = "iam:UntagOpenIDConnectProvider"
ACTION_LIST_TAGS = "iam:ListOpenIDConnectProviderTags"


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """A registered OIDC provider.

    ``url`` is the canonical URL, scheme included (``broker.core.oidc.normalize_issuer_url``);
    ``thumbprints`` are lower-case hex; ``tags`` are ordered by key.
    """

    arn: str
    url: str
    client_ids: tuple[str, ...]
    thumbprints: tuple[str, ...]
    created: str
    tags: tuple[tuple[str, str], ...]

    @property
    def provider_id(self) -> str:
        """``host[:port][/path]``: the ARN suffix and the condition-key prefix of its tokens."""
        return provider_id(self.url)


_SERVICES: weakref.WeakKeyDictionary[Authorizer, OidcProviderService] = weakref.WeakKeyDictionary()


def providers_for(authz: Authorizer) -> OidcProviderService | None:
    """Return the provider service most recently built with ``authz``, if any."""
    return _SERVICES.get(authz)


def provider_key(pid: str) -> str:
    """Return the record key of the provider whose id is ``pid``."""
    return f"{PROVIDER}/{pid.lower()}"


def _dedupe(values: Sequence[str]) -> list[str]:
    """``values`` without repeats, first occurrences in order."""
    return list(dict.fromkeys(values))


def _view(doc: Doc) -> OidcProvider:
    tags = sorted(((str(k), str(v)) for k, v in doc.get("tags", [])), key=lambda t: t[0])
    return OidcProvider(
        arn=doc["arn"],
        url=doc["url"],
        client_ids=tuple(doc["client_ids"]),
        thumbprints=tuple(doc["thumbprints"]),
        created=doc["created"],
        tags=tuple(tags),
    )


def _missing(arn: str) -> NoSuchEntityError:
    return NoSuchEntityError(f"OpenIDConnect Provider not found for arn {arn}")


def check_thumbprints(thumbprints: Sequence[str]) -> list[str]:
    """Return ``thumbprints`` lower-cased without repeats; ``InvalidInput`` when unusable."""
    if len(thumbprints) > THUMBPRINTS_PER_PROVIDER:
        raise InvalidInputError(
            f"The thumbprint list cannot have more than {THUMBPRINTS_PER_PROVIDER} entries."
        )
    for thumbprint in thumbprints:
        if not is_thumbprint(thumbprint):
            raise InvalidInputError(
                f"Thumbprint {thumbprint} is not valid: it must be 40 hexadecimal characters."
            )
    return _dedupe([t.lower() for t in thumbprints])


class OidcProviderService:
    """OIDC providers of every account the broker hosts."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        authz: Authorizer,
        generations: Generations,
        federation: FederationConfig,
    ) -> None:
        self._store = store
        self._clock = clock
        self._authz = authz
        self._generations = generations
        self._federation = federation
        self._reads = RecordCache(store, generations)
        _SERVICES[authz] = self

    @property
    def allow_http(self) -> bool:
        """Whether ``http://``, loopback/link-local hosts and ports are accepted."""
        return self._federation.allow_http_issuers

    # -- plumbing ----------------------------------------------------------------------------

    async def _tx(self, account: str, fn: Callable[[Txn], Awaitable[T]]) -> T:
        return await transact(self._store, account, fn, on_commit=self._generations.observe)

    async def _allow(
        self,
        caller: Principal,
        action: str,
        resource: str,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> None:
        await self._authz.authorize(caller, action, resource, extra)

    def _normalize(self, url: str) -> str:
        """Canonical URL of a provider being registered (IAM's errors for bad ones)."""
        try:
            return normalize_issuer_url(url, allow_http=self.allow_http)
        except OidcUrlError as exc:
            if exc.malformed:
                raise ValidationError(exc.message) from None
            raise InvalidInputError(exc.message) from None

    @staticmethod
    def _key_of(account_id: str, arn: str) -> str | None:
        """Record key of provider ``arn`` in ``account_id``; ``None`` if it names none there."""
        parts = split_provider_arn(arn)
        if parts is None or parts[0] != account_id:
            return None
        return provider_key(parts[1])

    async def _get(
        self,
        caller: Principal,
        arn: str,
        action: str,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> tuple[str, Doc]:
        """Authorize ``action`` on ``arn``, then read the provider (its key and record).

        The provider's tags join the request context (``iam:ResourceTag/k``). A string that is
        not an OIDC provider ARN at all is ``InvalidInput``; another account's provider, or an
        absent one, is ``NoSuchEntity`` (nothing outside the caller's account is read).
        """
        if split_provider_arn(arn) is None:
            await self._allow(caller, action, arn, extra)
            raise InvalidInputError(f"ARN {arn} is not valid.")
        key = self._key_of(caller.account_id, arn)
        doc = await self._reads.get(caller.account_id, key) if key is not None else None
        if doc is not None and doc["arn"] != arn:
            doc = None
        keys = resource_keys(doc) if doc is not None else {}
        await self._allow(caller, action, arn, {**keys, **(extra or {})})
        if key is None or doc is None:
            raise _missing(arn)
        return key, doc

    async def _must(self, txn: Txn, key: str, arn: str) -> Doc:
        doc = await txn.get(key)
        if doc is None or doc["arn"] != arn:
            raise _missing(arn)
        return doc

    async def _update(
        self, caller: Principal, arn: str, key: str, fn: Callable[[Doc], bool]
    ) -> None:
        """Apply ``fn`` to the provider's record in a transaction; write when it returns True."""

        async def run(txn: Txn) -> None:
            doc = await self._must(txn, key, arn)
            if fn(doc):
                txn.put(key, doc)

        await self._tx(caller.account_id, run)

    # -- CreateOpenIDConnectProvider ---------------------------------------------------------

    async def create(
        self,
        caller: Principal,
        url: str,
        client_ids: Sequence[str],
        thumbprints: Sequence[str],
        tags: Sequence[tuple[str, str]],
    ) -> OidcProvider:
        """CreateOpenIDConnectProvider: register ``url`` (unique per account).

        ``thumbprints`` may be empty: certificates are then checked against the system's
        certificate authorities only.
        """
        canonical = self._normalize(url)
        arn = provider_arn(caller.account_id, canonical)
        await self._allow(caller, ACTION_CREATE, arn, request_tag_keys(tags))
        check_tags(tags)
        clients = _dedupe(client_ids)
        if len(clients) > CLIENT_IDS_PER_PROVIDER:
            raise LimitExceededError(
                f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: "
                f"{CLIENT_IDS_PER_PROVIDER}"
            )
        thumbs = check_thumbprints(thumbprints)
        key = provider_key(provider_id(canonical))
        created = now_text(self._clock)

        async def fn(txn: Txn) -> Doc:
            if await txn.get(key) is not None:
                raise EntityAlreadyExistsError(f"Provider with url {canonical} already exists.")
            count: Doc = await txn.get(COUNT_KEY) or {"n": 0}
            n = int(count["n"]) + 1
            if n > OIDC_PROVIDERS_PER_ACCOUNT:
                raise LimitExceededError(
                    f"Cannot exceed quota for OpenIdConnectProvidersPerAccount: "
                    f"{OIDC_PROVIDERS_PER_ACCOUNT}"
                )
            txn.put(COUNT_KEY, {"n": n})
            doc: Doc = {
                "arn": arn,
                "url": canonical,
                "client_ids": clients,
                "thumbprints": thumbs,
                "created": created,
                "tags": [[k, v] for k, v in tags],
            }
            txn.put(key, doc)
            return doc

        return _view(await self._tx(caller.account_id, fn))

    # -- reads -------------------------------------------------------------------------------

    async def get(self, caller: Principal, arn: str) -> OidcProvider:
        """GetOpenIDConnectProvider."""
        _, doc = await self._get(caller, arn, ACTION_GET)
        return _view(doc)

    async def list(self, caller: Principal) -> builtins.list[OidcProvider]:
        """ListOpenIDConnectProviders: every provider of the caller's account, by ARN."""
        await self._allow(caller, ACTION_LIST, "*")
        docs = await scan(self._store, caller.account_id, f"{PROVIDER}/")
        return sorted((_view(d) for d in docs), key=lambda p: p.arn)

    async def find(self, account_id: str, issuer: str) -> OidcProvider | None:
        """Return the provider of ``account_id`` that a token's ``iss`` names, else ``None``.

        No authorization: this serves ``AssumeRoleWithWebIdentity``, whose caller is
        anonymous. ``issuer`` goes through the same canonical form as registered URLs (scheme
        and host case folded, nothing else changed), then must equal the registered URL
        exactly: a trailing-slash variant, another scheme or another path case names no
        provider. With ``allow_http_issuers`` off, ``http://`` and loopback issuers name no
        provider even if they were registered while it was on.
        """
        try:
            canonical = normalize_issuer_url(issuer, allow_http=self.allow_http)
        except OidcUrlError:
            return None
        watched = self._generations.current(account_id) is not None
        doc = await self._reads.get(account_id, provider_key(provider_id(canonical)))
        if doc is None or doc["url"] != canonical:
            return None
        if not watched:
            # Follow this account's generation from now on, so the next look-up is served from
            # the cache (only accounts that have providers are ever watched this way).
            await self._generations.watch(account_id)
        return _view(doc)

    # -- changes -------------------------------------------------------------------------------

    async def delete(self, caller: Principal, arn: str) -> None:
        """DeleteOpenIDConnectProvider (roles that trust it are left as they are)."""
        key, _ = await self._get(caller, arn, ACTION_DELETE)

        async def fn(txn: Txn) -> None:
            await self._must(txn, key, arn)
            txn.delete(key)
            count: Doc = await txn.get(COUNT_KEY) or {"n": 1}
            txn.put(COUNT_KEY, {"n": max(int(count["n"]) - 1, 0)})

        await self._tx(caller.account_id, fn)

    async def add_client_id(self, caller: Principal, arn: str, client_id: str) -> None:
        """AddClientIDToOpenIDConnectProvider (adding a present client id changes nothing)."""
        key, _ = await self._get(caller, arn, ACTION_ADD_CLIENT_ID)

        def change(doc: Doc) -> bool:
            ids: list[str] = doc["client_ids"]
            if client_id in ids:
                return False
            if len(ids) >= CLIENT_IDS_PER_PROVIDER:
                raise LimitExceededError(
                    f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: "
                    f"{CLIENT_IDS_PER_PROVIDER}"
                )
            ids.append(client_id)
            return True

        await self._update(caller, arn, key, change)

    async def remove_client_id(self, caller: Principal, arn: str, client_id: str) -> None:
        """RemoveClientIDFromOpenIDConnectProvider (removing an absent one changes nothing)."""
        key, _ = await self._get(caller, arn, ACTION_REMOVE_CLIENT_ID)

        def change(doc: Doc) -> bool:
            ids: list[str] = doc["client_ids"]
            if client_id not in ids:
                return False
            ids.remove(client_id)
            return True

        await self._update(caller, arn, key, change)

    async def update_thumbprints(
        self, caller: Principal, arn: str, thumbprints: Sequence[str]
    ) -> None:
        """UpdateOpenIDConnectProviderThumbprint: replace the whole list (it may be empty)."""
        key, _ = await self._get(caller, arn, ACTION_UPDATE_THUMBPRINT)
        thumbs = check_thumbprints(thumbprints)

        def change(doc: Doc) -> bool:
            doc["thumbprints"] = list(thumbs)
            return True

        await self._update(caller, arn, key, change)

    async def tag(self, caller: Principal, arn: str, tags: Sequence[tuple[str, str]]) -> None:
        """TagOpenIDConnectProvider (a present key, in any case, takes the new key and value)."""
        key, _ = await self._get(caller, arn, ACTION_TAG, request_tag_keys(tags))
        check_tags(tags)

        def change(doc: Doc) -> bool:
            doc["tags"] = _tags_merge(doc.get("tags", []), tags)
            return True

        await self._update(caller, arn, key, change)

    async def untag(self, caller: Principal, arn: str, keys: Sequence[str]) -> None:
        """UntagOpenIDConnectProvider (keys match case-insensitively; absent keys are fine)."""
        key, _ = await self._get(caller, arn, ACTION_UNTAG, {"aws:TagKeys": list(keys)})
        drop = {k.lower() for k in keys}

        def change(doc: Doc) -> bool:
            doc["tags"] = [t for t in doc.get("tags", []) if str(t[0]).lower() not in drop]
            return True

        await self._update(caller, arn, key, change)

    async def list_tags(self, caller: Principal, arn: str) -> builtins.list[tuple[str, str]]:
        """ListOpenIDConnectProviderTags: the provider's tags, ordered by key."""
        _, doc = await self._get(caller, arn, ACTION_LIST_TAGS)
        return list(_view(doc).tags)
