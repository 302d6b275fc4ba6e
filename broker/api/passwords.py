"""API: the IAM login-profile, password-policy and account-alias actions of the query protocol.

``CreateLoginProfile``, ``GetLoginProfile``, ``UpdateLoginProfile``, ``DeleteLoginProfile``,
``ChangePassword``, ``UpdateAccountPasswordPolicy``, ``GetAccountPasswordPolicy``,
``DeleteAccountPasswordPolicy``, ``CreateAccountAlias``, ``ListAccountAliases`` and
``DeleteAccountAlias`` register into ``broker.api.iam.IAM_ACTIONS`` when this module is imported.
Each handler checks the model's member constraints (spec/aws-wire.md Appendix A, "Login profiles
and password policy" and "Account-level"), calls :class:`broker.service.passwords.PasswordService`
and renders the model's shapes.

Passwords are ``sensitive`` in the model: a constraint violation names the member but never
echoes its value.

The password service is built once per ``IamService`` (as the MFA service is), so it authorizes
with the same cached policies as every other IAM action. The API listener sets its hashing cost
from ``[signin]`` (:func:`configure_passwords`) before it serves.
"""

from __future__ import annotations

import re
import weakref

from broker.api.iam import NAME, NAME_TEXT, _page_params, action, paginate
from broker.api.query import Node, Params
from broker.core.model import Principal
from broker.core.passwords import (
    MAX_AGE_HIGHEST,
    MAX_AGE_LOWEST,
    MIN_LENGTH_HIGHEST,
    MIN_LENGTH_LOWEST,
    PASSWORD_MAX_LENGTH,
    POLICY_DEFAULT_MIN_LENGTH,
    REUSE_HIGHEST,
    REUSE_LOWEST,
    HashParams,
    PasswordPolicy,
)
from broker.errors import ValidationError
from broker.service.iam import IamService
from broker.service.passwords import ALIAS_PATTERN, LoginProfile, PasswordService

PASSWORD = re.compile(r"[\u0009\u000A\u000D\u0020-\u00FF]+")
PASSWORD_TEXT = r"[\u0009\u000A\u000D\u0020-\u00FF]+"
ALIAS_TEXT = r"^[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]$"

_SERVICES: weakref.WeakKeyDictionary[IamService, PasswordService] = weakref.WeakKeyDictionary()


def passwords_for(svc: IamService) -> PasswordService:
    """Return the password service sharing ``svc``'s store, keyring, clock and caches."""
    found = _SERVICES.get(svc)
    if found is None:
        # The IAM service owns the store, keyring and authorizer this node uses for IAM actions.
        found = PasswordService(svc._store, svc._keyring, svc._clock, svc._authz, svc._generations)
        _SERVICES[svc] = found
    return found


def configure_passwords(svc: IamService, params: HashParams) -> PasswordService:
    """Set the hashing cost of new password hashes for ``svc``'s password service."""
    found = passwords_for(svc)
    found.hash_params = params
    return found


# -- parameters ---------------------------------------------------------------------------------


def check_password(value: str | None, member: str) -> str:
    """Check a sensitive password member; the error names the member, never the value."""
    where = member[:1].lower() + member[1:]
    if value is None:
        problem = "Member must not be null"
    elif len(value) < 1:
        problem = "Member must have length greater than or equal to 1"
    elif len(value) > PASSWORD_MAX_LENGTH:
        problem = f"Member must have length less than or equal to {PASSWORD_MAX_LENGTH}"
    elif not PASSWORD.fullmatch(value):
        problem = f"Member must satisfy regular expression pattern: {PASSWORD_TEXT}"
    else:
        return value
    raise ValidationError(
        f"1 validation error detected: Value at '{where}' failed to satisfy constraint: {problem}"
    )


def _user(p: Params, *, required: bool) -> str | None:
    return p.string(
        "UserName", required=required, min_len=1, max_len=64, pattern=NAME, pattern_text=NAME_TEXT
    )


def _alias(p: Params) -> str:
    return p.req(
        "AccountAlias", min_len=3, max_len=63, pattern=ALIAS_PATTERN, pattern_text=ALIAS_TEXT
    )


# -- renderers ----------------------------------------------------------------------------------


def login_profile_node(profile: LoginProfile) -> dict[str, Node]:
    """Render a ``LoginProfile`` structure."""
    return {
        "UserName": profile.user_name,
        "CreateDate": profile.created,
        "PasswordResetRequired": profile.reset_required,
    }


