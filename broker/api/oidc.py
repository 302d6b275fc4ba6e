"""API: the IAM OIDC identity provider actions of the query protocol.

``CreateOpenIDConnectProvider``, ``GetOpenIDConnectProvider``, ``ListOpenIDConnectProviders``,
``DeleteOpenIDConnectProvider``, ``AddClientIDToOpenIDConnectProvider``,
``RemoveClientIDFromOpenIDConnectProvider``, ``UpdateOpenIDConnectProviderThumbprint``,
``TagOpenIDConnectProvider``, ``UntagOpenIDConnectProvider`` and
``ListOpenIDConnectProviderTags`` register into ``broker.api.iam.IAM_ACTIONS`` when this module
is imported. Each handler checks the model's member constraints (spec/aws-wire.md Appendix A,
"OIDC providers"), calls :class:`broker.service.oidc.OidcProviderService` and renders the
model's shapes.

As on AWS, ``GetOpenIDConnectProvider`` returns ``Url`` without its scheme (the provider id,
``host[:port][/path]``, which is also the ARN's suffix).

Trusted identity propagation (``ContextProvider``, ``IdentityCenterInstanceArn``) is not
offered: a request that asks for it is refused rather than half done.

The handlers use the provider service built for the IAM service's authorizer (the one
``broker.app`` builds with ``[federation]``); without one, a service with the built-in
``[federation]`` defaults is made from the IAM service's store, clock and caches.
"""

from __future__ import annotations

from broker.api.iam import (
    _arn,
    _page_params,
    _tags,
    _tags_node,
    action,
    paginate,
)
from broker.api.query import TAG_KEY, TAG_KEY_TEXT, Node, Params
from broker.config import FederationConfig
from broker.core import limits
from broker.core.model import Principal
from broker.core.oidc import MAX_CLIENT_ID_LENGTH, MAX_URL_LENGTH, THUMBPRINT_LENGTH, provider_id
from broker.errors import InvalidInputError
from broker.service.iam import IamService
from broker.service.oidc import OidcProvider, OidcProviderService, providers_for

ARN_MEMBER = "OpenIDConnectProviderArn"
CONTEXT_PROVIDER_MEMBERS = ("SubjectSourceKey", "SubjectTypeValue", "SubjectTypeSourceKey")


def oidc_for(svc: IamService) -> OidcProviderService:
    """Return the OIDC provider service that shares ``svc``'s authorizer (made if none)."""
    found = providers_for(svc._authz)
    if found is None:
        # The IAM service owns the store, clock and caches this node uses for IAM actions.
        found = OidcProviderService(
            svc._store, svc._clock, svc._authz, svc._generations, FederationConfig()
        )
    return found


# -- parameters ---------------------------------------------------------------------------------


def _provider_arn(p: Params) -> str:
    return _arn(p, ARN_MEMBER)


