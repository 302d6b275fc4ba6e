"""Service: console passwords (login profiles), the account password policy, account aliases
and the password sign-in of IAM users.

Records (per account unless marked global; layouts shared with other features):

=================================  ==========================================================
key                                record
=================================  ==========================================================
``login/<user lower>``             the user's password: user name, creation and change times,
                                   Argon2id hash, ``reset_required``, previous hashes
                                   (``history``, newest first)
``pwused/<user lower>``            last successful sign-in (``bump=False``)
``pwpolicy``                       the account password policy, AWS member names as keys
``alias``                          the account's alias (``{"alias": name}``)
global ``alias/<alias>``           alias -> account id, so sign-in resolves an alias
global ``signinfail/<acct>/<u>``   consecutive sign-in failures of one user, with a TTL
=================================  ==========================================================

An alias is unique across every account the broker hosts. Creating one claims the global
record first (create-if-absent) and then writes the account's record; a claim whose account
record never followed is ignored by sign-in (the account record must agree) and taken over by
the next create of that alias in the same account.

Sign-in failure counters live in the store, so every worker and node shares them; each has an
expiry (advisory: the service decides with its clock). Unknown accounts and users are counted
too, keyed by what the caller typed, so lockouts do not reveal which names exist.

Passwords are hashed and verified in a worker thread (``asyncio.to_thread``): Argon2id is
deliberately slow and must not stall the event loop. Nothing here logs a password.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from broker import metrics
from broker.clock import Clock, iso8601
from broker.core.arn import iam_arn
from broker.core.keyring import Keyring
from broker.core.model import Principal, PrincipalKind
from broker.core.passwords import (
    HashParams,
    PasswordPolicy,
    PasswordState,
    dummy_hash,
    hash_password,
    needs_rehash,
    next_history,
    password_state,
    policy_violations,
    reuse_candidates,
    reuse_message,
    verify_password,
)
from broker.core.policy import Decision
from broker.errors import (
    AccessDeniedError,
    ConcurrentModificationError,
    EntityAlreadyExistsError,
    EntityTemporarilyUnmodifiableError,
    InvalidInputError,
    InvalidUserTypeError,
    LimitExceededError,
    NoSuchEntityError,
    PasswordPolicyViolationError,
    ValidationError,
)
from broker.service.iam import USER, entity_key, now_text, resource_keys
from broker.service.mfa import MfaService
from broker.service.scoped import AccountScopedService
from broker.service.sts import IssuedSession, StsService
from broker.service.txn import Doc, Txn, encode, read, read_many, transact
from broker.store.base import GLOBAL_NS, Put, Store, StoreError

log = logging.getLogger(__name__)

LOGIN, PWUSED, PWPOLICY, ALIAS, FAILURES = "login", "pwused", "pwpolicy", "alias", "signinfail"

ALIAS_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
"""AWS's account alias pattern (``accountAliasType``)."""

ACCOUNT_ID = re.compile(r"[0-9]{12}")

ALIASES_PER_ACCOUNT = 1
"""Account aliases per account (spec/aws-wire.md section 3.2)."""


def login_key(user: str) -> str:
    """Record key of ``user``'s console password."""
    return f"{LOGIN}/{user.lower()}"


def used_key(user: str) -> str:
    """Record key of ``user``'s last successful sign-in."""
    return f"{PWUSED}/{user.lower()}"


def alias_key(alias: str) -> str:
    """Global record key of an account alias."""
    return f"{ALIAS}/{alias}"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class LoginProfile:
    """A login profile as ``GetLoginProfile`` shows it (never the hash)."""

    user_name: str
    created: str
    reset_required: bool


