"""Service: rules for the root user's access keys.

AWS's advice is to keep no access key for the root user: use it once to set up IAM
administrators, then work through them. This module holds the one list of what counts as
"setting up administrators" (:data:`SETUP_ACTIONS`) and the two checks built on it:

- :func:`enforce_root_restriction`: with ``[security] restrict_root_access_keys`` on, the API
  listener refuses every other action signed with root credentials (a root access key, or the
  temporary credentials the root user got from ``GetSessionToken``) with ``AccessDenied``.
- :func:`recent_root_key_use` / :func:`warn_recent_root_key_use`: at start-up, a WARNING for
  each root access key that still exists and was used for anything outside the setup set in
  the last :data:`ROOT_USE_WARNING_DAYS` days. The last-used tracker
  (``broker.service.tracking``) remembers that use in the key's ``akused/<AKID>`` record under
  :data:`OUTSIDE_SETUP_TIME` and :data:`OUTSIDE_SETUP_ACTION`.

Neither check reveals a secret; access key ids are logged only through ``key_hint``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker.core.model import Principal, key_hint
from broker.errors import AccessDeniedError, BrokerError
from broker.service.txn import read, read_many
from broker.store.base import Store, StoreError

log = logging.getLogger(__name__)

SETUP_ACTIONS: frozenset[str] = frozenset(
    {
        # Who am I, and what does the account hold.
        "sts:GetCallerIdentity",
        "iam:GetAccountSummary",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "iam:GetAccountPasswordPolicy",
        "iam:UpdateAccountPasswordPolicy",
        # Users.
        "iam:CreateUser",
        "iam:GetUser",
        "iam:ListUsers",
        "iam:TagUser",
        "iam:ListUserTags",
        # Groups and membership.
        "iam:CreateGroup",
        "iam:GetGroup",
        "iam:ListGroups",
        "iam:AddUserToGroup",
        "iam:ListGroupsForUser",
        # Managed policies.
        "iam:CreatePolicy",
        "iam:GetPolicy",
        "iam:ListPolicies",
        "iam:CreatePolicyVersion",
        "iam:GetPolicyVersion",
        "iam:ListPolicyVersions",
        "iam:SetDefaultPolicyVersion",
        "iam:ListEntitiesForPolicy",
        # Granting permissions to users and groups.
        "iam:AttachUserPolicy",
        "iam:AttachGroupPolicy",
        "iam:PutUserPolicy",
        "iam:PutGroupPolicy",
        "iam:GetUserPolicy",
        "iam:GetGroupPolicy",
        "iam:ListUserPolicies",
        "iam:ListGroupPolicies",
        "iam:ListAttachedUserPolicies",
        "iam:ListAttachedGroupPolicies",
        # Credentials of users (and retiring the root user's own keys).
        "iam:CreateAccessKey",
        "iam:ListAccessKeys",
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
        "iam:GetAccessKeyLastUsed",
        "iam:CreateLoginProfile",
        "iam:GetLoginProfile",
        "iam:UpdateLoginProfile",
        # MFA for users and for the root user itself.
        "iam:CreateVirtualMFADevice",
        "iam:EnableMFADevice",
        "iam:ResyncMFADevice",
        "iam:GetMFADevice",
        "iam:ListMFADevices",
        "iam:ListVirtualMFADevices",
    }
)
"""``service:Action`` names that set up IAM administrators (allowed to restricted root keys)."""

ROOT_USE_WARNING_DAYS = 7
"""A root access key used outside the setup set within this many days is warned about."""

OUTSIDE_SETUP_TIME = "outside_setup_time"
"""``akused/<AKID>`` field: last time a root key was used for an action outside the setup set."""

OUTSIDE_SETUP_ACTION = "outside_setup_action"
"""``akused/<AKID>`` field: that action, as ``service:Action``."""


def is_setup_action(service: str, action: str) -> bool:
    """True when ``service``:``action`` is one of :data:`SETUP_ACTIONS`."""
    return f"{service}:{action}" in SETUP_ACTIONS


def enforce_root_restriction(principal: Principal, service: str, action: str) -> None:
    """Refuse ``action`` to root credentials unless it sets up IAM administrators.

    Called by the API listener after authentication when ``[security]
    restrict_root_access_keys`` is on. Root temporary credentials (``GetSessionToken``) count
    as root credentials. Other principals pass untouched.
    """
    if not principal.is_root or is_setup_action(service, action):
        return
    raise AccessDeniedError(
        f"User: {principal.arn} is not authorized to perform: {service}:{action} because "
        "access keys of the root user are restricted to setting up IAM users, groups and "
        "policies. Use an IAM user or role instead."
    )


@dataclass(frozen=True, slots=True)
class RootKeyUse:
    """A root access key's last use outside the setup set (never carries the secret)."""

    account_id: str
    access_key_id: str
    when: datetime
    action: str


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


async def recent_root_key_use(
    store: Store,
    accounts: Iterable[str],
    now: datetime,
    days: int = ROOT_USE_WARNING_DAYS,
) -> list[RootKeyUse]:
    """Return the existing root access keys used outside the setup set in the last ``days``."""
    since = now - timedelta(days=days)
    found: list[RootKeyUse] = []
    for account in accounts:
        acct = await read(store, account, "account")
        keys: Sequence[str] = acct.get("root_keys", []) if acct is not None else []
        if not keys:
            continue
        used = await read_many(store, account, [f"akused/{k}" for k in keys])
        for akid, doc in zip(keys, used, strict=True):
            if doc is None:
                continue
            when = _parse_time(doc.get(OUTSIDE_SETUP_TIME))
            if when is not None and when >= since:
                found.append(
                    RootKeyUse(account, akid, when, str(doc.get(OUTSIDE_SETUP_ACTION, "")))
                )
    return found


async def warn_recent_root_key_use(store: Store, accounts: Iterable[str], now: datetime) -> int:
    """Log one WARNING per root access key found by :func:`recent_root_key_use`; return how many.

    Never fails start-up: a store that cannot answer is logged and skipped.
    """
    try:
        found = await recent_root_key_use(store, accounts, now)
    except (BrokerError, StoreError) as exc:
        log.warning("root access key use not checked: %s", type(exc).__name__)
        return 0
    for use in found:
        log.warning(
            "account=%s root access key %s exists and was used for %s at %s (within %d days): "
            "create an IAM administrator, work through it and delete the root access keys "
            "(or set [security] restrict_root_access_keys)",
            use.account_id,
            key_hint(use.access_key_id),
            use.action or "an action",
            use.when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ROOT_USE_WARNING_DAYS,
        )
    return len(found)