def _list_shown(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def _client_id(p: Params, member: str, value: str | None = None) -> str:
    v = p.string(member, required=True, min_len=1, max_len=MAX_CLIENT_ID_LENGTH, value=value)
    return v or ""


def _client_ids(p: Params) -> list[str]:
    values = p.members("ClientIDList") or []
    for i, value in enumerate(values, start=1):
        _client_id(p, f"ClientIDList.member.{i}", value)
    return values


def _thumbprints(p: Params, *, required: bool) -> list[str]:
    values = p.members("ThumbprintList")
    if values is None:
        if required:
            p.fail("ThumbprintList", None, "Member must not be null")
        return []
    for i, value in enumerate(values, start=1):
        p.string(
            f"ThumbprintList.member.{i}",
            min_len=THUMBPRINT_LENGTH,
            max_len=THUMBPRINT_LENGTH,
            value=value,
        )
    return values


def _tag_keys(p: Params) -> list[str]:
    keys = p.members("TagKeys")
    if keys is None:
        p.fail("TagKeys", None, "Member must not be null")
        return []
    if len(keys) > limits.TAGS_PER_ENTITY:
        p.fail(
            "TagKeys",
            _list_shown(keys),
            f"Member must have length less than or equal to {limits.TAGS_PER_ENTITY}",
        )
    for i, key in enumerate(keys, start=1):
        p.string(
            f"TagKeys.member.{i}",
            min_len=1,
            max_len=128,
            pattern=TAG_KEY,
            pattern_text=TAG_KEY_TEXT,
            value=key,
        )
    return keys


def _refuse_unsupported(p: Params) -> None:
    """Refuse trusted identity propagation (``ContextProvider``, ``IdentityCenterInstanceArn``)."""
    asked = (
        p.raw("IdentityCenterInstanceArn") is not None
        or any(p.raw(f"ContextProvider.{m}") is not None for m in CONTEXT_PROVIDER_MEMBERS)
        or p.struct_list("ContextProvider.KeyDefinitionList", ("SourceKey", "TargetKey"))
        is not None
    )
    if asked:
        raise InvalidInputError(
            "Trusted identity propagation (ContextProvider, IdentityCenterInstanceArn) "
            "is not available."
        )


# -- renderers ----------------------------------------------------------------------------------


def _tag_pairs(tags: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[Node]:
    return _tags_node([[k, v] for k, v in tags])


def provider_node(provider: OidcProvider) -> dict[str, Node]:
    """Render a ``GetOpenIDConnectProviderResponse``."""
    node: dict[str, Node] = {
        "Url": provider_id(provider.url),
        "ClientIDList": list(provider.client_ids),
        "ThumbprintList": list(provider.thumbprints),
        "CreateDate": provider.created,
    }
    if provider.tags:
        node["Tags"] = _tag_pairs(provider.tags)
    return node


# -- actions ------------------------------------------------------------------------------------


@action("CreateOpenIDConnectProvider")
async def create_open_id_connect_provider(svc: IamService, caller: Principal, p: Params) -> Node:
    url = p.req("Url", min_len=1, max_len=MAX_URL_LENGTH)
    client_ids = _client_ids(p)
    thumbprints = _thumbprints(p, required=False)
    tags = _tags(p)
    p.check()
    _refuse_unsupported(p)
    provider = await oidc_for(svc).create(caller, url, client_ids, thumbprints, tags)
    node: dict[str, Node] = {"OpenIDConnectProviderArn": provider.arn}
    if provider.tags:
        node["Tags"] = _tag_pairs(provider.tags)
    return node


@action("GetOpenIDConnectProvider")
async def get_open_id_connect_provider(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    p.check()
    return provider_node(await oidc_for(svc).get(caller, arn))


@action("ListOpenIDConnectProviders")
async def list_open_id_connect_providers(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    providers = await oidc_for(svc).list(caller)
    return {"OpenIDConnectProviderList": [{"Arn": provider.arn} for provider in providers]}


@action("DeleteOpenIDConnectProvider")
async def delete_open_id_connect_provider(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    p.check()
    await oidc_for(svc).delete(caller, arn)
    return None


@action("AddClientIDToOpenIDConnectProvider")
async def add_client_id(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    client_id = _client_id(p, "ClientID")
    p.check()
    await oidc_for(svc).add_client_id(caller, arn, client_id)
    return None


@action("RemoveClientIDFromOpenIDConnectProvider")
async def remove_client_id(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    client_id = _client_id(p, "ClientID")
    p.check()
    await oidc_for(svc).remove_client_id(caller, arn, client_id)
    return None


@action("UpdateOpenIDConnectProviderThumbprint")
async def update_thumbprint(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    thumbprints = _thumbprints(p, required=True)
    p.check()
    await oidc_for(svc).update_thumbprints(caller, arn, thumbprints)
    return None


@action("TagOpenIDConnectProvider")
async def tag_open_id_connect_provider(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    if p.struct_list("Tags", ("Key", "Value")) is None:
        p.fail("Tags", None, "Member must not be null")
    tags = _tags(p)
    p.check()
    await oidc_for(svc).tag(caller, arn, tags)
    return None


@action("UntagOpenIDConnectProvider")
async def untag_open_id_connect_provider(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    keys = _tag_keys(p)
    p.check()
    await oidc_for(svc).untag(caller, arn, keys)
    return None


@action("ListOpenIDConnectProviderTags")
async def list_open_id_connect_provider_tags(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _provider_arn(p)
    marker, max_items = _page_params(p)
    p.check()
    tags = await oidc_for(svc).list_tags(caller, arn)
    page, tail = paginate(tags, lambda t: t[0].lower(), marker, max_items)
    return {"Tags": _tag_pairs(page), **tail}
