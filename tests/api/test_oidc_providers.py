"""API tests: OIDC identity providers (every IAM OIDC provider action) and ``find``.

The broker runs in-process on a ``MemoryStore`` (``tests/api/conftest.py``). Replies are parsed
with botocore's own parser where the shape matters, so what boto3 users get is checked too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from broker.api.oidc import oidc_for
from broker.config import FederationConfig
from broker.core.limits import TAGS_PER_ENTITY
from broker.core.oidc import (
    CLIENT_IDS_PER_PROVIDER,
    INVALID_URL,
    NO_SCHEME,
    NOT_HTTPS,
    OIDC_PROVIDERS_PER_ACCOUNT,
    THUMBPRINTS_PER_PROVIDER,
)
from broker.service.oidc import OidcProviderService, providers_for
from broker.store.base import Record
from tests.api.conftest import (
    Api,
    ApiFactory,
    Creds,
    allow,
    boto_parse,
    deny,
    list_params,
    tag_params,
)

THUMB_A = "3768084dfb3d2b68b7897bf5f565da8ef0aaaaaa"
THUMB_B = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
GITHUB = "https://token.actions.githubusercontent.com"


def create_params(
    client_ids: Sequence[str] = (),
    thumbprints: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Members of CreateOpenIDConnectProvider other than ``Url``."""
    out = list_params("ClientIDList", list(client_ids))
    if thumbprints is not None:
        out.update(list_params("ThumbprintList", list(thumbprints)))
    if tags:
        out.update(tag_params(tags))
    return out


async def create(
    api: Api,
    url: str,
    client_ids: Sequence[str] = ("sts.amazonaws.com",),
    thumbprints: Sequence[str] | None = (THUMB_A,),
    tags: Mapping[str, str] | None = None,
    creds: Creds | None = None,
) -> str:
    """Create a provider and return its ARN."""
    reply = await api.ok(
        "CreateOpenIDConnectProvider",
        creds,
        create_params(client_ids, thumbprints, tags),
        Url=url,
    )
    arn = reply.text("OpenIDConnectProviderArn")
    assert arn is not None
    return arn


async def get(api: Api, arn: str) -> dict[str, Any]:
    """GetOpenIDConnectProvider as boto3 returns it."""
    return boto_parse(await api.ok("GetOpenIDConnectProvider", OpenIDConnectProviderArn=arn))


async def arns(api: Api, creds: Creds | None = None) -> list[str]:
    reply = await api.ok("ListOpenIDConnectProviders", creds)
    return [e["Arn"] for e in boto_parse(reply)["OpenIDConnectProviderList"]]


def http_service(api: Api) -> OidcProviderService:
    """A provider service with ``allow_http_issuers`` on, serving this API's IAM handlers."""
    rt = api.rt
    return OidcProviderService(
        rt.store,
        rt.clock,
        rt.authorizer,
        rt.generations,
        FederationConfig(allow_http_issuers=True),
    )


# -- create / get / list / delete -----------------------------------------------------------------


