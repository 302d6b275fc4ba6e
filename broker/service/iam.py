"""Service: the IAM use cases (users, groups, roles, policies, keys, instance profiles).

Each public method takes the authenticated caller first, authorizes the IAM action against
the caller's policies, then reads and writes records of the caller's account inside one
optimistic transaction (``broker.service.txn``), so quotas and cross-record invariants hold
when several broker processes share a store. Records are plain JSON documents:

========================  ===============================================================
key                       record
========================  ===============================================================
``account``               account id, creation time, root access key ids
``user/<name lower>``     user, with group names, attached policy ARNs, inline policies, keys
``group/<name lower>``    group, with member names, attached ARNs, inline policies
``role/<name lower>``     role, with trust policy, attached ARNs, inline, instance profiles
``policy/<name lower>``   customer-managed policy with all versions and its attachments
``awspolicy/<name>``      this account's attachments of an AWS-managed policy
``iprofile/<name lower>`` instance profile with its role name
``akey/<AKID>``           access key: owner, status, sealed secret
``akused/<AKID>``         last use of the key (write-behind, does not bump the generation)
``count/<kind>``          number of entities of a kind (account quotas)
========================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from broker.clock import Clock, iso8601
from broker.core import ids, limits
from broker.core.arn import (
    AWS_MANAGED_ACCOUNT,
    iam_arn,
    parse_arn,
    policy_arn,
    root_arn,
    split_policy_arn,
)
from broker.core.model import Principal
from broker.core.policy import ContextValue, PolicyKind, parse_policy, policy_size
from broker.core.policy.model import PrincipalType
from broker.errors import (
    AccessDeniedError,
    DeleteConflictError,
    EntityAlreadyExistsError,
    InvalidInputError,
    LimitExceededError,
    MalformedPolicyError,
    NoSuchEntityError,
)
from broker.service.managed import BY_ARN as AWS_POLICIES
from broker.service.managed import AwsManagedPolicy
from broker.service.scoped import AccountScopedService
from broker.service.txn import Doc, Txn, read, read_many, scan
from broker.store.base import VersionConflict

T = TypeVar("T")

# Entity kinds: record prefix, unique-id prefix, ARN resource type.
USER, GROUP, ROLE, POLICY, IPROFILE = "user", "group", "role", "policy", "iprofile"
_ID_PREFIX = {USER: "AIDA", GROUP: "AGPA", ROLE: "AROA", POLICY: "ANPA", IPROFILE: "AIPA"}
_ARN_TYPE = {
    USER: "user",
    GROUP: "group",
    ROLE: "role",
    POLICY: "policy",
    IPROFILE: "instance-profile",
}
_NOUN = {USER: "user", GROUP: "group", ROLE: "role", POLICY: "policy", IPROFILE: "instance profile"}
_ACCOUNT_QUOTA = {
    USER: limits.USERS_PER_ACCOUNT,
    GROUP: limits.GROUPS_PER_ACCOUNT,
    ROLE: limits.ROLES_PER_ACCOUNT,
    POLICY: limits.POLICIES_PER_ACCOUNT,
    IPROFILE: limits.INSTANCE_PROFILES_PER_ACCOUNT,
}
_INLINE_QUOTA = {
    USER: limits.USER_INLINE_POLICY_SIZE,
    GROUP: limits.GROUP_INLINE_POLICY_SIZE,
    ROLE: limits.ROLE_INLINE_POLICY_SIZE,
}
_ATTACHED_QUOTA = {
    USER: limits.ATTACHED_POLICIES_PER_USER,
    GROUP: limits.ATTACHED_POLICIES_PER_GROUP,
    ROLE: limits.ATTACHED_POLICIES_PER_ROLE,
}


def entity_key(kind: str, name: str) -> str:
    """Return the record key of a named entity (names are unique case-insensitively)."""
    return f"{kind}/{name.lower()}"


def now_text(clock: Clock) -> str:
    """Return the clock's time as stored in records."""
    return iso8601(clock.now())


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    """A freshly created access key; the only time its secret is shown."""

    user_name: str | None
    access_key_id: str
    secret_access_key: str
    status: str
    created: str

    def __repr__(self) -> str:
        return f"NewAccessKey(access_key_id={self.access_key_id!r}, secret_access_key='***')"


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A managed policy as the API shows it (customer or AWS-managed)."""

    name: str
    policy_id: str
    arn: str
    path: str
    default_version: str
    attachment_count: int
    boundary_count: int
    attachable: bool
    description: str | None
    created: str
    updated: str
    tags: list[list[str]]
    document: str  # default version's document


def _tags_merge(existing: list[list[str]], new: Sequence[tuple[str, str]]) -> list[list[str]]:
    out = [list(t) for t in existing]
    for key, value in new:
        for t in out:
            if t[0].lower() == key.lower():
                t[0], t[1] = key, value
                break
        else:
            out.append([key, value])
    if len(out) > limits.TAGS_PER_ENTITY:
        raise LimitExceededError(
            f"The number of tags has reached the maximum limit of {limits.TAGS_PER_ENTITY}."
        )
    return out


def request_tag_keys(tags: Sequence[tuple[str, str]]) -> dict[str, ContextValue]:
    """Context keys of tags sent with a request: ``aws:RequestTag/k`` and ``aws:TagKeys``."""
    keys: dict[str, ContextValue] = {f"aws:RequestTag/{k}": v for k, v in tags}
    keys["aws:TagKeys"] = [k for k, _ in tags]
    return keys


def resource_keys(doc: Doc) -> dict[str, ContextValue]:
    """Context keys an existing entity contributes: its tags and its permissions boundary."""
    keys: dict[str, ContextValue] = {}
    for k, v in doc.get("tags", []):
        keys[f"iam:ResourceTag/{k}"] = v
        keys[f"aws:ResourceTag/{k}"] = v
    if doc.get("boundary"):
        keys["iam:PermissionsBoundary"] = doc["boundary"]
    return keys


def check_tags(tags: Sequence[tuple[str, str]]) -> None:
    """Reject reserved or duplicated tag keys in one request (IAM's ``InvalidInput``)."""
    seen: set[str] = set()
    for key, _ in tags:
        if key.lower().startswith("aws:"):
            raise InvalidInputError("User-defined tag keys can't start with 'aws:'.")
        if key.lower() in seen:
            raise InvalidInputError(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive."
            )
        seen.add(key.lower())
    if len(tags) > limits.TAGS_PER_ENTITY:
        raise LimitExceededError(
            f"The number of tags has reached the maximum limit of {limits.TAGS_PER_ENTITY}."
        )


class IamService(AccountScopedService):
    """The IAM use cases for every account the broker hosts."""

    def _arn(self, caller: Principal, kind: str, path: str, name: str) -> str:
        return iam_arn(caller.account_id, _ARN_TYPE[kind], path, name)

    def _new_id(self, kind: str) -> str:
        return ids.new_unique_id(_ID_PREFIX[kind], self._rng)

    @staticmethod
    def _missing(kind: str, name: str) -> NoSuchEntityError:
        if kind == POLICY:
            return NoSuchEntityError(f"Policy {name} does not exist or is not attachable.")
        return NoSuchEntityError(f"The {_NOUN[kind]} with name {name} cannot be found.")

    async def _must(self, txn: Txn, kind: str, name: str) -> Doc:
        doc = await txn.get(entity_key(kind, name))
        if doc is None:
            raise self._missing(kind, name)
        return doc

    async def _get(
        self,
        caller: Principal,
        kind: str,
        name: str,
        action: str | None = None,
        extra: Mapping[str, ContextValue] | None = None,
    ) -> Doc:
        """Read a named entity; with ``action``, authorize it on the entity first.

        A caller not allowed ``action`` gets ``AccessDenied`` whether or not the entity exists
        (checked against the ARN the entity would have at path ``/``), so names cannot be probed.
        The entity's tags (``iam:ResourceTag/k``, ``aws:ResourceTag/k``) and permissions
        boundary (``iam:PermissionsBoundary``) join the request context, with ``extra``.
        """
        doc = await self._reads.get(caller.account_id, entity_key(kind, name))
        if action is not None:
            arn = doc["arn"] if doc is not None else self._arn(caller, kind, "/", name)
            keys = resource_keys(doc) if doc is not None else {}
            await self._allow(caller, action, arn, {**keys, **(extra or {})})
        if doc is None:
            raise self._missing(kind, name)
        return doc

    async def _count(self, txn: Txn, kind: str, delta: int) -> None:
        key = f"count/{kind}"
        doc: Doc = await txn.get(key) or {"n": 0}
        n = int(doc["n"]) + delta
        if delta > 0 and n > _ACCOUNT_QUOTA[kind]:
            raise LimitExceededError(
                f"Cannot exceed quota for {_NOUN[kind].title().replace(' ', '')}sPerAccount: "
                f"{_ACCOUNT_QUOTA[kind]}"
            )
        txn.put(key, {"n": max(n, 0)})

    async def _list(self, caller: Principal, kind: str, path_prefix: str | None) -> list[Doc]:
        docs = await scan(self._store, caller.account_id, f"{kind}/")
        if path_prefix:
            docs = [d for d in docs if str(d["path"]).startswith(path_prefix)]
        return docs

    async def _create(
        self,
        caller: Principal,
        kind: str,
        name: str,
        path: str,
        extra: Doc,
        *,
        tags: Sequence[tuple[str, str]] = (),
        boundary: str | None = None,
    ) -> Doc:
        """Create an entity, its tags and its permissions boundary in one transaction."""
        arn = self._arn(caller, kind, path, name)
        check_tags(tags)

        async def fn(txn: Txn) -> Doc:
            if await txn.get(entity_key(kind, name)) is not None:
                raise EntityAlreadyExistsError(
                    f"{_NOUN[kind].capitalize()} with name {name} already exists."
                )
            await self._count(txn, kind, +1)
            doc: Doc = {
                "name": name,
                "id": self._new_id(kind),
                "path": path,
                "arn": arn,
                "created": now_text(self._clock),
                **extra,
                "tags": [[k, v] for k, v in tags],
            }
            if boundary is not None:
                await self._link_boundary(txn, kind, doc, boundary)
            txn.put(entity_key(kind, name), doc)
            return doc

        return await self._tx(caller.account_id, fn)

    # -- permissions boundaries ---------------------------------------------------------------

    async def _link_boundary(self, txn: Txn, kind: str, doc: Doc, arn: str) -> None:
        """Set ``arn`` as the boundary of entity ``doc`` (not yet put) and count the use."""
        if split_policy_arn(arn) is None:
            raise InvalidInputError(f"ARN {arn} is not valid.")
        if doc.get("boundary") == arn:
            return
        if doc.get("boundary"):
            await self._unlink_boundary(txn, kind, doc)
        pkey, pol = await self._policy_attachments(txn, arn)
        if pol is None:
            raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        pol.setdefault("boundaries", {}).setdefault(kind, []).append(doc["name"].lower())
        txn.put(pkey, pol)
        doc["boundary"] = arn

    async def _unlink_boundary(self, txn: Txn, kind: str, doc: Doc) -> None:
        arn = doc.get("boundary")
        if not arn:
            return
        pkey, pol = await self._policy_attachments(txn, arn)
        if pol is not None:
            refs = pol.setdefault("boundaries", {}).get(kind, [])
            pol["boundaries"][kind] = [r for r in refs if r != doc["name"].lower()]
            txn.put(pkey, pol)
        doc["boundary"] = None

    async def put_permissions_boundary(
        self, caller: Principal, kind: str, name: str, arn: str
    ) -> None:
        """PutUserPermissionsBoundary / PutRolePermissionsBoundary (replaces any previous one)."""
        await self._get(
            caller,
            kind,
            name,
            f"iam:Put{_ACTION_NOUN[kind]}PermissionsBoundary",
            {"iam:PermissionsBoundary": arn},
        )

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            await self._link_boundary(txn, kind, doc, arn)
            txn.put(entity_key(kind, name), doc)

        await self._tx(caller.account_id, fn)

    async def delete_permissions_boundary(self, caller: Principal, kind: str, name: str) -> None:
        """DeleteUserPermissionsBoundary / DeleteRolePermissionsBoundary."""
        await self._get(caller, kind, name, f"iam:Delete{_ACTION_NOUN[kind]}PermissionsBoundary")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            if not doc.get("boundary"):
                raise NoSuchEntityError(
                    f"The {_NOUN[kind]} with name {name} has no permissions boundary."
                )
            await self._unlink_boundary(txn, kind, doc)
            txn.put(entity_key(kind, name), doc)

        await self._tx(caller.account_id, fn)

    # -- accounts (bootstrap and admin CLI, not an IAM action) --------------------------------

    async def create_account(
        self,
        account_id: str | None = None,
        *,
        root_access_key_id: str | None = None,
        root_secret_access_key: str | None = None,
    ) -> NewAccessKey:
        """Create an account with its root user and one root access key."""
        account = account_id or ids.new_account_id(self._rng)
        akid = root_access_key_id or ids.new_access_key_id("AKIA", account, self._rng)
        secret = root_secret_access_key or ids.new_secret_access_key(self._rng)
        created = now_text(self._clock)

        async def fn(txn: Txn) -> None:
            if await txn.get("account") is not None:
                raise EntityAlreadyExistsError(f"Account {account} already exists.")
            txn.put("account", {"id": account, "created": created, "root_keys": [akid]})
            txn.put(f"akey/{akid}", self._key_record(akid, None, secret, created))

        await self._tx(account, fn)
        return NewAccessKey(None, akid, secret, "Active", created)

    def _key_record(self, akid: str, user: str | None, secret: str, created: str) -> Doc:
        sealed = self._keyring.seal(secret.encode("utf-8"), aad=akid.encode("ascii"))
        return {"id": akid, "user": user, "status": "Active", "created": created, "secret": sealed}

    # -- users ------------------------------------------------------------------------------

    async def create_user(
        self,
        caller: Principal,
        name: str,
        path: str,
        tags: Sequence[tuple[str, str]],
        boundary: str | None = None,
    ) -> Doc:
        """CreateUser (with optional tags and permissions boundary)."""
        keys = request_tag_keys(tags)
        if boundary is not None:
            keys["iam:PermissionsBoundary"] = boundary
        await self._allow(caller, "iam:CreateUser", self._arn(caller, USER, path, name), keys)
        extra: Doc = {"groups": [], "attached": [], "inline": {}, "keys": [], "boundary": None}
        return await self._create(caller, USER, name, path, extra, tags=tags, boundary=boundary)

    async def get_user(self, caller: Principal, name: str | None) -> Doc:
        """GetUser; without a name, the caller (root included)."""
        if name is None:
            if caller.is_root:
                await self._allow(caller, "iam:GetUser", caller.arn)
                acct = await read(self._store, caller.account_id, "account") or {}
                return {
                    "root": True,
                    "id": caller.account_id,
                    "arn": caller.arn,
                    "created": acct.get("created", now_text(self._clock)),
                    "path": "/",
                    "name": None,
                    "tags": [],
                }
            name = caller.name
        doc = await self._get(caller, USER, name, "iam:GetUser")
        used = await read(self._store, caller.account_id, f"pwused/{name.lower()}")
        if used is not None:  # last password sign-in (broker.service.passwords)
            doc = {**doc, "password_last_used": used["time"]}  # the cached doc stays as it is
        return doc

    async def list_users(self, caller: Principal, path_prefix: str | None) -> list[Doc]:
        """ListUsers."""
        await self._allow(caller, "iam:ListUsers", self._arn(caller, USER, "/", ""))
        return await self._list(caller, USER, path_prefix)

    async def update_user(
        self, caller: Principal, name: str, new_name: str | None, new_path: str | None
    ) -> None:
        """UpdateUser: rename and/or move a user, keeping every reference to it consistent."""
        current = await self._get(caller, USER, name, "iam:UpdateUser")
        if new_name is not None and new_name != name:
            target = self._arn(caller, USER, new_path or current["path"], new_name)
            await self._allow(caller, "iam:UpdateUser", target)
        await self._rename(caller, USER, name, new_name, new_path)

    async def _rename(
        self, caller: Principal, kind: str, name: str, new_name: str | None, new_path: str | None
    ) -> None:
        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            old_key = entity_key(kind, doc["name"])
            if new_name is not None:
                new_key = entity_key(kind, new_name)
                if new_key != old_key and await txn.get(new_key) is not None:
                    raise EntityAlreadyExistsError(
                        f"{_NOUN[kind].capitalize()} with name {new_name} already exists."
                    )
                doc["name"] = new_name
            if new_path is not None:
                doc["path"] = new_path
            doc["arn"] = self._arn(caller, kind, doc["path"], doc["name"])
            new_key = entity_key(kind, doc["name"])
            old_lower, new_lower = old_key.split("/", 1)[1], new_key.split("/", 1)[1]
            # Keep references by name consistent.
            if kind == USER:
                for g in doc["groups"]:
                    group = await self._must_ref(txn, GROUP, g)
                    group["members"] = [
                        new_lower if m == old_lower else m for m in group["members"]
                    ]
                    txn.put(entity_key(GROUP, g), group)
                for akid in doc["keys"]:
                    key = await txn.get(f"akey/{akid}")
                    if key is not None:
                        key["user"] = new_lower
                        txn.put(f"akey/{akid}", key)
                login = await txn.get(f"login/{old_lower}")  # the console password moves along
                if login is not None:
                    login["user"] = doc["name"]
                    if old_lower != new_lower:
                        txn.delete(f"login/{old_lower}")
                    txn.put(f"login/{new_lower}", login)
            elif kind == GROUP:
                for u in doc["members"]:
                    user = await self._must_ref(txn, USER, u)
                    user["groups"] = [new_lower if g == old_lower else g for g in user["groups"]]
                    txn.put(entity_key(USER, u), user)
            if doc.get("boundary"):
                rec_key, pol = await self._policy_attachments(txn, doc["boundary"])
                if pol is not None:
                    refs = pol.setdefault("boundaries", {}).setdefault(kind, [])
                    pol["boundaries"][kind] = [new_lower if r == old_lower else r for r in refs]
                    txn.put(rec_key, pol)
            for arn in doc.get("attached", []):
                rec_key, pol = await self._policy_attachments(txn, arn)
                if pol is not None:
                    refs = pol.setdefault("attachments", {}).setdefault(kind, [])
                    pol["attachments"][kind] = [new_lower if r == old_lower else r for r in refs]
                    txn.put(rec_key, pol)
            if old_key != new_key:
                txn.delete(old_key)
            txn.put(new_key, doc)

        await self._tx(caller.account_id, fn)

    async def _must_ref(self, txn: Txn, kind: str, lower_name: str) -> Doc:
        doc = await txn.get(f"{kind}/{lower_name}")
        if doc is None:  # pragma: no cover - references are kept consistent in transactions
            raise self._missing(kind, lower_name)
        return doc

    async def delete_user(self, caller: Principal, name: str) -> None:
        """DeleteUser: only once nothing hangs off the user (DeleteConflict otherwise)."""
        await self._get(caller, USER, name, "iam:DeleteUser")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, USER, name)
            if doc.get("mfa"):  # serial of the user's enabled device (broker.service.mfa)
                raise DeleteConflictError("Cannot delete entity, must delete MFA device first.")
            if await txn.get(f"login/{name.lower()}") is not None:  # broker.service.passwords
                raise DeleteConflictError("Cannot delete entity, must delete login profile first.")
            if doc["keys"] or doc["groups"] or doc["attached"] or doc["inline"]:
                raise DeleteConflictError(
                    "Cannot delete entity, must delete access keys, remove from groups, "
                    "detach and delete policies first."
                )
            await self._unlink_boundary(txn, USER, doc)
            txn.delete(entity_key(USER, name))
            txn.delete(f"accessed/user/{name.lower()}")  # a new user of this name starts afresh
            await self._count(txn, USER, -1)

        await self._tx(caller.account_id, fn)

    # -- tags (users, roles) ------------------------------------------------------------------

    async def _update_tags(
        self,
        caller: Principal,
        kind: str,
        name: str,
        add: Sequence[tuple[str, str]],
        remove: Sequence[str],
    ) -> Doc:
        async def fn(txn: Txn) -> Doc:
            doc = await self._must(txn, kind, name)
            tags = _tags_merge(doc.get("tags", []), add)
            drop = {k.lower() for k in remove}
            doc["tags"] = [t for t in tags if t[0].lower() not in drop]
            txn.put(entity_key(kind, name), doc)
            return doc

        return await self._tx(caller.account_id, fn)

    async def tag(
        self, caller: Principal, kind: str, name: str, tags: Sequence[tuple[str, str]]
    ) -> None:
        """TagUser / TagRole / TagInstanceProfile."""
        await self._get(caller, kind, name, f"iam:Tag{_ACTION_NOUN[kind]}", request_tag_keys(tags))
        check_tags(tags)
        await self._update_tags(caller, kind, name, tags, [])

    async def untag(self, caller: Principal, kind: str, name: str, keys: Sequence[str]) -> None:
        """UntagUser / UntagRole / UntagInstanceProfile."""
        await self._get(
            caller, kind, name, f"iam:Untag{_ACTION_NOUN[kind]}", {"aws:TagKeys": list(keys)}
        )
        await self._update_tags(caller, kind, name, [], keys)

    async def list_tags(self, caller: Principal, kind: str, name: str) -> list[list[str]]:
        """ListUserTags / ListRoleTags / ListInstanceProfileTags."""
        doc = await self._get(caller, kind, name, f"iam:List{_ACTION_NOUN[kind]}Tags")
        tags: list[list[str]] = doc.get("tags", [])
        return tags

    # -- groups -----------------------------------------------------------------------------

    async def create_group(self, caller: Principal, name: str, path: str) -> Doc:
        """CreateGroup."""
        await self._allow(caller, "iam:CreateGroup", self._arn(caller, GROUP, path, name))
        return await self._create(
            caller, GROUP, name, path, {"members": [], "attached": [], "inline": {}}
        )

    async def get_group(self, caller: Principal, name: str) -> tuple[Doc, list[Doc]]:
        """GetGroup: the group and its member users."""
        doc = await self._get(caller, GROUP, name, "iam:GetGroup")
        users = await read_many(
            self._store, caller.account_id, [f"user/{m}" for m in doc["members"]]
        )
        return doc, [u for u in users if u is not None]

    async def list_groups(self, caller: Principal, path_prefix: str | None) -> list[Doc]:
        """ListGroups."""
        await self._allow(caller, "iam:ListGroups", self._arn(caller, GROUP, "/", ""))
        return await self._list(caller, GROUP, path_prefix)

    async def update_group(
        self, caller: Principal, name: str, new_name: str | None, new_path: str | None
    ) -> None:
        """UpdateGroup: rename and/or move a group."""
        await self._get(caller, GROUP, name, "iam:UpdateGroup")
        await self._rename(caller, GROUP, name, new_name, new_path)

    async def delete_group(self, caller: Principal, name: str) -> None:
        """DeleteGroup: only when it has no members and no policies."""
        await self._get(caller, GROUP, name, "iam:DeleteGroup")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, GROUP, name)
            if doc["members"] or doc["attached"] or doc["inline"]:
                raise DeleteConflictError(
                    "Cannot delete entity, must remove users from group, "
                    "detach and delete policies first."
                )
            txn.delete(entity_key(GROUP, name))
            await self._count(txn, GROUP, -1)

        await self._tx(caller.account_id, fn)

    async def add_user_to_group(self, caller: Principal, group: str, user: str) -> None:
        """AddUserToGroup (at most ``GROUPS_PER_USER`` groups per user)."""
        await self._get(caller, GROUP, group, "iam:AddUserToGroup")

        async def fn(txn: Txn) -> None:
            g = await self._must(txn, GROUP, group)
            u = await self._must(txn, USER, user)
            gl, ul = group.lower(), user.lower()
            if gl in u["groups"]:
                return
            if len(u["groups"]) >= limits.GROUPS_PER_USER:
                raise LimitExceededError(
                    f"Cannot exceed quota for GroupsPerUser: {limits.GROUPS_PER_USER}"
                )
            u["groups"].append(gl)
            g["members"].append(ul)
            txn.put(entity_key(USER, user), u)
            txn.put(entity_key(GROUP, group), g)

        await self._tx(caller.account_id, fn)

    async def remove_user_from_group(self, caller: Principal, group: str, user: str) -> None:
        """RemoveUserFromGroup."""
        await self._get(caller, GROUP, group, "iam:RemoveUserFromGroup")

        async def fn(txn: Txn) -> None:
            g = await self._must(txn, GROUP, group)
            u = await self._must(txn, USER, user)
            gl, ul = group.lower(), user.lower()
            if gl not in u["groups"]:
                raise NoSuchEntityError(
                    f"The user with name {user} cannot be found in group {group}."
                )
            u["groups"].remove(gl)
            g["members"] = [m for m in g["members"] if m != ul]
            txn.put(entity_key(USER, user), u)
            txn.put(entity_key(GROUP, group), g)

        await self._tx(caller.account_id, fn)

    async def list_groups_for_user(self, caller: Principal, user: str) -> list[Doc]:
        """ListGroupsForUser."""
        doc = await self._get(caller, USER, user, "iam:ListGroupsForUser")
        groups = await read_many(
            self._store, caller.account_id, [f"group/{g}" for g in doc["groups"]]
        )
        return sorted((g for g in groups if g is not None), key=lambda g: str(g["name"]).lower())

    # -- roles ------------------------------------------------------------------------------

    async def _trust(self, caller: Principal, document: str) -> str:
        """Validate a role trust policy; same-account users and roles it names must exist."""
        if policy_size(document) > limits.ASSUME_ROLE_POLICY_SIZE:
            raise LimitExceededError(
                f"Cannot exceed quota for ACLSizePerRole: {limits.ASSUME_ROLE_POLICY_SIZE}"
            )
        policy = parse_policy(document, PolicyKind.TRUST)
        for statement in policy.statements:
            for principal in (statement.principals or ()) + (statement.not_principals or ()):
                if principal.type is not PrincipalType.AWS:
                    continue
                arn = parse_arn(principal.value)
                if arn is None or arn.service != "iam" or arn.account != caller.account_id:
                    continue
                kind, _, _ = arn.resource.partition("/")
                if kind not in (USER, ROLE):
                    continue
                name = arn.resource.rsplit("/", 1)[1]
                doc = await read(self._store, caller.account_id, entity_key(kind, name))
                if doc is None or doc["arn"] != principal.value:
                    raise MalformedPolicyError(
                        f'Invalid principal in policy: "AWS":"{principal.value}"'
                    )
        return document

    async def create_role(
        self,
        caller: Principal,
        name: str,
        path: str,
        trust: str,
        description: str | None,
        max_session: int,
        tags: Sequence[tuple[str, str]],
        boundary: str | None = None,
    ) -> Doc:
        """CreateRole (with optional tags and permissions boundary)."""
        keys = request_tag_keys(tags)
        if boundary is not None:
            keys["iam:PermissionsBoundary"] = boundary
        await self._allow(caller, "iam:CreateRole", self._arn(caller, ROLE, path, name), keys)
        await self._trust(caller, trust)
        extra: Doc = {
            "trust": trust,
            "description": description,
            "max_session": max_session,
            "attached": [],
            "inline": {},
            "profiles": [],
            "boundary": None,
        }
        return await self._create(caller, ROLE, name, path, extra, tags=tags, boundary=boundary)

    async def get_role(self, caller: Principal, name: str) -> Doc:
        """GetRole (``last_used``: the role's ``rlused/`` record, ``None`` if never used)."""
        doc = await self._get(caller, ROLE, name, "iam:GetRole")
        # Written behind without bumping the generation, so read from the store, never cached.
        used = await read(self._store, caller.account_id, f"rlused/{name.lower()}")
        return {**doc, "last_used": used}

    async def list_roles(self, caller: Principal, path_prefix: str | None) -> list[Doc]:
        """ListRoles."""
        await self._allow(caller, "iam:ListRoles", self._arn(caller, ROLE, "/", ""))
        return await self._list(caller, ROLE, path_prefix)

    async def update_role(
        self,
        caller: Principal,
        name: str,
        *,
        description: str | None = None,
        max_session: int | None = None,
        trust: str | None = None,
        action: str = "iam:UpdateRole",
    ) -> Doc:
        """UpdateRole / UpdateRoleDescription / UpdateAssumeRolePolicy."""
        await self._get(caller, ROLE, name, action)
        if trust is not None:
            await self._trust(caller, trust)

        async def fn(txn: Txn) -> Doc:
            doc = await self._must(txn, ROLE, name)
            if description is not None:
                doc["description"] = description
            if max_session is not None:
                doc["max_session"] = max_session
            if trust is not None:
                doc["trust"] = trust
            txn.put(entity_key(ROLE, name), doc)
            return doc

        return await self._tx(caller.account_id, fn)

    async def delete_role(self, caller: Principal, name: str) -> None:
        """DeleteRole: only when no policies and no instance profile hang off it."""
        await self._get(caller, ROLE, name, "iam:DeleteRole")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, ROLE, name)
            if doc["profiles"]:
                raise DeleteConflictError(
                    "Cannot delete entity, must remove roles from instance profile first."
                )
            if doc["attached"] or doc["inline"]:
                raise DeleteConflictError("Cannot delete entity, must detach all policies first.")
            await self._unlink_boundary(txn, ROLE, doc)
            txn.delete(entity_key(ROLE, name))
            txn.delete(f"accessed/role/{name.lower()}")  # a new role of this name starts afresh
            txn.delete(f"rlused/{name.lower()}")
            await self._count(txn, ROLE, -1)

        await self._tx(caller.account_id, fn)

    # -- instance profiles --------------------------------------------------------------------

    async def create_instance_profile(
        self, caller: Principal, name: str, path: str, tags: Sequence[tuple[str, str]]
    ) -> Doc:
        """CreateInstanceProfile."""
        arn = self._arn(caller, IPROFILE, path, name)
        await self._allow(caller, "iam:CreateInstanceProfile", arn, request_tag_keys(tags))
        return await self._create(caller, IPROFILE, name, path, {"roles": []}, tags=tags)

    async def get_instance_profile(self, caller: Principal, name: str) -> tuple[Doc, list[Doc]]:
        """GetInstanceProfile: the profile and its role (if any)."""
        doc = await self._get(caller, IPROFILE, name, "iam:GetInstanceProfile")
        return doc, await self._profile_roles(caller, doc)

    async def _profile_roles(self, caller: Principal, doc: Doc) -> list[Doc]:
        roles = await read_many(self._store, caller.account_id, [f"role/{r}" for r in doc["roles"]])
        return [r for r in roles if r is not None]

    async def list_instance_profiles(
        self, caller: Principal, path_prefix: str | None
    ) -> list[tuple[Doc, list[Doc]]]:
        """ListInstanceProfiles."""
        await self._allow(caller, "iam:ListInstanceProfiles", self._arn(caller, IPROFILE, "/", ""))
        profiles = await self._list(caller, IPROFILE, path_prefix)
        return [(p, await self._profile_roles(caller, p)) for p in profiles]

    async def list_instance_profiles_for_role(
        self, caller: Principal, role: str
    ) -> list[tuple[Doc, list[Doc]]]:
        """ListInstanceProfilesForRole."""
        r = await self._get(caller, ROLE, role, "iam:ListInstanceProfilesForRole")
        docs = await read_many(
            self._store, caller.account_id, [f"iprofile/{p}" for p in r["profiles"]]
        )
        return [(p, [r]) for p in docs if p is not None]

    async def delete_instance_profile(self, caller: Principal, name: str) -> None:
        """DeleteInstanceProfile: only once its role is removed."""
        await self._get(caller, IPROFILE, name, "iam:DeleteInstanceProfile")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, IPROFILE, name)
            if doc["roles"]:
                raise DeleteConflictError(
                    "Cannot delete entity, must remove roles from instance profile first."
                )
            txn.delete(entity_key(IPROFILE, name))
            await self._count(txn, IPROFILE, -1)

        await self._tx(caller.account_id, fn)

    async def add_role_to_instance_profile(
        self, caller: Principal, profile: str, role: str
    ) -> None:
        """AddRoleToInstanceProfile (at most one role per profile)."""
        await self._get(caller, IPROFILE, profile, "iam:AddRoleToInstanceProfile")

        async def fn(txn: Txn) -> None:
            p = await self._must(txn, IPROFILE, profile)
            r = await self._must(txn, ROLE, role)
            if p["roles"]:
                raise LimitExceededError(
                    f"Cannot exceed quota for InstanceSessionsPerInstanceProfile: "
                    f"{limits.ROLES_PER_INSTANCE_PROFILE}"
                )
            p["roles"].append(role.lower())
            r["profiles"].append(profile.lower())
            txn.put(entity_key(IPROFILE, profile), p)
            txn.put(entity_key(ROLE, role), r)

        await self._tx(caller.account_id, fn)

    async def remove_role_from_instance_profile(
        self, caller: Principal, profile: str, role: str
    ) -> None:
        """RemoveRoleFromInstanceProfile."""
        await self._get(caller, IPROFILE, profile, "iam:RemoveRoleFromInstanceProfile")

        async def fn(txn: Txn) -> None:
            p = await self._must(txn, IPROFILE, profile)
            r = await self._must(txn, ROLE, role)
            if role.lower() not in p["roles"]:
                raise NoSuchEntityError(
                    f"The role with name {role} cannot be found in instance profile {profile}."
                )
            p["roles"].remove(role.lower())
            r["profiles"] = [x for x in r["profiles"] if x != profile.lower()]
            txn.put(entity_key(IPROFILE, profile), p)
            txn.put(entity_key(ROLE, role), r)

        await self._tx(caller.account_id, fn)

    # -- managed policies ---------------------------------------------------------------------

    def _check_managed_document(self, document: str) -> None:
        if policy_size(document) > limits.MANAGED_POLICY_SIZE:
            raise LimitExceededError(
                f"Cannot exceed quota for PolicySize: {limits.MANAGED_POLICY_SIZE}"
            )
        parse_policy(document, PolicyKind.IDENTITY, managed=True)

    async def create_policy(
        self,
        caller: Principal,
        name: str,
        path: str,
        document: str,
        description: str | None,
        tags: Sequence[tuple[str, str]],
    ) -> PolicyView:
        """CreatePolicy (document validated and stored as version v1)."""
        arn = policy_arn(caller.account_id, path, name)
        await self._allow(caller, "iam:CreatePolicy", arn, request_tag_keys(tags))
        self._check_managed_document(document)
        check_tags(tags)
        created = now_text(self._clock)
        extra: Doc = {
            "description": description,
            "default": "v1",
            "next": 2,
            "updated": created,
            "versions": {"v1": {"doc": document, "created": created}},
            "attachments": {USER: [], GROUP: [], ROLE: []},
        }
        doc = await self._create(caller, POLICY, name, path, extra, tags=tags)
        return self._policy_view(doc)

    def _policy_view(self, doc: Doc) -> PolicyView:
        att = doc.get("attachments", {})
        return PolicyView(
            name=doc["name"],
            policy_id=doc["id"],
            arn=doc["arn"],
            path=doc["path"],
            default_version=doc["default"],
            attachment_count=sum(len(v) for v in att.values()),
            boundary_count=sum(len(v) for v in doc.get("boundaries", {}).values()),
            attachable=True,
            description=doc.get("description"),
            created=doc["created"],
            updated=str(doc.get("updated") or doc["created"]),
            tags=doc.get("tags", []),
            document=doc["versions"][doc["default"]]["doc"],
        )

    def _aws_view(self, policy: AwsManagedPolicy, attachments: Doc | None) -> PolicyView:
        att = (attachments or {}).get("attachments", {})
        bounds = (attachments or {}).get("boundaries", {})
        return PolicyView(
            name=policy.name,
            policy_id=policy.policy_id,
            arn=policy.arn,
            path=policy.path,
            default_version=policy.version_id,
            attachment_count=sum(len(v) for v in att.values()),
            boundary_count=sum(len(v) for v in bounds.values()),
            attachable=True,
            description=policy.description,
            created=iso8601(policy.created),
            updated=iso8601(policy.created),
            tags=[],
            document=policy.document,
        )

    async def _resolve_policy(self, caller: Principal, arn: str) -> PolicyView:
        aws = AWS_POLICIES.get(arn)
        if aws is not None:
            att = await read(self._store, caller.account_id, f"awspolicy/{aws.name}")
            return self._aws_view(aws, att)
        name = self._own_policy_name(caller, arn)
        doc = await read(self._store, caller.account_id, entity_key(POLICY, name))
        if doc is None or doc["arn"] != arn:
            raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        return self._policy_view(doc)

    @staticmethod
    def _own_policy_name(caller: Principal, arn: str) -> str:
        parts = split_policy_arn(arn)
        if parts is None:
            raise InvalidInputError(f"ARN {arn} is not valid.")
        account, _, name = parts
        if account != caller.account_id:
            raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        return name

    async def get_policy(self, caller: Principal, arn: str) -> PolicyView:
        """GetPolicy."""
        await self._allow(caller, "iam:GetPolicy", arn)
        return await self._resolve_policy(caller, arn)

    async def list_policies(
        self, caller: Principal, scope: str, only_attached: bool, path_prefix: str | None
    ) -> list[PolicyView]:
        """ListPolicies (Scope All|AWS|Local)."""
        await self._allow(caller, "iam:ListPolicies", policy_arn(caller.account_id, "/", ""))
        out: list[PolicyView] = []
        if scope in {"All", "AWS"}:
            atts = {d["name"]: d for d in await scan(self._store, caller.account_id, "awspolicy/")}
            out += [self._aws_view(p, atts.get(p.name)) for p in AWS_POLICIES.values()]
        if scope in {"All", "Local"}:
            out += [
                self._policy_view(d) for d in await scan(self._store, caller.account_id, "policy/")
            ]
        if only_attached:
            out = [p for p in out if p.attachment_count > 0]
        if path_prefix:
            out = [p for p in out if p.path.startswith(path_prefix)]
        return out

    async def delete_policy(self, caller: Principal, arn: str) -> None:
        """DeletePolicy: only when not attached (and only customer-managed ones)."""
        await self._allow(caller, "iam:DeletePolicy", arn)
        if arn in AWS_POLICIES:
            raise InvalidInputError(f"Cannot delete a policy that is managed by AWS: {arn}")
        name = self._own_policy_name(caller, arn)

        async def fn(txn: Txn) -> None:
            doc = await txn.get(entity_key(POLICY, name))
            if doc is None or doc["arn"] != arn:
                raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
            if any(doc["attachments"].values()) or any(doc.get("boundaries", {}).values()):
                raise DeleteConflictError("Cannot delete a policy attached to entities.")
            if len(doc["versions"]) > 1:
                raise DeleteConflictError("Cannot delete a policy with non-default versions.")
            txn.delete(entity_key(POLICY, name))
            await self._count(txn, POLICY, -1)

        await self._tx(caller.account_id, fn)

    async def _customer_policy(self, caller: Principal, txn: Txn, arn: str) -> tuple[str, Doc]:
        if arn in AWS_POLICIES:
            raise InvalidInputError(f"Cannot modify a policy that is managed by AWS: {arn}")
        name = self._own_policy_name(caller, arn)
        doc = await txn.get(entity_key(POLICY, name))
        if doc is None or doc["arn"] != arn:
            raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        return entity_key(POLICY, name), doc

    async def create_policy_version(
        self, caller: Principal, arn: str, document: str, set_default: bool
    ) -> Doc:
        """CreatePolicyVersion (at most ``VERSIONS_PER_POLICY`` stored versions)."""
        await self._allow(caller, "iam:CreatePolicyVersion", arn)
        self._check_managed_document(document)
        created = now_text(self._clock)

        async def fn(txn: Txn) -> Doc:
            key, doc = await self._customer_policy(caller, txn, arn)
            if len(doc["versions"]) >= limits.VERSIONS_PER_POLICY:
                raise LimitExceededError(
                    f"A managed policy can have up to {limits.VERSIONS_PER_POLICY} versions. "
                    "Before you create a new version, you must delete an existing version."
                )
            vid = f"v{doc['next']}"
            doc["next"] += 1
            doc["versions"][vid] = {"doc": document, "created": created}
            if set_default:
                doc["default"] = vid
                doc["updated"] = created
            txn.put(key, doc)
            return {"id": vid, "doc": document, "created": created, "default": set_default}

        return await self._tx(caller.account_id, fn)

    async def get_policy_version(self, caller: Principal, arn: str, version: str) -> Doc:
        """GetPolicyVersion."""
        await self._allow(caller, "iam:GetPolicyVersion", arn)
        versions = await self.list_policy_versions(caller, arn, authorize=False)
        for v in versions:
            if v["id"] == version:
                return v
        raise NoSuchEntityError(
            f"Policy {arn} version {version} does not exist or is not attachable."
        )

    async def list_policy_versions(
        self, caller: Principal, arn: str, *, authorize: bool = True
    ) -> list[Doc]:
        """ListPolicyVersions (newest first, as IAM lists them)."""
        if authorize:
            await self._allow(caller, "iam:ListPolicyVersions", arn)
        aws = AWS_POLICIES.get(arn)
        if aws is not None:
            return [
                {
                    "id": aws.version_id,
                    "doc": aws.document,
                    "created": iso8601(aws.created),
                    "default": True,
                }
            ]
        name = self._own_policy_name(caller, arn)
        doc = await read(self._store, caller.account_id, entity_key(POLICY, name))
        if doc is None or doc["arn"] != arn:
            raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
        out = [
            {"id": vid, "doc": v["doc"], "created": v["created"], "default": vid == doc["default"]}
            for vid, v in doc["versions"].items()
        ]
        out.sort(key=lambda v: int(str(v["id"])[1:]), reverse=True)
        return out

    async def delete_policy_version(self, caller: Principal, arn: str, version: str) -> None:
        """DeletePolicyVersion (never the default version)."""
        await self._allow(caller, "iam:DeletePolicyVersion", arn)

        async def fn(txn: Txn) -> None:
            key, doc = await self._customer_policy(caller, txn, arn)
            if version not in doc["versions"]:
                raise NoSuchEntityError(
                    f"Policy {arn} version {version} does not exist or is not attachable."
                )
            if version == doc["default"]:
                raise DeleteConflictError("Cannot delete the default version of a policy.")
            del doc["versions"][version]
            txn.put(key, doc)

        await self._tx(caller.account_id, fn)

    async def set_default_policy_version(self, caller: Principal, arn: str, version: str) -> None:
        """SetDefaultPolicyVersion."""
        await self._allow(caller, "iam:SetDefaultPolicyVersion", arn)

        async def fn(txn: Txn) -> None:
            key, doc = await self._customer_policy(caller, txn, arn)
            if version not in doc["versions"]:
                raise NoSuchEntityError(
                    f"Policy {arn} version {version} does not exist or is not attachable."
                )
            doc["default"] = version
            doc["updated"] = now_text(self._clock)
            txn.put(key, doc)

        await self._tx(caller.account_id, fn)

    async def _policy_attachments(self, txn: Txn, arn: str) -> tuple[str, Doc | None]:
        aws = AWS_POLICIES.get(arn)
        if aws is not None:
            key = f"awspolicy/{aws.name}"
            found: Doc = await txn.get(key) or {"name": aws.name, "attachments": {}}
            return key, found
        parts = split_policy_arn(arn)
        if parts is None:
            return "", None
        key = entity_key(POLICY, parts[2])
        doc = await txn.get(key)
        if doc is None or doc["arn"] != arn:
            return key, None
        return key, doc

    async def attach_policy(self, caller: Principal, kind: str, name: str, arn: str) -> None:
        """AttachUserPolicy / AttachGroupPolicy / AttachRolePolicy."""
        await self._get(
            caller, kind, name, f"iam:Attach{_ACTION_NOUN[kind]}Policy", {"iam:PolicyARN": arn}
        )
        if split_policy_arn(arn) is None:
            raise InvalidInputError(f"ARN {arn} is not valid.")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            pkey, pol = await self._policy_attachments(txn, arn)
            if pol is None:  # absent, or another account's policy
                raise NoSuchEntityError(f"Policy {arn} does not exist or is not attachable.")
            if arn in doc["attached"]:
                return
            if len(doc["attached"]) >= _ATTACHED_QUOTA[kind]:
                raise LimitExceededError(
                    f"Cannot exceed quota for PoliciesPer{_ACTION_NOUN[kind]}: "
                    f"{_ATTACHED_QUOTA[kind]}"
                )
            doc["attached"].append(arn)
            pol.setdefault("attachments", {}).setdefault(kind, []).append(name.lower())
            txn.put(entity_key(kind, name), doc)
            txn.put(pkey, pol)

        await self._tx(caller.account_id, fn)

    async def detach_policy(self, caller: Principal, kind: str, name: str, arn: str) -> None:
        """DetachUserPolicy / DetachGroupPolicy / DetachRolePolicy."""
        await self._get(
            caller, kind, name, f"iam:Detach{_ACTION_NOUN[kind]}Policy", {"iam:PolicyARN": arn}
        )

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            if arn not in doc["attached"]:
                raise NoSuchEntityError(f"Policy {arn} was not found.")
            doc["attached"].remove(arn)
            pkey, pol = await self._policy_attachments(txn, arn)
            if pol is not None:
                refs = pol.setdefault("attachments", {}).get(kind, [])
                pol["attachments"][kind] = [r for r in refs if r != name.lower()]
                txn.put(pkey, pol)
            txn.put(entity_key(kind, name), doc)

        await self._tx(caller.account_id, fn)

    async def list_attached(
        self, caller: Principal, kind: str, name: str, path_prefix: str | None
    ) -> list[tuple[str, str]]:
        """ListAttached{User,Group,Role}Policies: (policy name, ARN) pairs."""
        doc = await self._get(caller, kind, name, f"iam:ListAttached{_ACTION_NOUN[kind]}Policies")
        out = []
        for arn in doc["attached"]:
            parts = split_policy_arn(arn)
            if parts is None:  # pragma: no cover - validated on attach
                continue
            if path_prefix and not parts[1].startswith(path_prefix):
                continue
            out.append((parts[2], arn))
        return out

    async def list_entities_for_policy(
        self,
        caller: Principal,
        arn: str,
        entity_filter: str | None,
        usage: str | None,
        path_prefix: str | None,
    ) -> list[tuple[str, Doc]]:
        """ListEntitiesForPolicy: ``(kind, entity)`` for every user, group and role using it.

        ``usage`` is ``PermissionsPolicy`` (attached), ``PermissionsBoundary`` (boundary) or
        ``None`` (both).
        """
        await self._allow(caller, "iam:ListEntitiesForPolicy", arn)
        await self._resolve_policy(caller, arn)  # NoSuchEntity for unknown policies
        _, pol = await self._policy_attachments(Txn(self._store, caller.account_id), arn)
        sources: list[dict[str, list[str]]] = []
        if usage in (None, "PermissionsPolicy"):
            sources.append((pol or {}).get("attachments", {}))
        if usage in (None, "PermissionsBoundary"):
            sources.append((pol or {}).get("boundaries", {}))
        out: list[tuple[str, Doc]] = []
        for kind in (GROUP, USER, ROLE):
            if entity_filter and entity_filter.lower() != kind:
                continue
            names = sorted({n for src in sources for n in src.get(kind, [])})
            docs = await read_many(self._store, caller.account_id, [f"{kind}/{n}" for n in names])
            out += [
                (kind, d)
                for d in docs
                if d is not None and (not path_prefix or str(d["path"]).startswith(path_prefix))
            ]
        return out

    # -- inline policies ----------------------------------------------------------------------

    async def put_inline_policy(
        self, caller: Principal, kind: str, name: str, policy_name: str, document: str
    ) -> None:
        """Put{User,Group,Role}Policy (aggregate inline size quota per entity)."""
        await self._get(caller, kind, name, f"iam:Put{_ACTION_NOUN[kind]}Policy")
        parse_policy(document, PolicyKind.IDENTITY)

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            inline: dict[str, str] = doc["inline"]
            existing = next((k for k in inline if k.lower() == policy_name.lower()), None)
            if existing is not None:
                del inline[existing]
            inline[policy_name] = document
            total = sum(policy_size(d) for d in inline.values())
            if total > _INLINE_QUOTA[kind]:
                raise LimitExceededError(
                    f"Maximum policy size of {_INLINE_QUOTA[kind]} bytes exceeded for "
                    f"{_NOUN[kind]} {doc['name']}"
                )
            txn.put(entity_key(kind, name), doc)

        await self._tx(caller.account_id, fn)

    async def get_inline_policy(
        self, caller: Principal, kind: str, name: str, policy_name: str
    ) -> tuple[str, str]:
        """Get{User,Group,Role}Policy: (stored policy name, document)."""
        doc = await self._get(caller, kind, name, f"iam:Get{_ACTION_NOUN[kind]}Policy")
        for pname, text in doc["inline"].items():
            if pname.lower() == policy_name.lower():
                return pname, text
        raise NoSuchEntityError(
            f"The {_NOUN[kind]} policy with name {policy_name} cannot be found."
        )

    async def delete_inline_policy(
        self, caller: Principal, kind: str, name: str, policy_name: str
    ) -> None:
        """Delete{User,Group,Role}Policy."""
        await self._get(caller, kind, name, f"iam:Delete{_ACTION_NOUN[kind]}Policy")

        async def fn(txn: Txn) -> None:
            doc = await self._must(txn, kind, name)
            match = next((k for k in doc["inline"] if k.lower() == policy_name.lower()), None)
            if match is None:
                raise NoSuchEntityError(
                    f"The {_NOUN[kind]} policy with name {policy_name} cannot be found."
                )
            del doc["inline"][match]
            txn.put(entity_key(kind, name), doc)

        await self._tx(caller.account_id, fn)

    async def list_inline_policies(self, caller: Principal, kind: str, name: str) -> list[str]:
        """List{User,Group,Role}Policies: policy names."""
        doc = await self._get(caller, kind, name, f"iam:List{_ACTION_NOUN[kind]}Policies")
        return sorted(doc["inline"], key=str.lower)

    # -- access keys --------------------------------------------------------------------------

    async def _key_owner(
        self, caller: Principal, user: str | None, action: str
    ) -> tuple[str | None, str]:
        """Authorize ``action`` on the key owner; return (user name or None for root, ARN)."""
        if user is None:
            if caller.is_root:
                await self._allow(caller, action, caller.arn)
                return None, caller.arn
            user = caller.name
        doc = await self._get(caller, USER, user, action)
        return doc["name"], doc["arn"]

    async def create_access_key(self, caller: Principal, user: str | None) -> NewAccessKey:
        """CreateAccessKey (at most ``ACCESS_KEYS_PER_USER``; the secret is sealed at rest)."""
        owner, _ = await self._key_owner(caller, user, "iam:CreateAccessKey")
        secret = ids.new_secret_access_key(self._rng)
        created = now_text(self._clock)

        async def fn(txn: Txn) -> str:
            akid = ids.new_access_key_id("AKIA", caller.account_id, self._rng)
            if await txn.get(f"akey/{akid}") is not None:  # pragma: no cover - 2^-40 chance
                raise VersionConflict(f"akey/{akid}")
            if owner is None:
                acct = await txn.get("account")
                assert acct is not None
                keys: list[str] = acct["root_keys"]
                holder_key, holder = "account", acct
            else:
                holder = await self._must(txn, USER, owner)
                keys = holder["keys"]
                holder_key = entity_key(USER, owner)
            if len(keys) >= limits.ACCESS_KEYS_PER_USER:
                raise LimitExceededError(
                    f"Cannot exceed quota for AccessKeysPerUser: {limits.ACCESS_KEYS_PER_USER}"
                )
            keys.append(akid)
            txn.put(holder_key, holder)
            txn.put(
                f"akey/{akid}",
                self._key_record(akid, owner.lower() if owner else None, secret, created),
            )
            return akid

        akid = await self._tx(caller.account_id, fn)
        return NewAccessKey(owner, akid, secret, "Active", created)

    async def _owned_key(
        self, caller: Principal, user: str | None, akid: str, action: str
    ) -> tuple[str | None, str]:
        owner, resource = await self._key_owner(caller, user, action)
        rec = await read(self._store, caller.account_id, f"akey/{akid}")
        if rec is None or (rec["user"] or None) != (owner.lower() if owner else None):
            raise NoSuchEntityError(f"The Access Key with id {akid} cannot be found.")
        return owner, resource

    async def update_access_key(
        self, caller: Principal, user: str | None, akid: str, status: str
    ) -> None:
        """UpdateAccessKey: Active / Inactive (an inactive key authenticates nothing)."""
        await self._owned_key(caller, user, akid, "iam:UpdateAccessKey")

        async def fn(txn: Txn) -> None:
            rec = await txn.get(f"akey/{akid}")
            if rec is None:
                raise NoSuchEntityError(f"The Access Key with id {akid} cannot be found.")
            rec["status"] = status
            txn.put(f"akey/{akid}", rec)

        await self._tx(caller.account_id, fn)

    async def delete_access_key(self, caller: Principal, user: str | None, akid: str) -> None:
        """DeleteAccessKey."""
        owner, _ = await self._owned_key(caller, user, akid, "iam:DeleteAccessKey")

        async def fn(txn: Txn) -> None:
            if await txn.get(f"akey/{akid}") is None:
                raise NoSuchEntityError(f"The Access Key with id {akid} cannot be found.")
            if owner is None:
                holder_key = "account"
                holder = await txn.get(holder_key)
                assert holder is not None
                holder["root_keys"] = [k for k in holder["root_keys"] if k != akid]
            else:
                holder_key = entity_key(USER, owner)
                holder = await self._must(txn, USER, owner)
                holder["keys"] = [k for k in holder["keys"] if k != akid]
            txn.put(holder_key, holder)
            txn.delete(f"akey/{akid}")
            txn.delete(f"akused/{akid}")

        await self._tx(caller.account_id, fn)

    async def list_access_keys(self, caller: Principal, user: str | None) -> list[Doc]:
        """ListAccessKeys (never the secrets)."""
        owner, _ = await self._key_owner(caller, user, "iam:ListAccessKeys")
        if owner is None:
            acct = await read(self._store, caller.account_id, "account") or {"root_keys": []}
            keys = acct["root_keys"]
        else:
            keys = (await self._get(caller, USER, owner))["keys"]
        recs = await read_many(self._store, caller.account_id, [f"akey/{k}" for k in keys])
        return [
            {"user": owner, "id": r["id"], "status": r["status"], "created": r["created"]}
            for r in recs
            if r is not None
        ]

    async def get_access_key_last_used(self, caller: Principal, akid: str) -> Doc:
        """GetAccessKeyLastUsed: owner name and last use (time, service, region)."""
        rec = await read(self._store, caller.account_id, f"akey/{akid}")
        if rec is None:
            raise access_denied(caller, "iam:GetAccessKeyLastUsed", akid)
        owner = rec["user"]
        if owner is None:
            resource = root_arn(caller.account_id)
            owner_name = None
        else:
            doc = await self._get(caller, USER, owner)
            resource, owner_name = doc["arn"], doc["name"]
        await self._allow(caller, "iam:GetAccessKeyLastUsed", resource)
        used = await read(self._store, caller.account_id, f"akused/{akid}")
        return {"user": owner_name, "used": used}

    # -- account authorization details ----------------------------------------------------------

    async def account_authorization_details(self, caller: Principal) -> Doc:
        """GetAccountAuthorizationDetails: users, groups, roles and local policies."""
        await self._allow(caller, "iam:GetAccountAuthorizationDetails", "*")
        acct = caller.account_id
        users = await scan(self._store, acct, "user/")
        groups = await scan(self._store, acct, "group/")
        roles = await scan(self._store, acct, "role/")
        profiles = {p["name"].lower(): p for p in await scan(self._store, acct, "iprofile/")}
        group_names = {g["name"].lower(): g["name"] for g in groups}
        policies = [d for d in await scan(self._store, acct, "policy/")]
        aws_attached = await scan(self._store, acct, "awspolicy/")
        return {
            "users": users,
            "groups": groups,
            "roles": roles,
            "profiles": profiles,
            "group_names": group_names,
            "policies": [(self._policy_view(d), d) for d in policies],
            "aws_policies": [
                self._aws_view(AWS_POLICIES[policy_arn(AWS_MANAGED_ACCOUNT, "/", d["name"])], d)
                for d in aws_attached
                if any(d.get("attachments", {}).values())
            ],
        }


_ACTION_NOUN = {
    USER: "User",
    GROUP: "Group",
    ROLE: "Role",
    POLICY: "Policy",
    IPROFILE: "InstanceProfile",
}


def access_denied(caller: Principal, action: str, resource: str) -> AccessDeniedError:
    """Return the AccessDenied error IAM gives for ``action`` on ``resource``."""
    return AccessDeniedError(
        f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}"
    )
