"""API tests: login profiles, the account password policy, account aliases and ``POST /signin``.

The broker runs in-process on a ``MemoryStore`` with cheap Argon2id costs (set through the same
``BROKER_SIGNIN_*`` variables an operator would use).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from broker.api.signin import COOKIE_NAME, DENIED_BODY, MAX_BODY_BYTES
from broker.service.passwords import login_key
from broker.store.base import GLOBAL_NS, Put
from tests.api.conftest import Api, ApiFactory, allow

CHEAP = {
    "BROKER_SIGNIN_HASH_TIME_COST": "1",
    "BROKER_SIGNIN_HASH_MEMORY_KIB": "64",
}
GOOD = "Sturdy-Passw0rd"
OTHER = "Another-Passw0rd"


@pytest.fixture
async def papi(api_factory: ApiFactory) -> Api:
    return await api_factory(**CHEAP)


async def signin(api: Api, path: str = "/signin", **body: Any) -> tuple[int, dict[str, str], bytes]:
    resp = await api.client.post(
        path, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    return resp.status, dict(resp.headers), await resp.read()


async def user_with_password(api: Api, name: str, password: str = GOOD, **kw: Any) -> None:
    await api.ok("CreateUser", UserName=name)
    await api.ok("CreateLoginProfile", UserName=name, Password=password, **kw)


# -- login profiles ---------------------------------------------------------------------------


async def test_login_profile_lifecycle(papi: Api) -> None:
    await papi.ok("CreateUser", UserName="Alice")
    created = await papi.ok(
        "CreateLoginProfile", UserName="alice", Password=GOOD, PasswordResetRequired=True
    )
    assert created.text("LoginProfile/UserName") == "Alice"
    assert created.text("LoginProfile/PasswordResetRequired") == "true"
    assert created.text("LoginProfile/CreateDate")
    assert GOOD not in created.raw_text

    again = await papi.call("CreateLoginProfile", UserName="Alice", Password=OTHER)
    again.expect(409, "EntityAlreadyExists", "Login Profile for user Alice already exists.")

    got = await papi.ok("GetLoginProfile", UserName="Alice")
    assert got.text("LoginProfile/PasswordResetRequired") == "true"
    await papi.ok("UpdateLoginProfile", UserName="Alice", PasswordResetRequired=False)
    got = await papi.ok("GetLoginProfile", UserName="Alice")
    assert got.text("LoginProfile/PasswordResetRequired") == "false"

    # DeleteUser refuses while the login profile exists, as AWS does.
    conflict = await papi.call("DeleteUser", UserName="Alice")
    conflict.expect(409, "DeleteConflict", "Cannot delete entity, must delete login profile first.")

    await papi.ok("DeleteLoginProfile", UserName="Alice")
    missing = await papi.call("GetLoginProfile", UserName="Alice")
    missing.expect(404, "NoSuchEntity", "Login Profile for User Alice cannot be found.")
    (await papi.call("DeleteLoginProfile", UserName="Alice")).expect(404, "NoSuchEntity")
    await papi.ok("DeleteUser", UserName="Alice")


async def test_login_profile_of_unknown_user(papi: Api) -> None:
    reply = await papi.call("CreateLoginProfile", UserName="nobody", Password=GOOD)
    reply.expect(404, "NoSuchEntity", "The user with name nobody cannot be found.")


async def test_password_validation_never_echoes_the_password(papi: Api) -> None:
    await papi.ok("CreateUser", UserName="bob")
    secret = "Bad\u0100Passw0rd-123"
    reply = await papi.call("CreateLoginProfile", UserName="bob", Password=secret)
    reply.expect(400, "ValidationError")
    assert "password" in (reply.message or "")
    assert secret not in reply.raw_text
    long = "A1-" + "x" * 130
    reply = await papi.call("UpdateLoginProfile", UserName="bob", Password=long)
    reply.expect(400, "ValidationError")
    assert long not in reply.raw_text
    (await papi.call("CreateLoginProfile", UserName="bob")).expect(400, "ValidationError")


async def test_default_policy_applies_without_an_account_policy(papi: Api) -> None:
    await papi.ok("CreateUser", UserName="carol")
    weak = await papi.call("CreateLoginProfile", UserName="carol", Password="password")
    weak.expect(400, "PasswordPolicyViolation")
    assert "password" not in (weak.message or "").replace("Password", "")
    await papi.ok("CreateLoginProfile", UserName="carol", Password="Passw0rd")


async def test_login_profile_actions_are_authorized_on_the_user_arn(papi: Api) -> None:
    creds, _ = await papi.new_user(
        "helper",
        policy=allow(["iam:CreateLoginProfile"], f"arn:aws:iam::{papi.account_id}:user/ops/*"),
    )
    await papi.ok("CreateUser", UserName="dave")
    await papi.ok("CreateUser", UserName="erin", Path="/ops/")
    denied = await papi.call("CreateLoginProfile", creds, UserName="dave", Password=GOOD)
    denied.expect(403, "AccessDenied")
    # Same answer for a user that does not exist: names cannot be probed.
    (await papi.call("CreateLoginProfile", creds, UserName="ghost", Password=GOOD)).expect(
        403, "AccessDenied"
    )
    await papi.ok("CreateLoginProfile", creds, UserName="erin", Password=GOOD)
    (await papi.call("GetLoginProfile", creds, UserName="erin")).expect(403, "AccessDenied")


async def test_renamed_user_keeps_the_password(papi: Api) -> None:
    await user_with_password(papi, "frank")
    await papi.ok("UpdateUser", UserName="frank", NewUserName="franklin")
    got = await papi.ok("GetLoginProfile", UserName="franklin")
    assert got.text("LoginProfile/UserName") == "franklin"
    status, _, _ = await signin(papi, account=papi.account_id, user="franklin", password=GOOD)
    assert status == 200


# -- password policy ---------------------------------------------------------------------------


async def test_password_policy_lifecycle(papi: Api) -> None:
    none = await papi.call("GetAccountPasswordPolicy")
    none.expect(
        404,
        "NoSuchEntity",
        f"The Password Policy with domain name {papi.account_id} cannot be found.",
    )
    (await papi.call("DeleteAccountPasswordPolicy")).expect(404, "NoSuchEntity")

    await papi.ok(
        "UpdateAccountPasswordPolicy",
        MinimumPasswordLength=14,
        RequireSymbols=True,
        MaxPasswordAge=90,
        PasswordReusePrevention=5,
    )
    got = await papi.ok("GetAccountPasswordPolicy")
    assert got.text("PasswordPolicy/MinimumPasswordLength") == "14"
    assert got.text("PasswordPolicy/RequireSymbols") == "true"
    assert got.text("PasswordPolicy/RequireNumbers") == "false"
    assert got.text("PasswordPolicy/ExpirePasswords") == "true"
    assert got.text("PasswordPolicy/MaxPasswordAge") == "90"
    assert got.text("PasswordPolicy/PasswordReusePrevention") == "5"

    # Update replaces the whole policy: members not given go back to their defaults.
    await papi.ok("UpdateAccountPasswordPolicy", RequireNumbers=True)
    got = await papi.ok("GetAccountPasswordPolicy")
    assert got.text("PasswordPolicy/MinimumPasswordLength") == "6"
    assert got.text("PasswordPolicy/RequireSymbols") == "false"
    assert got.text("PasswordPolicy/ExpirePasswords") == "false"
    assert got.find("PasswordPolicy/MaxPasswordAge") is None

    await papi.ok("DeleteAccountPasswordPolicy")
    (await papi.call("GetAccountPasswordPolicy")).expect(404, "NoSuchEntity")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("MinimumPasswordLength", 5),
        ("MinimumPasswordLength", 129),
        ("MaxPasswordAge", 0),
        ("MaxPasswordAge", 1096),
        ("PasswordReusePrevention", 25),
        ("RequireSymbols", "maybe"),
    ],
)
async def test_password_policy_member_constraints(papi: Api, member: str, value: Any) -> None:
    reply = await papi.call("UpdateAccountPasswordPolicy", **{member: value})
    reply.expect(400, "ValidationError")
    (await papi.call("GetAccountPasswordPolicy")).expect(404, "NoSuchEntity")


async def test_policy_is_enforced_on_every_password_set(papi: Api) -> None:
    await papi.ok(
        "UpdateAccountPasswordPolicy",
        MinimumPasswordLength=10,
        RequireUppercaseCharacters=True,
        RequireNumbers=True,
    )
    await papi.ok("CreateUser", UserName="gina")
    short = await papi.call("CreateLoginProfile", UserName="gina", Password="Ab1")
    short.expect(400, "PasswordPolicyViolation", "Password should have a minimum length of 10.")
    await papi.ok("CreateLoginProfile", UserName="gina", Password="Abcdefghi1")
    upper = await papi.call("UpdateLoginProfile", UserName="gina", Password="abcdefghi1")
    upper.expect(400, "PasswordPolicyViolation")
    assert "uppercase" in (upper.message or "")
    await papi.ok("UpdateLoginProfile", UserName="gina", Password="Abcdefghi2")


async def test_policy_actions_need_permission(papi: Api) -> None:
    creds, _ = await papi.new_user("reader", policy=allow("iam:GetAccountPasswordPolicy"))
    (await papi.call("UpdateAccountPasswordPolicy", creds)).expect(403, "AccessDenied")
    (await papi.call("GetAccountPasswordPolicy", creds)).expect(404, "NoSuchEntity")


# -- ChangePassword -----------------------------------------------------------------------------


async def test_change_password_rules(papi: Api) -> None:
    (await papi.call("ChangePassword", OldPassword=GOOD, NewPassword=OTHER)).expect(
        400, "InvalidUserType"
    )
    creds, _ = await papi.new_user("hal")
    await papi.ok("CreateLoginProfile", UserName="hal", Password=GOOD)
    # Neither the account policy nor hal's own policies let him change it.
    (await papi.call("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)).expect(
        403, "AccessDenied"
    )
    await papi.ok(
        "UpdateAccountPasswordPolicy", AllowUsersToChangePassword=True, PasswordReusePrevention=2
    )
    wrong = await papi.call(
        "ChangePassword", creds, OldPassword="Wrong-Passw0rd", NewPassword=OTHER
    )
    wrong.expect(400, "InvalidInput")
    same = await papi.call("ChangePassword", creds, OldPassword=GOOD, NewPassword=GOOD)
    same.expect(400, "PasswordPolicyViolation")
    await papi.ok("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)
    # Reuse prevention (2): the previous password is remembered, the third one back is not.
    back = await papi.call("ChangePassword", creds, OldPassword=OTHER, NewPassword=GOOD)
    back.expect(400, "PasswordPolicyViolation")
    await papi.ok("ChangePassword", creds, OldPassword=OTHER, NewPassword="Third-Passw0rd")
    await papi.ok("ChangePassword", creds, OldPassword="Third-Passw0rd", NewPassword=GOOD)
    status, _, _ = await signin(papi, account=papi.account_id, user="hal", password=GOOD)
    assert status == 200


async def test_change_password_explicit_deny_beats_the_account_policy(papi: Api) -> None:
    deny_doc = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "iam:ChangePassword", "Resource": "*"}],
        }
    )
    creds, _ = await papi.new_user("ivy", policy=deny_doc)
    await papi.ok("CreateLoginProfile", UserName="ivy", Password=GOOD)
    await papi.ok("UpdateAccountPasswordPolicy", AllowUsersToChangePassword=True)
    (await papi.call("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)).expect(
        403, "AccessDenied"
    )


async def test_change_password_with_own_permission_and_no_policy(papi: Api) -> None:
    creds, arn = await papi.new_user("jon")
    await papi.ok(
        "PutUserPolicy",
        UserName="jon",
        PolicyName="self",
        PolicyDocument=allow("iam:ChangePassword", arn),
    )
    await papi.ok("CreateLoginProfile", UserName="jon", Password=GOOD)
    await papi.ok("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)


# -- account aliases ----------------------------------------------------------------------------


async def test_account_alias_lifecycle(papi: Api) -> None:
    listed = await papi.ok("ListAccountAliases")
    assert listed.member_texts("AccountAliases") == []
    await papi.ok("CreateAccountAlias", AccountAlias="acme-prod")
    await papi.ok("CreateAccountAlias", AccountAlias="acme-prod")  # same alias: no change
    listed = await papi.ok("ListAccountAliases")
    assert listed.member_texts("AccountAliases") == ["acme-prod"]
    assert listed.text("IsTruncated") == "false"
    (await papi.call("CreateAccountAlias", AccountAlias="acme-other")).expect(409, "LimitExceeded")

    other, other_root = await papi.new_account()
    taken = await papi.call("CreateAccountAlias", other_root, AccountAlias="acme-prod")
    taken.expect(409, "EntityAlreadyExists")
    (await papi.call("DeleteAccountAlias", other_root, AccountAlias="acme-prod")).expect(
        404, "NoSuchEntity"
    )

    await papi.ok("DeleteAccountAlias", AccountAlias="acme-prod")
    assert (await papi.ok("ListAccountAliases")).member_texts("AccountAliases") == []
    await papi.ok("CreateAccountAlias", other_root, AccountAlias="acme-prod")
    assert (await papi.ok("ListAccountAliases", other_root)).member_texts("AccountAliases") == [
        "acme-prod"
    ]
    assert other != papi.account_id


@pytest.mark.parametrize("alias", ["ab", "-abc", "abc-", "a--b", "Upper", "has_underscore"])
async def test_account_alias_pattern(papi: Api, alias: str) -> None:
    (await papi.call("CreateAccountAlias", AccountAlias=alias)).expect(400, "ValidationError")


async def test_account_alias_cannot_look_like_an_account_id(papi: Api) -> None:
    (await papi.call("CreateAccountAlias", AccountAlias="123456789012")).expect(400, "InvalidInput")


# -- sign-in -------------------------------------------------------------------------------------


async def test_signin_returns_credentials_and_a_safe_cookie(papi: Api) -> None:
    await user_with_password(papi, "kim")
    status, headers, body = await signin(papi, account=papi.account_id, user="kim", password=GOOD)
    assert status == 200, body
    creds = json.loads(body)
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert creds["AccessKeyId"].startswith("ASIA")
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert creds["SecretAccessKey"] not in value and creds["SessionToken"] not in value
    attrs = {a.strip().split("=", 1)[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attrs
    assert "secure" not in attrs  # plain HTTP here
    assert "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
    assert headers["Cache-Control"] == "no-store"
    # The last sign-in time is recorded.
    used = await papi.rt.store.get(papi.account_id, "pwused/kim")
    assert used is not None


async def test_signin_failures_look_alike(papi: Api) -> None:
    await user_with_password(papi, "lee")
    await papi.ok("CreateUser", UserName="nopass")
    answers = [
        await signin(papi, account=papi.account_id, user="lee", password="Wrong-Passw0rd"),
        await signin(papi, account=papi.account_id, user="ghost", password=GOOD),
        await signin(papi, account=papi.account_id, user="nopass", password=GOOD),
        await signin(papi, account="999999999999", user="lee", password=GOOD),
        await signin(papi, account="no-such-alias", user="lee", password=GOOD),
    ]
    assert {(s, b) for s, _, b in answers} == {(401, DENIED_BODY)}
    assert all("Set-Cookie" not in h for _, h, _ in answers)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (b'{"account": "1", "user": "x"}', 400),
        (b'{"account": 5, "user": "x", "password": "y"}', 400),
        (b"\xff\xfe", 400),
        (b'{"account": "a", "user": "b", "password": "' + b"x" * MAX_BODY_BYTES + b'"}', 413),
    ],
)
async def test_signin_malformed_requests(papi: Api, body: bytes, status: int) -> None:
    resp = await papi.client.post(
        "/signin", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == status
    doc = json.loads(await resp.read())
    assert doc["code"] in {"MalformedRequest", "RequestEntityTooLarge"}


async def test_signin_wants_json(papi: Api) -> None:
    resp = await papi.client.post("/signin", data=b"account=1&user=x&password=y")
    assert resp.status == 400


async def test_signin_lockout_is_shared_through_the_store(api_factory: ApiFactory) -> None:
    papi = await api_factory(**CHEAP, BROKER_SIGNIN_MAX_FAILURES="3")
    await user_with_password(papi, "max")
    for _ in range(3):
        status, _, _ = await signin(papi, account=papi.account_id, user="max", password="nope")
        assert status == 401
    status, headers, body = await signin(papi, account=papi.account_id, user="max", password=GOOD)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 300
    assert json.loads(body)["code"] == "TooManyFailures"
    counters = await papi.rt.store.scan(GLOBAL_NS, "signinfail/")
    assert len(counters) == 1 and counters[0].expires_at is not None


async def test_signin_success_resets_the_failure_count(api_factory: ApiFactory) -> None:
    papi = await api_factory(**CHEAP, BROKER_SIGNIN_MAX_FAILURES="3")
    await user_with_password(papi, "ned")
    for _ in range(2):
        await signin(papi, account=papi.account_id, user="ned", password="nope")
    assert (await signin(papi, account=papi.account_id, user="ned", password=GOOD))[0] == 200
    for _ in range(2):
        await signin(papi, account=papi.account_id, user="ned", password="nope")
    assert (await signin(papi, account=papi.account_id, user="ned", password=GOOD))[0] == 200


async def test_reset_required_then_change_password_signs_in(papi: Api) -> None:
    await user_with_password(papi, "ola", PasswordResetRequired=True)
    status, _, body = await signin(papi, account=papi.account_id, user="ola", password=GOOD)
    assert status == 403 and json.loads(body)["code"] == "PasswordResetRequired"
    status, _, body = await signin(
        papi,
        "/signin/change-password",
        account=papi.account_id,
        user="ola",
        password=GOOD,
        new_password="weak",
    )
    assert status == 400 and json.loads(body)["code"] == "PasswordPolicyViolation"
    status, headers, body = await signin(
        papi,
        "/signin/change-password",
        account=papi.account_id,
        user="ola",
        password=GOOD,
        new_password=OTHER,
    )
    assert status == 200 and "Set-Cookie" in headers
    record = await papi.rt.store.get(papi.account_id, login_key("ola"))
    assert record is not None and b'"reset_required":false' in record.value
    assert (await signin(papi, account=papi.account_id, user="ola", password=OTHER))[0] == 200
    assert (await signin(papi, account=papi.account_id, user="ola", password=GOOD))[0] == 401


async def test_voluntary_change_at_signin_needs_permission(papi: Api) -> None:
    await user_with_password(papi, "pat")
    status, _, body = await signin(
        papi,
        "/signin/change-password",
        account=papi.account_id,
        user="pat",
        password=GOOD,
        new_password=OTHER,
    )
    assert status == 403 and json.loads(body)["code"] == "AccessDenied"
    await papi.ok("UpdateAccountPasswordPolicy", AllowUsersToChangePassword=True)
    status, _, _ = await signin(
        papi,
        "/signin/change-password",
        account=papi.account_id,
        user="pat",
        password=GOOD,
        new_password=OTHER,
    )
    assert status == 200


async def test_signin_by_alias(papi: Api) -> None:
    await user_with_password(papi, "quinn")
    await papi.ok("CreateAccountAlias", AccountAlias="quinn-corp")
    status, _, body = await signin(papi, account="quinn-corp", user="quinn", password=GOOD)
    assert status == 200
    ident = await papi.sts("GetCallerIdentity")  # root still fine; the alias is only a name
    assert ident.ok
    await papi.ok("DeleteAccountAlias", AccountAlias="quinn-corp")
    assert (await signin(papi, account="quinn-corp", user="quinn", password=GOOD))[0] == 401
    assert json.loads(body)["AccessKeyId"].startswith("ASIA")


async def age_password(api: Api, user: str, days: int) -> None:
    """Move ``user``'s password ``days`` days into the past, as time passing would."""
    store = api.rt.store
    record = await store.get(api.account_id, login_key(user))
    assert record is not None
    doc = json.loads(record.value)
    changed = dt.datetime.fromisoformat(doc["changed"].replace("Z", "+00:00"))
    doc["changed"] = (changed - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await store.commit(
        api.account_id,
        {login_key(user): Put(json.dumps(doc).encode())},
        expect={login_key(user): record.version},
    )


async def test_get_user_shows_password_last_used(papi: Api) -> None:
    await user_with_password(papi, "rae")
    before = await papi.ok("GetUser", UserName="rae")
    assert before.find("User/PasswordLastUsed") is None
    assert (await signin(papi, account=papi.account_id, user="rae", password=GOOD))[0] == 200
    after = await papi.ok("GetUser", UserName="rae")
    assert after.text("User/PasswordLastUsed")


async def test_hard_expired_password_cannot_be_changed_by_its_user(papi: Api) -> None:
    creds, _ = await papi.new_user("sam")
    await papi.ok("CreateLoginProfile", UserName="sam", Password=GOOD)
    await papi.ok(
        "UpdateAccountPasswordPolicy",
        AllowUsersToChangePassword=True,
        MaxPasswordAge=10,
        HardExpiry=True,
    )
    await age_password(papi, "sam", 11)
    refused = await papi.call("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)
    refused.expect(409, "EntityTemporarilyUnmodifiable")
    status, _, body = await signin(papi, account=papi.account_id, user="sam", password=GOOD)
    assert status == 403 and json.loads(body)["code"] == "PasswordExpired"
    # Without HardExpiry the same expired password may be changed by its user.
    await papi.ok("UpdateAccountPasswordPolicy", AllowUsersToChangePassword=True, MaxPasswordAge=10)
    status, _, body = await signin(papi, account=papi.account_id, user="sam", password=GOOD)
    assert status == 403 and json.loads(body)["code"] == "PasswordResetRequired"
    await papi.ok("ChangePassword", creds, OldPassword=GOOD, NewPassword=OTHER)
    assert (await signin(papi, account=papi.account_id, user="sam", password=OTHER))[0] == 200