async def test_lifecycle(api: Api) -> None:
    reply = await api.ok(
        "CreateOpenIDConnectProvider",
        params=create_params(
            ["sts.amazonaws.com", "my-app", "sts.amazonaws.com"],
            [THUMB_A.upper(), THUMB_B],
            {"team": "platform", "env": "prod"},
        ),
        Url="https://Token.Actions.GithubUserContent.com",
    )
    created = boto_parse(reply)
    arn = f"arn:aws:iam::{api.account_id}:oidc-provider/token.actions.githubusercontent.com"
    assert created["OpenIDConnectProviderArn"] == arn
    assert created["Tags"] == [
        {"Key": "env", "Value": "prod"},
        {"Key": "team", "Value": "platform"},
    ]

    got = await get(api, arn)
    assert got["Url"] == "token.actions.githubusercontent.com"  # as AWS: without the scheme
    assert got["ClientIDList"] == ["sts.amazonaws.com", "my-app"]  # repeats dropped
    assert got["ThumbprintList"] == [THUMB_A, THUMB_B]  # stored lower case
    assert got["Tags"] == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "platform"}]
    assert got["CreateDate"].year >= 2024

    assert await arns(api) == [arn]
    await api.ok("DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    assert await arns(api) == []
    (await api.call("GetOpenIDConnectProvider", OpenIDConnectProviderArn=arn)).expect(
        404, "NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}"
    )
    (await api.call("DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=arn)).expect(
        404, "NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}"
    )


async def test_without_client_ids_thumbprints_or_tags(api: Api) -> None:
    reply = await api.ok("CreateOpenIDConnectProvider", Url="https://issuer.example.com/t")
    assert "Tags" not in boto_parse(reply)
    arn = reply.text("OpenIDConnectProviderArn")
    assert arn == f"arn:aws:iam::{api.account_id}:oidc-provider/issuer.example.com/t"
    got = await get(api, arn)
    assert got["ClientIDList"] == []
    assert got["ThumbprintList"] == []
    assert "Tags" not in got


async def test_eks_style_path_keeps_its_case(api: Api) -> None:
    url = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    arn = await create(api, url)
    assert arn.endswith(
        ":oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    )
    assert (await get(api, arn))["Url"] == url.removeprefix("https://")


async def test_list_is_ordered_and_per_account(api: Api) -> None:
    b = await create(api, "https://b.example.com")
    a = await create(api, "https://a.example.com/x")
    c = await create(api, GITHUB)
    assert await arns(api) == sorted([a, b, c])
    other_account, other_root = await api.new_account()
    assert await arns(api, other_root) == []
    # Another account's ARN names nothing for this caller, even though it exists.
    reply = await api.call("GetOpenIDConnectProvider", other_root, OpenIDConnectProviderArn=a)
    reply.expect(404, "NoSuchEntity")
    # The same URL can be registered in another account.
    theirs = await create(api, "https://a.example.com/x", creds=other_root)
    assert theirs == a.replace(api.account_id, other_account)


async def test_same_url_twice(api: Api) -> None:
    await create(api, GITHUB)
    for variant in (GITHUB, "HTTPS://TOKEN.actions.githubusercontent.com"):
        reply = await api.call("CreateOpenIDConnectProvider", Url=variant)
        reply.expect(409, "EntityAlreadyExists", f"Provider with url {GITHUB} already exists.")


async def test_ids_differing_only_in_path_case_are_one_name(api: Api) -> None:
    await create(api, "https://example.com/Tenant")
    reply = await api.call("CreateOpenIDConnectProvider", Url="https://example.com/tenant")
    reply.expect(409, "EntityAlreadyExists")


async def test_trailing_slash_is_another_provider(api: Api) -> None:
    bare = await create(api, "https://acme.eu.auth0.com")
    slash = await create(api, "https://acme.eu.auth0.com/")
    assert slash == bare + "/"
    assert (await get(api, slash))["Url"] == "acme.eu.auth0.com/"
    assert (await get(api, bare))["Url"] == "acme.eu.auth0.com"


async def test_get_by_arn_is_exact(api: Api) -> None:
    arn = await create(api, "https://example.com/Tenant")
    for wrong in (arn.replace("Tenant", "tenant"), arn + "/", arn.replace("example", "EXAMPLE")):
        reply = await api.call("GetOpenIDConnectProvider", OpenIDConnectProviderArn=wrong)
        reply.expect(404, "NoSuchEntity", f"OpenIDConnect Provider not found for arn {wrong}")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:role/some-role",
        "not-an-arn-at-all-but-long",
        "arn:aws:iam::123456789012:oidc-provider/",
    ],
)
async def test_get_with_something_else_than_a_provider_arn(api: Api, arn: str) -> None:
    reply = await api.call("GetOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    reply.expect(400, "InvalidInput", f"ARN {arn} is not valid.")


async def test_account_quota(api: Api) -> None:
    made = [
        await create(api, f"https://issuer-{i}.example.com", client_ids=(), thumbprints=None)
        for i in range(OIDC_PROVIDERS_PER_ACCOUNT)
    ]
    reply = await api.call("CreateOpenIDConnectProvider", Url="https://one-more.example.com")
    reply.expect(
        409,
        "LimitExceeded",
        f"Cannot exceed quota for OpenIdConnectProvidersPerAccount: {OIDC_PROVIDERS_PER_ACCOUNT}",
    )
    await api.ok("DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=made[0])
    await create(api, "https://one-more.example.com")
    assert len(await arns(api)) == OIDC_PROVIDERS_PER_ACCOUNT


# -- URL checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status", "code", "message"),
    [
        ("server.example.com", 400, "ValidationError", NO_SCHEME),
        ("https://", 400, "ValidationError", NO_SCHEME),
        ("http://server.example.com", 400, "InvalidInput", NOT_HTTPS),
        ("https://server.example.com?x=1", 400, "InvalidInput", INVALID_URL),
        ("https://server.example.com#f", 400, "InvalidInput", INVALID_URL),
        ("https://u:p@server.example.com", 400, "InvalidInput", INVALID_URL),
        ("https://ser_ver.example.com", 400, "InvalidInput", INVALID_URL),
        ("https://127.1", 400, "InvalidInput", INVALID_URL),
        (
            "https://server.example.com:8443",
            400,
            "InvalidInput",
            f"{INVALID_URL} The URL must not contain a port number.",
        ),
        (
            "https://127.0.0.1/x",
            400,
            "InvalidInput",
            f"{INVALID_URL} The host is a loopback or link-local address.",
        ),
        (
            "https://169.254.169.254",
            400,
            "InvalidInput",
            f"{INVALID_URL} The host is a loopback or link-local address.",
        ),
        (
            "https://localhost",
            400,
            "InvalidInput",
            f"{INVALID_URL} The host is a loopback address.",
        ),
    ],
)
async def test_bad_urls(api: Api, url: str, status: int, code: str, message: str) -> None:
    reply = await api.call("CreateOpenIDConnectProvider", Url=url)
    reply.expect(status, code, message)
    assert await arns(api) == []


async def test_url_model_constraints(api: Api) -> None:
    reply = await api.call("CreateOpenIDConnectProvider")
    reply.expect(
        400,
        "ValidationError",
        "1 validation error detected: Value null at 'url' failed to satisfy constraint: "
        "Member must not be null",
    )
    long_url = "https://example.com/" + "a" * 236
    reply = await api.call("CreateOpenIDConnectProvider", Url=long_url)
    reply.expect(400, "ValidationError")
    assert "Member must have length less than or equal to 255" in (reply.message or "")
    reply = await api.call("CreateOpenIDConnectProvider", Url="")
    reply.expect(400, "ValidationError")
    assert "Member must have length greater than or equal to 1" in (reply.message or "")


async def test_http_issuers_with_allow_http(api: Api) -> None:
    svc = http_service(api)
    assert providers_for(api.rt.authorizer) is svc
    arn = await create(api, "http://127.0.0.1:8080/realms/dev")
    assert arn == f"arn:aws:iam::{api.account_id}:oidc-provider/127.0.0.1:8080/realms/dev"
    assert (await get(api, arn))["Url"] == "127.0.0.1:8080/realms/dev"
    loopback = await create(api, "https://localhost:8443")
    assert loopback.endswith(":oidc-provider/localhost:8443")
    # The scheme is not part of the name: https on the same host and path is the same provider.
    reply = await api.call("CreateOpenIDConnectProvider", Url="https://127.0.0.1:8080/realms/dev")
    reply.expect(409, "EntityAlreadyExists")


async def test_listener_follows_the_federation_config(api_factory: ApiFactory) -> None:
    lab = await api_factory(BROKER_FEDERATION_ALLOW_HTTP_ISSUERS="true")
    assert oidc_for(lab.rt.iam).allow_http is True
    arn = await create(lab, "http://localhost:8080/realms/lab")
    assert arn == f"arn:aws:iam::{lab.account_id}:oidc-provider/localhost:8080/realms/lab"


async def test_default_federation_config_refuses_http(api: Api) -> None:
    svc = oidc_for(api.rt.iam)
    assert svc.allow_http is False
    reply = await api.call("CreateOpenIDConnectProvider", Url="http://127.0.0.1:8080/realms/dev")
    reply.expect(400, "InvalidInput", NOT_HTTPS)


# -- client ids ---------------------------------------------------------------------------------


async def test_client_ids(api: Api) -> None:
    arn = await create(api, GITHUB, client_ids=("a",))
    await api.ok("AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="b")
    await api.ok("AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="b")
    assert (await get(api, arn))["ClientIDList"] == ["a", "b"]
    await api.ok(
        "RemoveClientIDFromOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="a"
    )
    await api.ok(
        "RemoveClientIDFromOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="zzz"
    )
    assert (await get(api, arn))["ClientIDList"] == ["b"]
    missing = arn + "x"
    for action in ("AddClientIDToOpenIDConnectProvider", "RemoveClientIDFromOpenIDConnectProvider"):
        reply = await api.call(action, OpenIDConnectProviderArn=missing, ClientID="c")
        reply.expect(404, "NoSuchEntity", f"OpenIDConnect Provider not found for arn {missing}")


async def test_client_id_quota(api: Api) -> None:
    ids = [f"client-{i}" for i in range(CLIENT_IDS_PER_PROVIDER)]
    quota = f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {CLIENT_IDS_PER_PROVIDER}"
    reply = await api.call(
        "CreateOpenIDConnectProvider",
        params=create_params([*ids, "one-more"]),
        Url=GITHUB,
    )
    reply.expect(409, "LimitExceeded", quota)
    arn = await create(api, GITHUB, client_ids=ids)
    reply = await api.call(
        "AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="one-more"
    )
    reply.expect(409, "LimitExceeded", quota)
    # A client id already present is no addition.
    await api.ok(
        "AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="client-0"
    )


async def test_client_id_model_constraints(api: Api) -> None:
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=create_params(["ok", "x" * 256]), Url=GITHUB
    )
    reply.expect(400, "ValidationError")
    assert "at 'clientIDList.member.2'" in (reply.message or "")
    assert "Member must have length less than or equal to 255" in (reply.message or "")
    arn = await create(api, GITHUB)
    reply = await api.call("AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    reply.expect(400, "ValidationError")
    assert "Value null at 'clientID'" in (reply.message or "")
    reply = await api.call(
        "AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID=""
    )
    reply.expect(400, "ValidationError")
    reply = await api.call(
        "AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn="short", ClientID="c"
    )
    reply.expect(400, "ValidationError")
    assert "at 'openIDConnectProviderArn'" in (reply.message or "")


# -- thumbprints --------------------------------------------------------------------------------


async def test_update_thumbprints(api: Api) -> None:
    arn = await create(api, GITHUB, thumbprints=(THUMB_A,))
    await api.ok(
        "UpdateOpenIDConnectProviderThumbprint",
        params=list_params("ThumbprintList", [THUMB_B.upper(), THUMB_A]),
        OpenIDConnectProviderArn=arn,
    )
    assert (await get(api, arn))["ThumbprintList"] == [THUMB_B, THUMB_A]
    # An empty list (the bare member) clears it: thumbprints are optional.
    await api.ok(
        "UpdateOpenIDConnectProviderThumbprint",
        params={"ThumbprintList": ""},
        OpenIDConnectProviderArn=arn,
    )
    assert (await get(api, arn))["ThumbprintList"] == []
    reply = await api.call("UpdateOpenIDConnectProviderThumbprint", OpenIDConnectProviderArn=arn)
    reply.expect(400, "ValidationError")
    assert "Value null at 'thumbprintList'" in (reply.message or "")
    missing = arn + "x"
    reply = await api.call(
        "UpdateOpenIDConnectProviderThumbprint",
        params=list_params("ThumbprintList", [THUMB_A]),
        OpenIDConnectProviderArn=missing,
    )
    reply.expect(404, "NoSuchEntity")


async def test_thumbprint_checks(api: Api) -> None:
    six = [f"{i}" * 40 for i in range(THUMBPRINTS_PER_PROVIDER + 1)]
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=create_params(thumbprints=six), Url=GITHUB
    )
    reply.expect(
        400,
        "InvalidInput",
        f"The thumbprint list cannot have more than {THUMBPRINTS_PER_PROVIDER} entries.",
    )
    not_hex = "3768084dfb3d2b68b7897bf5f565da8efEXAMPLE"
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=create_params(thumbprints=[not_hex]), Url=GITHUB
    )
    reply.expect(
        400,
        "InvalidInput",
        f"Thumbprint {not_hex} is not valid: it must be 40 hexadecimal characters.",
    )
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=create_params(thumbprints=["a" * 39]), Url=GITHUB
    )
    reply.expect(
        400,
        "ValidationError",
        f"1 validation error detected: Value '{'a' * 39}' at 'thumbprintList.member.1' failed to "
        "satisfy constraint: Member must have length greater than or equal to 40",
    )
    assert await arns(api) == []
    arn = await create(api, GITHUB, thumbprints=six[:THUMBPRINTS_PER_PROVIDER])
    reply = await api.call(
        "UpdateOpenIDConnectProviderThumbprint",
        params=list_params("ThumbprintList", six),
        OpenIDConnectProviderArn=arn,
    )
    reply.expect(400, "InvalidInput")
    assert (await get(api, arn))["ThumbprintList"] == six[:THUMBPRINTS_PER_PROVIDER]


# -- tags ---------------------------------------------------------------------------------------


async def list_tags(api: Api, arn: str, **page: str) -> dict[str, Any]:
    """ListOpenIDConnectProviderTags as boto3 returns it (``page``: Marker, MaxItems)."""
    reply = await api.ok("ListOpenIDConnectProviderTags", None, page, OpenIDConnectProviderArn=arn)
    return boto_parse(reply)


async def test_tags(api: Api) -> None:
    arn = await create(api, GITHUB, tags={"Team": "a"})
    await api.ok(
        "TagOpenIDConnectProvider",
        params=tag_params({"team": "b", "env": "prod"}),
        OpenIDConnectProviderArn=arn,
    )
    listed = await list_tags(api, arn)
    assert listed["Tags"] == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "b"}]
    assert listed["IsTruncated"] is False
    await api.ok(
        "UntagOpenIDConnectProvider",
        params=list_params("TagKeys", ["ENV", "absent"]),
        OpenIDConnectProviderArn=arn,
    )
    assert (await list_tags(api, arn))["Tags"] == [{"Key": "team", "Value": "b"}]
    assert (await get(api, arn))["Tags"] == [{"Key": "team", "Value": "b"}]