class PasswordService(AccountScopedService):
    """Login profiles, the password policy and account aliases of every hosted account."""

    hash_params: HashParams = HashParams()
    """Cost of new hashes; the API listener sets it from ``[signin]`` before serving."""

    # -- hashing (off the event loop) -------------------------------------------------------

    async def hash(self, password: str) -> str:
        """Hash ``password`` with the configured cost, in a worker thread."""
        return await asyncio.to_thread(hash_password, password, self.hash_params)

    @staticmethod
    async def verify(encoded: str, password: str) -> bool:
        """Verify ``password`` against ``encoded`` in a worker thread."""
        return await asyncio.to_thread(verify_password, encoded, password)

    async def verify_or_dummy(self, encoded: str | None, password: str) -> bool:
        """Verify against ``encoded``, or do the same work against a dummy hash and fail."""
        if encoded is None:
            await self.verify(dummy_hash(self.hash_params), password)
            return False
        return await self.verify(encoded, password)

    @staticmethod
    def _any_match(hashes: Sequence[str], password: str) -> bool:
        found = False
        for encoded in hashes:  # check them all: the time taken does not say which matched
            found = verify_password(encoded, password) or found
        return found

    # -- policy ------------------------------------------------------------------------------

    async def policy_of(self, account: str) -> PasswordPolicy:
        """The policy in force in ``account`` (AWS's default policy while none is set)."""
        return PasswordPolicy.from_record(await read(self._store, account, PWPOLICY))

    async def check_new_password(
        self, account: str, password: str, current: str | None, history: Sequence[str]
    ) -> PasswordPolicy:
        """Raise ``PasswordPolicyViolation`` unless ``password`` may be set now.

        Checks the policy's rules, then reuse of the last ``PasswordReusePrevention`` passwords
        (``current`` included). Returns the policy checked.
        """
        policy = await self.policy_of(account)
        problems = policy_violations(policy, password)
        if problems:
            raise PasswordPolicyViolationError("; ".join(problems) + ".")
        candidates = reuse_candidates(policy, current, history)
        reused = bool(candidates) and await asyncio.to_thread(self._any_match, candidates, password)
        if reused:
            raise PasswordPolicyViolationError(reuse_message(policy) + ".")
        return policy

    # -- login profiles ----------------------------------------------------------------------

    async def _target(self, caller: Principal, user: str | None, action: str) -> Doc:
        """Authorize ``action`` on the user (the caller when ``user`` is omitted); read it.

        As every IAM action does, the caller is authorized on the user's ARN before the user's
        existence is checked, so a caller without the permission cannot probe names.
        """
        if user is None:
            if caller.kind is not PrincipalKind.USER:
                raise ValidationError(
                    "Must specify userName when calling with non-User credentials"
                )
            user = caller.name
        doc = await self._reads.get(caller.account_id, entity_key(USER, user))
        arn = doc["arn"] if doc is not None else iam_arn(caller.account_id, "user", "/", user)
        await self._allow(caller, action, arn, resource_keys(doc) if doc is not None else {})
        if doc is None:
            raise NoSuchEntityError(f"The user with name {user} cannot be found.")
        return doc

    @staticmethod
    def _no_profile(user: str) -> NoSuchEntityError:
        return NoSuchEntityError(f"Login Profile for User {user} cannot be found.")

    async def create_login_profile(
        self, caller: Principal, user: str | None, password: str, reset_required: bool
    ) -> LoginProfile:
        """CreateLoginProfile: give the user a console password (policy enforced)."""
        target = await self._target(caller, user, "iam:CreateLoginProfile")
        name = str(target["name"])
        if await read(self._store, caller.account_id, login_key(name)) is not None:
            raise EntityAlreadyExistsError(f"Login Profile for user {name} already exists.")
        await self.check_new_password(caller.account_id, password, None, ())
        encoded = await self.hash(password)
        created = now_text(self._clock)

        async def fn(txn: Txn) -> Doc:
            user_doc = await txn.get(entity_key(USER, name))
            if user_doc is None or user_doc["id"] != target["id"]:
                raise NoSuchEntityError(f"The user with name {name} cannot be found.")
            if await txn.get(login_key(name)) is not None:
                raise EntityAlreadyExistsError(f"Login Profile for user {name} already exists.")
            doc: Doc = {
                "user": user_doc["name"],
                "created": created,
                "changed": created,
                "hash": encoded,
                "reset_required": reset_required,
                "history": [],
            }
            txn.put(login_key(name), doc)
            return doc

        doc = await self._tx(caller.account_id, fn)
        return LoginProfile(doc["user"], doc["created"], bool(doc["reset_required"]))

    async def get_login_profile(self, caller: Principal, user: str | None) -> LoginProfile:
        """GetLoginProfile: when the user's password was created and whether it must change."""
        target = await self._target(caller, user, "iam:GetLoginProfile")
        doc = await read(self._store, caller.account_id, login_key(target["name"]))
        if doc is None:
            raise self._no_profile(target["name"])
        return LoginProfile(target["name"], doc["created"], bool(doc.get("reset_required")))

    async def update_login_profile(
        self,
        caller: Principal,
        user: str,
        password: str | None,
        reset_required: bool | None,
    ) -> None:
        """UpdateLoginProfile: an administrator sets a new password and/or the reset flag."""
        target = await self._target(caller, user, "iam:UpdateLoginProfile")
        name = str(target["name"])
        seen = await read(self._store, caller.account_id, login_key(name))
        if seen is None:
            raise self._no_profile(name)
        encoded: str | None = None
        if password is not None:
            await self.check_new_password(
                caller.account_id, password, seen["hash"], seen.get("history", [])
            )
            encoded = await self.hash(password)
        changed = now_text(self._clock)

        async def fn(txn: Txn) -> None:
            doc = await txn.get(login_key(name))
            if doc is None:
                raise self._no_profile(name)
            if encoded is not None:
                if doc["hash"] != seen["hash"]:
                    raise ConcurrentModificationError(
                        "The password was changed while this request ran; try again."
                    )
                doc["history"] = next_history(doc["hash"], doc.get("history", []))
                doc["hash"] = encoded
                doc["changed"] = changed
            if reset_required is not None:
                doc["reset_required"] = reset_required
            txn.put(login_key(name), doc)

        await self._tx(caller.account_id, fn)

    async def delete_login_profile(self, caller: Principal, user: str | None) -> None:
        """DeleteLoginProfile: the user can no longer sign in with a password."""
        target = await self._target(caller, user, "iam:DeleteLoginProfile")
        name = str(target["name"])

        async def fn(txn: Txn) -> None:
            if await txn.get(login_key(name)) is None:
                raise self._no_profile(name)
            txn.delete(login_key(name))
            txn.delete(used_key(name))

        await self._tx(caller.account_id, fn)

    async def may_change_own(self, caller: Principal, policy: PasswordPolicy) -> None:
        """Raise AccessDenied unless an IAM user may change their own password.

        As on AWS, ``AllowUsersToChangePassword`` in the account policy lets every IAM user do
        so; otherwise the user's own policies must allow ``iam:ChangePassword`` on their ARN.
        An explicit deny wins either way.
        """
        resource = iam_arn(caller.account_id, "user", "/", caller.name)
        doc = await self._reads.get(caller.account_id, entity_key(USER, caller.name))
        if doc is not None:
            resource = str(doc["arn"])
        extra = resource_keys(doc) if doc is not None else {}
        result = await self._authz.evaluate(caller, "iam:ChangePassword", resource, extra)
        if result.decision is Decision.ALLOW:
            return
        if result.decision is Decision.IMPLICIT_DENY and policy.allow_users_to_change:
            return
        raise self._authz.denial(caller, "iam:ChangePassword", resource, result, extra)

    async def change_password(self, caller: Principal, old: str, new: str) -> None:
        """ChangePassword: an IAM user replaces their own password (old one required)."""
        if caller.kind is not PrincipalKind.USER:
            raise InvalidUserTypeError()
        account, name = caller.account_id, caller.name
        policy = await self.policy_of(account)
        await self.may_change_own(caller, policy)
        seen = await read(self._store, account, login_key(name))
        if seen is None:
            raise self._no_profile(name)
        if not await self.verify(seen["hash"], old):
            raise InvalidInputError("The old password is incorrect.")
        state = password_state(
            policy,
            changed=_parse_time(seen["changed"]),
            reset_required=bool(seen.get("reset_required")),
            now=self._clock.now(),
        )
        if state is PasswordState.HARD_EXPIRED:
            raise EntityTemporarilyUnmodifiableError(
                "The password has expired and the password policy (HardExpiry) does not let "
                "users change it; an administrator must reset it."
            )
        await self.set_own_password(account, name, seen, new)

    async def set_own_password(self, account: str, name: str, seen: Doc, new: str) -> None:
        """Set a user's new password after they proved the old one (``seen`` is its record).

        The policy (reuse prevention included) is enforced; ``reset_required`` is cleared.
        """
        await self.check_new_password(account, new, seen["hash"], seen.get("history", []))
        encoded = await self.hash(new)
        changed = now_text(self._clock)

        async def fn(txn: Txn) -> None:
            doc = await txn.get(login_key(name))
            if doc is None:
                raise self._no_profile(name)
            if doc["hash"] != seen["hash"]:
                raise EntityTemporarilyUnmodifiableError(
                    "The password was changed while this request ran; try again."
                )
            doc["history"] = next_history(doc["hash"], doc.get("history", []))
            doc["hash"] = encoded
            doc["changed"] = changed
            doc["reset_required"] = False
            txn.put(login_key(name), doc)

        await self._tx(account, fn)

    # -- account password policy -------------------------------------------------------------

    async def update_policy(self, caller: Principal, policy: PasswordPolicy) -> None:
        """UpdateAccountPasswordPolicy: replace the policy (members not given take defaults)."""
        await self._allow(caller, "iam:UpdateAccountPasswordPolicy", "*")

        async def fn(txn: Txn) -> None:
            txn.put(PWPOLICY, policy.to_record())

        await self._tx(caller.account_id, fn)

    async def get_policy(self, caller: Principal) -> PasswordPolicy:
        """GetAccountPasswordPolicy (``NoSuchEntity`` while the account has none)."""
        await self._allow(caller, "iam:GetAccountPasswordPolicy", "*")
        doc = await read(self._store, caller.account_id, PWPOLICY)
        if doc is None:
            raise self._no_policy(caller.account_id)
        return PasswordPolicy.from_record(doc)

    async def delete_policy(self, caller: Principal) -> None:
        """DeleteAccountPasswordPolicy (``NoSuchEntity`` while the account has none)."""
        await self._allow(caller, "iam:DeleteAccountPasswordPolicy", "*")

        async def fn(txn: Txn) -> None:
            if await txn.get(PWPOLICY) is None:
                raise self._no_policy(caller.account_id)
            txn.delete(PWPOLICY)

        await self._tx(caller.account_id, fn)

    @staticmethod
    def _no_policy(account: str) -> NoSuchEntityError:
        return NoSuchEntityError(f"The Password Policy with domain name {account} cannot be found.")

    # -- account aliases ---------------------------------------------------------------------

    async def create_alias(self, caller: Principal, alias: str) -> None:
        """CreateAccountAlias: one alias per account, unique across the broker."""
        await self._allow(caller, "iam:CreateAccountAlias", "*")
        account = caller.account_id
        if ACCOUNT_ID.fullmatch(alias):
            raise InvalidInputError("The account alias cannot be a 12-digit number.")
        current = await read(self._store, account, ALIAS)
        if current is not None:
            if current["alias"] == alias:
                return
            raise LimitExceededError(
                f"Cannot exceed quota for AccountAliasesPerAccount: {ALIASES_PER_ACCOUNT}"
            )

        async def claim(txn: Txn) -> bool:
            doc = await txn.get(alias_key(alias))
            if doc is not None and doc["account"] != account:
                owner = await read(self._store, str(doc["account"]), ALIAS)
                if owner is not None and owner.get("alias") == alias:
                    raise EntityAlreadyExistsError(f"The account alias {alias} already exists.")
                # A claim its account never completed (or released): take it over.
            txn.bump = False
            txn.put(alias_key(alias), {"account": account})
            return doc is None or doc["account"] != account

        claimed = await transact(self._store, GLOBAL_NS, claim)

        async def own(txn: Txn) -> None:
            doc = await txn.get(ALIAS)
            if doc is not None and doc["alias"] != alias:
                raise LimitExceededError(
                    f"Cannot exceed quota for AccountAliasesPerAccount: {ALIASES_PER_ACCOUNT}"
                )
            txn.put(ALIAS, {"alias": alias})

        try:
            await self._tx(account, own)
        except LimitExceededError:
            if claimed:
                await self._release(alias, account)
            raise

    async def _release(self, alias: str, account: str) -> None:
        async def fn(txn: Txn) -> None:
            doc = await txn.get(alias_key(alias))
            if doc is not None and doc["account"] == account:
                txn.bump = False
                txn.delete(alias_key(alias))

        await transact(self._store, GLOBAL_NS, fn)

    async def list_aliases(self, caller: Principal) -> list[str]:
        """ListAccountAliases: the account's alias, if any."""
        await self._allow(caller, "iam:ListAccountAliases", "*")
        doc = await read(self._store, caller.account_id, ALIAS)
        return [str(doc["alias"])] if doc is not None else []

    async def delete_alias(self, caller: Principal, alias: str) -> None:
        """DeleteAccountAlias: forget the alias (``NoSuchEntity`` if it is not the account's)."""
        await self._allow(caller, "iam:DeleteAccountAlias", "*")
        account = caller.account_id

        async def fn(txn: Txn) -> None:
            doc = await txn.get(ALIAS)
            if doc is None or doc["alias"] != alias:
                raise NoSuchEntityError(f"The account alias {alias} cannot be found.")
            txn.delete(ALIAS)

        await self._tx(account, fn)
        await self._release(alias, account)

    async def resolve_account(self, ref: str) -> str | None:
        """The account id that ``ref`` (an account id or an alias) names, or ``None``."""
        if ACCOUNT_ID.fullmatch(ref):
            found = await read(self._store, GLOBAL_NS, f"account/{ref}")
            return ref if found is not None else None
        if not ALIAS_PATTERN.fullmatch(ref):
            return None
        claim = await read(self._store, GLOBAL_NS, alias_key(ref))
        if claim is None:
            return None
        account = str(claim["account"])
        owner = await read(self._store, account, ALIAS)  # the account record must agree
        return account if owner is not None and owner.get("alias") == ref else None