def password_policy_node(policy: PasswordPolicy) -> dict[str, Node]:
    """Render a ``PasswordPolicy`` structure (``ExpirePasswords`` derived from the max age)."""
    node: dict[str, Node] = {
        "MinimumPasswordLength": policy.minimum_length,
        "RequireSymbols": policy.require_symbols,
        "RequireNumbers": policy.require_numbers,
        "RequireUppercaseCharacters": policy.require_uppercase,
        "RequireLowercaseCharacters": policy.require_lowercase,
        "AllowUsersToChangePassword": policy.allow_users_to_change,
        "ExpirePasswords": policy.expire_passwords,
    }
    if policy.max_age_days is not None:
        node["MaxPasswordAge"] = policy.max_age_days
    if policy.reuse_prevention is not None:
        node["PasswordReusePrevention"] = policy.reuse_prevention
    if policy.hard_expiry is not None:
        node["HardExpiry"] = policy.hard_expiry
    return node


# -- login profiles -----------------------------------------------------------------------------


@action("CreateLoginProfile")
async def create_login_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=False)
    reset = p.boolean("PasswordResetRequired")
    p.check()
    password = check_password(p.raw("Password"), "Password")
    profile = await passwords_for(svc).create_login_profile(caller, user, password, bool(reset))
    return {"LoginProfile": login_profile_node(profile)}


@action("GetLoginProfile")
async def get_login_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=False)
    p.check()
    profile = await passwords_for(svc).get_login_profile(caller, user)
    return {"LoginProfile": login_profile_node(profile)}


@action("UpdateLoginProfile")
async def update_login_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=True)
    reset = p.boolean("PasswordResetRequired")
    p.check()
    raw = p.raw("Password")
    password = check_password(raw, "Password") if raw is not None else None
    await passwords_for(svc).update_login_profile(caller, user or "", password, reset)
    return None


@action("DeleteLoginProfile")
async def delete_login_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=False)
    p.check()
    await passwords_for(svc).delete_login_profile(caller, user)
    return None


@action("ChangePassword")
async def change_password(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    old = check_password(p.raw("OldPassword"), "OldPassword")
    new = check_password(p.raw("NewPassword"), "NewPassword")
    await passwords_for(svc).change_password(caller, old, new)
    return None


# -- account password policy --------------------------------------------------------------------


@action("UpdateAccountPasswordPolicy")
async def update_account_password_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    length = p.integer(
        "MinimumPasswordLength", min_value=MIN_LENGTH_LOWEST, max_value=MIN_LENGTH_HIGHEST
    )
    symbols = p.boolean("RequireSymbols")
    numbers = p.boolean("RequireNumbers")
    upper = p.boolean("RequireUppercaseCharacters")
    lower = p.boolean("RequireLowercaseCharacters")
    allow_change = p.boolean("AllowUsersToChangePassword")
    max_age = p.integer("MaxPasswordAge", min_value=MAX_AGE_LOWEST, max_value=MAX_AGE_HIGHEST)
    reuse = p.integer("PasswordReusePrevention", min_value=REUSE_LOWEST, max_value=REUSE_HIGHEST)
    hard_expiry = p.boolean("HardExpiry")
    p.check()
    policy = PasswordPolicy(
        minimum_length=length if length is not None else POLICY_DEFAULT_MIN_LENGTH,
        require_symbols=bool(symbols),
        require_numbers=bool(numbers),
        require_uppercase=bool(upper),
        require_lowercase=bool(lower),
        allow_users_to_change=bool(allow_change),
        max_age_days=max_age,
        reuse_prevention=reuse,
        hard_expiry=hard_expiry,
    )
    await passwords_for(svc).update_policy(caller, policy)
    return None


@action("GetAccountPasswordPolicy")
async def get_account_password_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    policy = await passwords_for(svc).get_policy(caller)
    return {"PasswordPolicy": password_policy_node(policy)}


@action("DeleteAccountPasswordPolicy")
async def delete_account_password_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    p.check()
    await passwords_for(svc).delete_policy(caller)
    return None


# -- account aliases ----------------------------------------------------------------------------


@action("CreateAccountAlias")
async def create_account_alias(svc: IamService, caller: Principal, p: Params) -> Node:
    alias = _alias(p)
    p.check()
    await passwords_for(svc).create_alias(caller, alias)
    return None


@action("ListAccountAliases")
async def list_account_aliases(svc: IamService, caller: Principal, p: Params) -> Node:
    marker, max_items = _page_params(p)
    p.check()
    aliases = await passwords_for(svc).list_aliases(caller)
    page, tail = paginate(aliases, lambda a: a, marker, max_items)
    return {"AccountAliases": list(page), **tail}


@action("DeleteAccountAlias")
async def delete_account_alias(svc: IamService, caller: Principal, p: Params) -> Node:
    alias = _alias(p)
    p.check()
    await passwords_for(svc).delete_alias(caller, alias)
    return None