async def test_tag_pagination(api: Api) -> None:
    arn = await create(api, GITHUB, tags={f"k{i:02d}": str(i) for i in range(5)})
    first = await list_tags(api, arn, MaxItems="2")
    assert [t["Key"] for t in first["Tags"]] == ["k00", "k01"]
    assert first["IsTruncated"] is True
    rest = await list_tags(api, arn, MaxItems="10", Marker=first["Marker"])
    assert [t["Key"] for t in rest["Tags"]] == ["k02", "k03", "k04"]
    assert rest["IsTruncated"] is False


async def test_tag_checks(api: Api) -> None:
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=tag_params({"aws:x": "y"}), Url=GITHUB
    )
    reply.expect(400, "InvalidInput", "User-defined tag keys can't start with 'aws:'.")
    reply = await api.call(
        "CreateOpenIDConnectProvider", params=tag_params([("k", "1"), ("K", "2")]), Url=GITHUB
    )
    reply.expect(
        400,
        "InvalidInput",
        "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
    )
    arn = await create(api, GITHUB, tags={f"k{i}": "v" for i in range(TAGS_PER_ENTITY)})
    reply = await api.call(
        "TagOpenIDConnectProvider",
        params=tag_params({"one-more": "v"}),
        OpenIDConnectProviderArn=arn,
    )
    reply.expect(
        409,
        "LimitExceeded",
        f"The number of tags has reached the maximum limit of {TAGS_PER_ENTITY}.",
    )
    reply = await api.call("TagOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    reply.expect(400, "ValidationError")
    assert "Value null at 'tags'" in (reply.message or "")
    reply = await api.call("UntagOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    reply.expect(400, "ValidationError")
    assert "Value null at 'tagKeys'" in (reply.message or "")
    reply = await api.call(
        "UntagOpenIDConnectProvider",
        params=list_params("TagKeys", [f"k{i}" for i in range(TAGS_PER_ENTITY + 1)]),
        OpenIDConnectProviderArn=arn,
    )
    reply.expect(400, "ValidationError")
    assert "Member must have length less than or equal to 50" in (reply.message or "")
    missing = arn + "x"
    for action, params in (
        ("TagOpenIDConnectProvider", tag_params({"a": "b"})),
        ("UntagOpenIDConnectProvider", list_params("TagKeys", ["a"])),
        ("ListOpenIDConnectProviderTags", {}),
    ):
        reply = await api.call(action, params=params, OpenIDConnectProviderArn=missing)
        reply.expect(404, "NoSuchEntity")


async def test_identity_propagation_is_refused(api: Api) -> None:
    reply = await api.call(
        "CreateOpenIDConnectProvider",
        params={"ContextProvider.SubjectSourceKey": "sub"},
        Url=GITHUB,
    )
    reply.expect(400, "InvalidInput")
    reply = await api.call(
        "CreateOpenIDConnectProvider",
        params={"IdentityCenterInstanceArn": "arn:aws:sso:::instance/ssoins-1"},
        Url=GITHUB,
    )
    reply.expect(400, "InvalidInput")
    assert await arns(api) == []


# -- authorization ------------------------------------------------------------------------------

ACTIONS_ON_ARN: list[tuple[str, dict[str, str]]] = [
    ("GetOpenIDConnectProvider", {}),
    ("DeleteOpenIDConnectProvider", {}),
    ("AddClientIDToOpenIDConnectProvider", {"ClientID": "c"}),
    ("RemoveClientIDFromOpenIDConnectProvider", {"ClientID": "c"}),
    ("UpdateOpenIDConnectProviderThumbprint", list_params("ThumbprintList", [THUMB_A])),
    ("TagOpenIDConnectProvider", tag_params({"a": "b"})),
    ("UntagOpenIDConnectProvider", list_params("TagKeys", ["a"])),
    ("ListOpenIDConnectProviderTags", {}),
]


async def test_every_action_needs_its_permission(api: Api) -> None:
    arn = await create(api, GITHUB)
    absent = f"arn:aws:iam::{api.account_id}:oidc-provider/absent.example.com"
    creds, user_arn = await api.new_user("bob", policy=allow("iam:GetUser"))
    for action, params in ACTIONS_ON_ARN:
        for target in (arn, absent):  # the same answer whether or not the provider exists
            reply = await api.call(action, creds, params, OpenIDConnectProviderArn=target)
            reply.expect(
                403,
                "AccessDenied",
                f"User: {user_arn} is not authorized to perform: iam:{action} on resource: "
                f"{target} because no identity-based policy allows the iam:{action} action",
            )
    reply = await api.call("ListOpenIDConnectProviders", creds)
    reply.expect(403, "AccessDenied")
    reply = await api.call("CreateOpenIDConnectProvider", creds, Url="https://new.example.com/x")
    reply.expect(403, "AccessDenied")
    assert f"on resource: arn:aws:iam::{api.account_id}:oidc-provider/new.example.com/x" in (
        reply.message or ""
    )
    assert await arns(api) == [arn]
    assert (await get(api, arn))["ClientIDList"] == ["sts.amazonaws.com"]


async def test_permission_scoped_to_one_provider(api: Api) -> None:
    mine = await create(api, "https://mine.example.com")
    other = await create(api, "https://other.example.com")
    policy = allow(
        [f"iam:{a}" for a, _ in ACTIONS_ON_ARN] + ["iam:ListOpenIDConnectProviders"],
        [f"arn:aws:iam::{api.account_id}:oidc-provider/mine.example.com", "*"],
    )
    # "*" is only for ListOpenIDConnectProviders; the deny keeps the rest on one provider.
    creds, _ = await api.new_user("carol")
    await api.ok("PutUserPolicy", UserName="carol", PolicyName="p", PolicyDocument=policy)
    await api.ok(
        "PutUserPolicy",
        UserName="carol",
        PolicyName="d",
        PolicyDocument=deny("iam:*OpenIDConnectProvider*", other),
    )
    assert await arns(api, creds) == sorted([mine, other])
    await api.ok(
        "AddClientIDToOpenIDConnectProvider", creds, OpenIDConnectProviderArn=mine, ClientID="x"
    )
    reply = await api.call(
        "AddClientIDToOpenIDConnectProvider", creds, OpenIDConnectProviderArn=other, ClientID="x"
    )
    reply.expect(403, "AccessDenied")
    assert "explicit deny" in (reply.message or "")


async def test_resource_and_request_tags_in_conditions(api: Api) -> None:
    tagged = await create(api, "https://tagged.example.com", tags={"owner": "dave"})
    untagged = await create(api, "https://untagged.example.com")
    creds, _ = await api.new_user("dave")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iam:GetOpenIDConnectProvider",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:ResourceTag/owner": "dave"}},
            },
            {
                "Effect": "Allow",
                "Action": "iam:CreateOpenIDConnectProvider",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/owner": "dave"}},
            },
        ],
    }
    await api.ok(
        "PutUserPolicy", UserName="dave", PolicyName="p", PolicyDocument=json.dumps(policy)
    )
    await api.ok("GetOpenIDConnectProvider", creds, OpenIDConnectProviderArn=tagged)
    reply = await api.call("GetOpenIDConnectProvider", creds, OpenIDConnectProviderArn=untagged)
    reply.expect(403, "AccessDenied")
    reply = await api.call("CreateOpenIDConnectProvider", creds, Url="https://n1.example.com")
    reply.expect(403, "AccessDenied")
    await api.ok(
        "CreateOpenIDConnectProvider",
        creds,
        tag_params({"owner": "dave"}),
        Url="https://n1.example.com",
    )