# -- sign-in ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigninSettings:
    """``[signin]``: lockout, hashing cost and the length of sign-in sessions."""

    max_failures: int = 5
    lockout_seconds: int = 300
    session_seconds: int = 43200
    hash: HashParams = HashParams()


class SigninError(Exception):
    """Base of the sign-in refusals; the API layer renders each one."""


class SigninDeniedError(SigninError):
    """Wrong account, user, password or MFA code: one answer for all of them."""


class SigninLockedError(SigninError):
    """Too many consecutive failures: ``retry_after`` seconds until the next try counts."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("locked")
        self.retry_after = retry_after


class PasswordResetRequiredError(SigninError):
    """The password is right but must be changed first (reset asked for, or past max age)."""


class PasswordHardExpiredError(SigninError):
    """The password is past its max age under HardExpiry: only an administrator can reset it."""


@dataclass(slots=True)
class SigninTrace:
    """What an attempt found out, for its audit event (filled in as the attempt goes)."""

    account_id: str = ""
    user_name: str = ""
    user_arn: str = ""
    user_id: str = ""
    mfa_used: bool = False


@dataclass(frozen=True, slots=True)
class SigninResult:
    """A successful sign-in: the session's credentials and whose they are."""

    session: IssuedSession = field(repr=False)
    account_id: str
    user_name: str
    user_arn: str