# -- find (AssumeRoleWithWebIdentity's look-up) -------------------------------------------------


async def test_find_matches_the_registered_url_exactly(api: Api) -> None:
    svc = oidc_for(api.rt.iam)
    url = "https://issuer.example.com/Tenant"
    arn = await create(api, url, client_ids=("aud-1",), tags={"k": "v"})
    found = await svc.find(api.account_id, url)
    assert found is not None
    assert found.arn == arn
    assert found.url == url
    assert found.provider_id == "issuer.example.com/Tenant"
    assert found.client_ids == ("aud-1",)
    assert found.thumbprints == (THUMB_A,)
    assert found.tags == (("k", "v"),)
    # Scheme and host are case-insensitive in a URL.
    assert await svc.find(api.account_id, "HTTPS://ISSUER.example.com/Tenant") == found
    for other in (
        url + "/",  # trailing-slash variant
        "https://issuer.example.com/tenant",  # path case
        "http://issuer.example.com/Tenant",  # scheme
        "https://issuer.example.com",  # prefix
        "https://issuer.example.com/Tenant/x",
        "https://issuer.example.com/Tenant?x=1",
        "issuer.example.com/Tenant",
        "",
        "https://issuer.example.com:443/Tenant",
    ):
        assert await svc.find(api.account_id, other) is None, other
    other_account, _ = await api.new_account()
    assert await svc.find(other_account, url) is None
    assert await svc.find("000000000000", url) is None


async def test_find_trailing_slash_provider(api: Api) -> None:
    svc = oidc_for(api.rt.iam)
    await create(api, "https://acme.eu.auth0.com/")
    found = await svc.find(api.account_id, "https://acme.eu.auth0.com/")
    assert found is not None and found.provider_id == "acme.eu.auth0.com/"
    assert await svc.find(api.account_id, "https://acme.eu.auth0.com") is None


async def test_find_follows_changes_and_reads_from_cache(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = oidc_for(api.rt.iam)
    arn = await create(api, GITHUB, client_ids=("a",))
    assert await svc.find(api.account_id, GITHUB) is not None  # first look-up: from the store

    reads: list[str] = []
    store = api.rt.store
    original = store.get

    async def counting_get(ns: str, key: str) -> Record | None:
        reads.append(key)
        return await original(ns, key)

    monkeypatch.setattr(store, "get", counting_get)
    found = await svc.find(api.account_id, GITHUB)
    assert found is not None and found.client_ids == ("a",)
    assert not [k for k in reads if k.startswith("oidc/")]  # served from the cache

    await api.ok("AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID="b")
    found = await svc.find(api.account_id, GITHUB)
    assert found is not None and found.client_ids == ("a", "b")
    await api.ok("DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
    assert await svc.find(api.account_id, GITHUB) is None


async def test_find_with_and_without_allow_http(api: Api) -> None:
    http = http_service(api)
    url = "http://127.0.0.1:9000/realms/dev"
    await create(api, url)
    found = await http.find(api.account_id, url)
    assert found is not None and found.provider_id == "127.0.0.1:9000/realms/dev"
    assert await http.find(api.account_id, "https://127.0.0.1:9000/realms/dev") is None
    rt = api.rt
    strict = OidcProviderService(
        rt.store, rt.clock, rt.authorizer, rt.generations, FederationConfig()
    )
    # Registered while http issuers were allowed: not usable once they are not.
    assert await strict.find(api.account_id, url) is None