@dataclass(frozen=True, slots=True)
class _Proven:
    """A user who proved their password (and MFA code, if they have a device)."""

    account: str
    user: Doc
    login: Doc
    principal: Principal
    mfa_time: int | None


class SigninService:
    """Password sign-in of IAM users: lockout, MFA, expiry and minting a session."""

    def __init__(
        self,
        store: Store,
        passwords: PasswordService,
        mfa: MfaService,
        sts: StsService,
        clock: Clock,
        settings: SigninSettings,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._mfa = mfa
        self._sts = sts
        self._clock = clock
        self.settings = settings

    # -- failure counting --------------------------------------------------------------------

    @staticmethod
    def _failure_key(account_ref: str, user: str) -> str:
        return f"{FAILURES}/{account_ref.lower()}/{user.lower()}"

    async def _locked_for(self, key: str, now: float) -> int:
        """Seconds the user stays locked out (0: not locked)."""
        doc = await read(self._store, GLOBAL_NS, key)
        if doc is None:
            return 0
        until = float(doc.get("until", 0))
        return max(math.ceil(until - now), 0) if until > now else 0

    async def _count_failure(self, key: str, now: float) -> None:
        window = self.settings.lockout_seconds

        async def fn(txn: Txn) -> None:
            doc = await txn.get(key)
            count = 0
            if doc is not None:
                lock_over = 0 < float(doc.get("until", 0)) <= now
                stale = now - float(doc.get("last", 0)) > window
                count = 0 if lock_over or stale else int(doc.get("count", 0))
            count += 1
            until = now + window if count >= self.settings.max_failures else 0.0
            txn.bump = False
            txn.put(
                key,
                {"count": count, "last": now, "until": until},
                expires_at=max(until, now + window),
            )

        await transact(self._store, GLOBAL_NS, fn)

    async def _clear_failures(self, key: str) -> None:
        async def fn(txn: Txn) -> None:
            if await txn.get(key) is not None:
                txn.bump = False
                txn.delete(key)

        await transact(self._store, GLOBAL_NS, fn)

    # -- the steps ---------------------------------------------------------------------------

    async def _prove(
        self, account_ref: str, user: str, password: str, mfa_code: str | None, trace: SigninTrace
    ) -> _Proven:
        """Check the lockout, the password and the MFA code; count a failure on any miss."""
        now = self._clock.now().timestamp()
        account = await self._passwords.resolve_account(account_ref)
        key = self._failure_key(account or account_ref, user)
        wait = await self._locked_for(key, now)
        if wait:
            raise SigninLockedError(wait)
        trace.account_id = account or ""
        user_doc: Doc | None = None
        login: Doc | None = None
        if account is not None:
            user_doc, login = await read_many(
                self._store, account, [entity_key(USER, user), login_key(user)]
            )
        if user_doc is not None:
            trace.user_name = str(user_doc["name"])
            trace.user_arn = str(user_doc["arn"])
            trace.user_id = str(user_doc["id"])
        encoded = login["hash"] if user_doc is not None and login is not None else None
        ok = await self._passwords.verify_or_dummy(encoded, password)
        if not ok or account is None or user_doc is None or login is None:
            await self._count_failure(key, now)
            raise SigninDeniedError()
        mfa_time: int | None = None
        serial = user_doc.get("mfa")
        if serial:
            if not mfa_code:
                await self._count_failure(key, now)
                raise SigninDeniedError()
            try:
                mfa_time = await self._mfa.verify(account, str(user_doc["name"]), serial, mfa_code)
            except AccessDeniedError:
                await self._count_failure(key, now)
                raise SigninDeniedError() from None
            trace.mfa_used = True
        await self._clear_failures(key)
        principal = Principal(
            kind=PrincipalKind.USER,
            account_id=account,
            arn=str(user_doc["arn"]),
            user_id=str(user_doc["id"]),
            name=str(user_doc["name"]),
            access_key_id="",
        )
        return _Proven(account, user_doc, login, principal, mfa_time)

    def _state(self, proven: _Proven, policy: PasswordPolicy) -> PasswordState:
        return password_state(
            policy,
            changed=_parse_time(proven.login["changed"]),
            reset_required=bool(proven.login.get("reset_required")),
            now=self._clock.now(),
        )

    async def sign_in(
        self,
        account_ref: str,
        user: str,
        password: str,
        mfa_code: str | None,
        trace: SigninTrace,
    ) -> SigninResult:
        """Sign an IAM user in with their password; return fresh session credentials.

        Raises :class:`SigninLockedError`, :class:`SigninDeniedError`,
        :class:`PasswordResetRequiredError` or :class:`PasswordHardExpiredError`. The
        password's age and reset flag are looked at only once the password (and the MFA code)
        proved right, so those answers never help guess a password.
        """
        proven = await self._prove(account_ref, user, password, mfa_code, trace)
        policy = await self._passwords.policy_of(proven.account)
        state = self._state(proven, policy)
        if state is PasswordState.HARD_EXPIRED:
            raise PasswordHardExpiredError()
        if state is PasswordState.RESET_REQUIRED:
            raise PasswordResetRequiredError()
        await self._maybe_rehash(proven, password)
        return await self._mint(proven)

    async def change_and_sign_in(
        self,
        account_ref: str,
        user: str,
        password: str,
        new_password: str,
        mfa_code: str | None,
        trace: SigninTrace,
    ) -> SigninResult:
        """Set a new password (proving the current one) and sign in with it.

        A change the policy asks for (reset required, or past max age) is always allowed; a
        change nobody asked for needs what ``ChangePassword`` needs. Raises what
        :meth:`sign_in` raises (except :class:`PasswordResetRequiredError`), plus
        ``PasswordPolicyViolation`` and ``AccessDenied``.
        """
        proven = await self._prove(account_ref, user, password, mfa_code, trace)
        policy = await self._passwords.policy_of(proven.account)
        state = self._state(proven, policy)
        if state is PasswordState.HARD_EXPIRED:
            raise PasswordHardExpiredError()
        if state is PasswordState.OK:
            await self._passwords.may_change_own(proven.principal, policy)
        name = str(proven.user["name"])
        await self._passwords.set_own_password(proven.account, name, proven.login, new_password)
        return await self._mint(proven)

    async def _maybe_rehash(self, proven: _Proven, password: str) -> None:
        """Renew a hash made with other cost settings (best effort, never bumps caches)."""
        params = self._passwords.hash_params
        if not needs_rehash(proven.login["hash"], params):
            return
        encoded = await self._passwords.hash(password)
        key = login_key(str(proven.user["name"]))

        async def fn(txn: Txn) -> None:
            doc = await txn.get(key)
            if doc is not None and doc["hash"] == proven.login["hash"]:
                doc["hash"] = encoded
                txn.bump = False
                txn.put(key, doc)

        try:
            await transact(self._store, proven.account, fn)
        except StoreError:
            log.warning("account=%s password rehash skipped: store unavailable", proven.account)

    async def _mint(self, proven: _Proven) -> SigninResult:
        """Mint the session (as GetSessionToken does for the user) and note the sign-in."""
        p = proven.principal
        issued = await self._sts.mint_user_session(
            p, self.settings.session_seconds, proven.mfa_time
        )
        metrics.credentials_issued("signin")
        used = {"time": iso8601(self._clock.now())}
        try:
            await self._store.commit(
                proven.account,
                {used_key(p.name): Put(encode(used))},
                bump=False,
            )
        except StoreError:
            log.warning("account=%s last sign-in time not recorded", proven.account)
        return SigninResult(issued, proven.account, p.name, p.arn)


def keyring_cookie(keyring: Keyring, result: SigninResult) -> str:
    """An opaque, sealed session cookie value: session id and expiry, never a secret key."""
    claims = result.session.claims
    payload = f"{claims.account_id}:{claims.session_id}:{claims.expires_at}".encode("ascii")
    return keyring.seal(payload, aad=b"signin-cookie")
