"""API: the IAM actions of the query protocol (parse -> service call -> render).

AWS member names (``UserName``, ``PolicyArn``) appear only here. Every handler validates
its parameters with the model's constraints (spec/aws-wire.md Appendix A), calls one
``IamService`` method and returns the ``<{Action}Result>`` tree (``None`` for actions
without an output shape).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from broker.api.query import (
    Node,
    Params,
    encode_policy_document,
)
from broker.core import limits
from broker.core.model import Principal
from broker.errors import ValidationError
from broker.service.iam import GROUP, IPROFILE, ROLE, USER, IamService, PolicyView
from broker.service.txn import Doc

Handler = Callable[[IamService, Principal, Params], Awaitable[Node]]

NAME = re.compile(r"[\w+=,.@-]+", re.ASCII)
NAME_TEXT = r"[\w+=,.@-]+"
PATH = re.compile(r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)")
PATH_TEXT = r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)"
PATH_PREFIX = re.compile(r"\u002F[\u0021-\u007F]*")
PATH_PREFIX_TEXT = r"\u002F[\u0021-\u007F]*"
POLICY_PATH = re.compile(r"((/[A-Za-z0-9\.,\+@=_-]+)*)/")
POLICY_PATH_TEXT = r"((/[A-Za-z0-9\.,\+@=_-]+)*)/"
DOCUMENT = re.compile(r"[\u0009\u000A\u000D\u0020-\u00FF]+")
DOCUMENT_TEXT = r"[\u0009\u000A\u000D\u0020-\u00FF]+"
KEY_ID = re.compile(r"[\w]+", re.ASCII)
VERSION_ID = re.compile(r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?")
VERSION_ID_TEXT = r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?"
DESCRIPTION = re.compile(r"[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*")
DESCRIPTION_TEXT = r"[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*"
MARKER = re.compile(r"[\u0020-\u00FF]+")
MARKER_TEXT = r"[\u0020-\u00FF]+"

IAM_ACTIONS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for IAM action ``name``."""

    def register(fn: Handler) -> Handler:
        IAM_ACTIONS[name] = fn
        return fn

    return register


# -- parameter helpers -------------------------------------------------------------------


def _name(p: Params, member: str, max_len: int = 64, required: bool = True) -> str:
    v = p.string(
        member, required=required, min_len=1, max_len=max_len, pattern=NAME, pattern_text=NAME_TEXT
    )
    return v or ""


def _opt_name(p: Params, member: str, max_len: int = 64) -> str | None:
    return p.string(member, min_len=1, max_len=max_len, pattern=NAME, pattern_text=NAME_TEXT)


def _path(p: Params, member: str = "Path") -> str | None:
    return p.string(member, min_len=1, max_len=512, pattern=PATH, pattern_text=PATH_TEXT)


def _path_prefix(p: Params, member: str = "PathPrefix") -> str | None:
    return p.string(
        member, min_len=1, max_len=512, pattern=PATH_PREFIX, pattern_text=PATH_PREFIX_TEXT
    )


def _document(p: Params, member: str) -> str:
    v = p.req(
        member,
        min_len=1,
        max_len=limits.POLICY_DOCUMENT_MAX_LENGTH,
        pattern=DOCUMENT,
        pattern_text=DOCUMENT_TEXT,
    )
    return v


def _arn(p: Params, member: str) -> str:
    return p.req(member, min_len=20, max_len=2048)


def _tags(p: Params, member: str = "Tags") -> list[tuple[str, str]]:
    return p.tags(member, limits.TAGS_PER_ENTITY)


def _page_params(p: Params) -> tuple[str | None, int]:
    marker = p.string("Marker", min_len=1, max_len=320, pattern=MARKER, pattern_text=MARKER_TEXT)
    max_items = p.integer("MaxItems", min_value=1, max_value=limits.LIST_MAX_ITEMS)
    return marker, max_items or limits.LIST_DEFAULT_MAX_ITEMS


def _encode_marker(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def _decode_marker(marker: str) -> str:
    try:
        return base64.urlsafe_b64decode(marker.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise ValidationError("Invalid Marker.") from None


def paginate(
    items: Sequence[Any], key: Callable[[Any], str], marker: str | None, max_items: int
) -> tuple[list[Any], dict[str, Node]]:
    """Return one page of ``items`` (sorted by ``key``) and its IsTruncated/Marker members."""
    ordered = sorted(items, key=key)
    if marker is not None:
        after = _decode_marker(marker)
        ordered = [i for i in ordered if key(i) > after]
    page = ordered[:max_items]
    truncated = len(ordered) > max_items
    tail: dict[str, Node] = {"IsTruncated": truncated}
    if truncated:
        tail["Marker"] = _encode_marker(key(page[-1]))
    return page, tail


def _by_name(doc: Doc) -> str:
    return str(doc["name"]).lower()


# -- renderers ---------------------------------------------------------------------------


def _tags_node(tags: list[list[str]]) -> list[Node]:
    return [{"Key": k, "Value": v} for k, v in tags]


def _boundary_node(doc: Doc) -> dict[str, Node] | None:
    if not doc.get("boundary"):
        return None
    return {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": doc["boundary"],
    }


def user_node(doc: Doc, *, tags: bool = True) -> dict[str, Node]:
    """Render a ``User`` structure."""
    if doc.get("root"):
        return {"Path": "/", "UserId": doc["id"], "Arn": doc["arn"], "CreateDate": doc["created"]}
    node: dict[str, Node] = {
        "Path": doc["path"],
        "UserName": doc["name"],
        "UserId": doc["id"],
        "Arn": doc["arn"],
        "CreateDate": doc["created"],
    }
    if doc.get("password_last_used"):
        node["PasswordLastUsed"] = doc["password_last_used"]
    if tags:
        node["PermissionsBoundary"] = _boundary_node(doc)
        if doc.get("tags"):
            node["Tags"] = _tags_node(doc["tags"])
    return node


def group_node(doc: Doc) -> dict[str, Node]:
    """Render a ``Group`` structure."""
    return {
        "Path": doc["path"],
        "GroupName": doc["name"],
        "GroupId": doc["id"],
        "Arn": doc["arn"],
        "CreateDate": doc["created"],
    }


def role_node(doc: Doc, *, tags: bool = True) -> dict[str, Node]:
    """Render a ``Role`` structure (trust policy percent-encoded, as IAM does)."""
    node: dict[str, Node] = {
        "Path": doc["path"],
        "RoleName": doc["name"],
        "RoleId": doc["id"],
        "Arn": doc["arn"],
        "CreateDate": doc["created"],
        "AssumeRolePolicyDocument": encode_policy_document(doc["trust"]),
        "Description": doc.get("description"),
        "MaxSessionDuration": doc["max_session"],
    }
    if tags:
        node["PermissionsBoundary"] = _boundary_node(doc)
    if tags and doc.get("tags"):
        node["Tags"] = _tags_node(doc["tags"])
    used = doc.get("last_used")  # set by GetRole only
    node["RoleLastUsed"] = (
        {"LastUsedDate": used.get("time"), "Region": used.get("region")}
        if isinstance(used, dict)
        else {}
    )
    return node


def profile_node(doc: Doc, roles: list[Doc]) -> dict[str, Node]:
    """Render an ``InstanceProfile`` structure."""
    node: dict[str, Node] = {
        "Path": doc["path"],
        "InstanceProfileName": doc["name"],
        "InstanceProfileId": doc["id"],
        "Arn": doc["arn"],
        "CreateDate": doc["created"],
        "Roles": [role_node(r, tags=False) for r in roles],
    }
    if doc.get("tags"):
        node["Tags"] = _tags_node(doc["tags"])
    return node


def policy_node(view: PolicyView, *, tags: bool = True) -> dict[str, Node]:
    """Render a ``Policy`` structure."""
    node: dict[str, Node] = {
        "PolicyName": view.name,
        "PolicyId": view.policy_id,
        "Arn": view.arn,
        "Path": view.path,
        "DefaultVersionId": view.default_version,
        "AttachmentCount": view.attachment_count,
        "PermissionsBoundaryUsageCount": view.boundary_count,
        "IsAttachable": view.attachable,
        "Description": view.description,
        "CreateDate": view.created,
        "UpdateDate": view.updated,
    }
    if tags and view.tags:
        node["Tags"] = _tags_node(view.tags)
    return node


def version_node(v: Doc, *, document: bool = True) -> dict[str, Node]:
    """Render a ``PolicyVersion`` structure."""
    node: dict[str, Node] = {}
    if document:
        node["Document"] = encode_policy_document(v["doc"])
    node.update(
        {"VersionId": v["id"], "IsDefaultVersion": bool(v["default"]), "CreateDate": v["created"]}
    )
    return node


# -- users -------------------------------------------------------------------------------


@action("CreateUser")
async def create_user(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "UserName")
    path = _path(p) or "/"
    tags = _tags(p)
    boundary = p.string("PermissionsBoundary", min_len=20, max_len=2048)
    p.check()
    doc = await svc.create_user(caller, name, path, tags, boundary)
    return {"User": user_node(doc)}


@action("GetUser")
async def get_user(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _opt_name(p, "UserName", 128)
    p.check()
    return {"User": user_node(await svc.get_user(caller, name))}


@action("ListUsers")
async def list_users(svc: IamService, caller: Principal, p: Params) -> Node:
    prefix = _path_prefix(p)
    marker, max_items = _page_params(p)
    p.check()
    page, tail = paginate(await svc.list_users(caller, prefix), _by_name, marker, max_items)
    return {"Users": [user_node(d, tags=False) for d in page], **tail}


@action("UpdateUser")
async def update_user(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "UserName", 128)
    new_name = _opt_name(p, "NewUserName")
    new_path = _path(p, "NewPath")
    p.check()
    await svc.update_user(caller, name, new_name, new_path)
    return None


@action("DeleteUser")
async def delete_user(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "UserName", 128)
    p.check()
    await svc.delete_user(caller, name)
    return None


def _tag_actions(noun: str, kind: str, member: str, max_len: int) -> None:
    async def tag(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        if p.raw("Tags") is None and p.struct_list("Tags", ("Key", "Value")) is None:
            p.fail("Tags", None, "Member must not be null")
        tags = _tags(p)
        p.check()
        await svc.tag(caller, kind, name, tags)
        return None

    async def untag(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        keys = p.members("TagKeys")
        if keys is None:
            p.fail("TagKeys", None, "Member must not be null")
        p.check()
        await svc.untag(caller, kind, name, keys or [])
        return None

    async def list_tags(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        marker, max_items = _page_params(p)
        p.check()
        tags = await svc.list_tags(caller, kind, name)
        page, tail = paginate(tags, lambda t: str(t[0]).lower(), marker, max_items)
        return {"Tags": _tags_node(page), **tail}

    action(f"Tag{noun}")(tag)
    action(f"Untag{noun}")(untag)
    action(f"List{noun}Tags")(list_tags)


_tag_actions("User", USER, "UserName", 128)
_tag_actions("Role", ROLE, "RoleName", 64)
_tag_actions("InstanceProfile", IPROFILE, "InstanceProfileName", 128)

# -- groups ------------------------------------------------------------------------------


@action("CreateGroup")
async def create_group(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "GroupName", 128)
    path = _path(p) or "/"
    p.check()
    return {"Group": group_node(await svc.create_group(caller, name, path))}


@action("GetGroup")
async def get_group(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "GroupName", 128)
    marker, max_items = _page_params(p)
    p.check()
    group, users = await svc.get_group(caller, name)
    page, tail = paginate(users, _by_name, marker, max_items)
    return {"Group": group_node(group), "Users": [user_node(u, tags=False) for u in page], **tail}


@action("ListGroups")
async def list_groups(svc: IamService, caller: Principal, p: Params) -> Node:
    prefix = _path_prefix(p)
    marker, max_items = _page_params(p)
    p.check()
    page, tail = paginate(await svc.list_groups(caller, prefix), _by_name, marker, max_items)
    return {"Groups": [group_node(d) for d in page], **tail}


@action("UpdateGroup")
async def update_group(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "GroupName", 128)
    new_name = _opt_name(p, "NewGroupName", 128)
    new_path = _path(p, "NewPath")
    p.check()
    await svc.update_group(caller, name, new_name, new_path)
    return None


@action("DeleteGroup")
async def delete_group(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "GroupName", 128)
    p.check()
    await svc.delete_group(caller, name)
    return None


@action("AddUserToGroup")
async def add_user_to_group(svc: IamService, caller: Principal, p: Params) -> Node:
    group = _name(p, "GroupName", 128)
    user = _name(p, "UserName", 64)
    p.check()
    await svc.add_user_to_group(caller, group, user)
    return None


@action("RemoveUserFromGroup")
async def remove_user_from_group(svc: IamService, caller: Principal, p: Params) -> Node:
    group = _name(p, "GroupName", 128)
    user = _name(p, "UserName", 128)
    p.check()
    await svc.remove_user_from_group(caller, group, user)
    return None


@action("ListGroupsForUser")
async def list_groups_for_user(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _name(p, "UserName", 128)
    marker, max_items = _page_params(p)
    p.check()
    page, tail = paginate(await svc.list_groups_for_user(caller, user), _by_name, marker, max_items)
    return {"Groups": [group_node(d) for d in page], **tail}


# -- roles -------------------------------------------------------------------------------


def _max_session(p: Params) -> int | None:
    return p.integer(
        "MaxSessionDuration",
        min_value=limits.ROLE_MAX_SESSION_MIN,
        max_value=limits.ROLE_MAX_SESSION_MAX,
    )


def _description(p: Params) -> str | None:
    return p.string("Description", max_len=1000, pattern=DESCRIPTION, pattern_text=DESCRIPTION_TEXT)


@action("CreateRole")
async def create_role(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    path = _path(p) or "/"
    trust = _document(p, "AssumeRolePolicyDocument")
    description = _description(p)
    max_session = _max_session(p) or limits.ROLE_MAX_SESSION_MIN
    tags = _tags(p)
    boundary = p.string("PermissionsBoundary", min_len=20, max_len=2048)
    p.check()
    doc = await svc.create_role(caller, name, path, trust, description, max_session, tags, boundary)
    return {"Role": role_node(doc)}


@action("GetRole")
async def get_role(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    p.check()
    return {"Role": role_node(await svc.get_role(caller, name))}


@action("ListRoles")
async def list_roles(svc: IamService, caller: Principal, p: Params) -> Node:
    prefix = _path_prefix(p)
    marker, max_items = _page_params(p)
    p.check()
    page, tail = paginate(await svc.list_roles(caller, prefix), _by_name, marker, max_items)
    return {"Roles": [role_node(d, tags=False) for d in page], **tail}


@action("UpdateRole")
async def update_role(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    description = _description(p)
    max_session = _max_session(p)
    p.check()
    await svc.update_role(caller, name, description=description, max_session=max_session)
    return {}


@action("UpdateRoleDescription")
async def update_role_description(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    description = p.string(
        "Description",
        required=True,
        max_len=1000,
        pattern=DESCRIPTION,
        pattern_text=DESCRIPTION_TEXT,
    )
    p.check()
    doc = await svc.update_role(
        caller, name, description=description or "", action="iam:UpdateRoleDescription"
    )
    return {"Role": role_node(doc)}


@action("UpdateAssumeRolePolicy")
async def update_assume_role_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    document = _document(p, "PolicyDocument")
    p.check()
    await svc.update_role(caller, name, trust=document, action="iam:UpdateAssumeRolePolicy")
    return None


@action("DeleteRole")
async def delete_role(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "RoleName", 64)
    p.check()
    await svc.delete_role(caller, name)
    return None


# -- instance profiles -------------------------------------------------------------------


@action("CreateInstanceProfile")
async def create_instance_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "InstanceProfileName", 128)
    path = _path(p) or "/"
    tags = _tags(p)
    p.check()
    doc = await svc.create_instance_profile(caller, name, path, tags)
    return {"InstanceProfile": profile_node(doc, [])}


@action("GetInstanceProfile")
async def get_instance_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "InstanceProfileName", 128)
    p.check()
    doc, roles = await svc.get_instance_profile(caller, name)
    return {"InstanceProfile": profile_node(doc, roles)}


@action("ListInstanceProfiles")
async def list_instance_profiles(svc: IamService, caller: Principal, p: Params) -> Node:
    prefix = _path_prefix(p)
    marker, max_items = _page_params(p)
    p.check()
    items = await svc.list_instance_profiles(caller, prefix)
    page, tail = paginate(items, lambda i: _by_name(i[0]), marker, max_items)
    return {"InstanceProfiles": [profile_node(d, r) for d, r in page], **tail}


@action("ListInstanceProfilesForRole")
async def list_instance_profiles_for_role(svc: IamService, caller: Principal, p: Params) -> Node:
    role = _name(p, "RoleName", 64)
    marker, max_items = _page_params(p)
    p.check()
    items = await svc.list_instance_profiles_for_role(caller, role)
    page, tail = paginate(items, lambda i: _by_name(i[0]), marker, max_items)
    return {"InstanceProfiles": [profile_node(d, r) for d, r in page], **tail}


@action("DeleteInstanceProfile")
async def delete_instance_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "InstanceProfileName", 128)
    p.check()
    await svc.delete_instance_profile(caller, name)
    return None


@action("AddRoleToInstanceProfile")
async def add_role_to_instance_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    profile = _name(p, "InstanceProfileName", 128)
    role = _name(p, "RoleName", 64)
    p.check()
    await svc.add_role_to_instance_profile(caller, profile, role)
    return None


@action("RemoveRoleFromInstanceProfile")
async def remove_role_from_instance_profile(svc: IamService, caller: Principal, p: Params) -> Node:
    profile = _name(p, "InstanceProfileName", 128)
    role = _name(p, "RoleName", 64)
    p.check()
    await svc.remove_role_from_instance_profile(caller, profile, role)
    return None


# -- managed policies --------------------------------------------------------------------


@action("CreatePolicy")
async def create_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    name = _name(p, "PolicyName", 128)
    path = (
        p.string("Path", min_len=1, max_len=512, pattern=POLICY_PATH, pattern_text=POLICY_PATH_TEXT)
        or "/"
    )
    document = _document(p, "PolicyDocument")
    description = p.string("Description", max_len=1000)
    tags = _tags(p)
    p.check()
    view = await svc.create_policy(caller, name, path, document, description, tags)
    return {"Policy": policy_node(view)}


@action("GetPolicy")
async def get_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    p.check()
    return {"Policy": policy_node(await svc.get_policy(caller, arn))}


@action("ListPolicies")
async def list_policies(svc: IamService, caller: Principal, p: Params) -> Node:
    scope = p.string("Scope", enum=("All", "AWS", "Local")) or "All"
    only_attached = p.boolean("OnlyAttached") or False
    prefix = p.string(
        "PathPrefix", min_len=1, max_len=512, pattern=POLICY_PATH, pattern_text=POLICY_PATH_TEXT
    )
    p.string("PolicyUsageFilter", enum=("PermissionsPolicy", "PermissionsBoundary"))
    marker, max_items = _page_params(p)
    p.check()
    views = await svc.list_policies(caller, scope, only_attached, prefix)
    page, tail = paginate(views, lambda v: v.arn, marker, max_items)
    return {"Policies": [policy_node(v, tags=False) for v in page], **tail}


@action("DeletePolicy")
async def delete_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    p.check()
    await svc.delete_policy(caller, arn)
    return None


@action("CreatePolicyVersion")
async def create_policy_version(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    document = _document(p, "PolicyDocument")
    set_default = p.boolean("SetAsDefault") or False
    p.check()
    version = await svc.create_policy_version(caller, arn, document, set_default)
    return {"PolicyVersion": version_node(version, document=False)}


def _version_id(p: Params) -> str:
    return p.req("VersionId", pattern=VERSION_ID, pattern_text=VERSION_ID_TEXT)


@action("GetPolicyVersion")
async def get_policy_version(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    vid = _version_id(p)
    p.check()
    return {"PolicyVersion": version_node(await svc.get_policy_version(caller, arn, vid))}


@action("ListPolicyVersions")
async def list_policy_versions(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    marker, max_items = _page_params(p)
    p.check()
    versions = await svc.list_policy_versions(caller, arn)
    # Newest first: sort key is the zero-padded negative version number.
    page, tail = paginate(
        versions, lambda v: f"{10**9 - int(str(v['id'])[1:]):010d}", marker, max_items
    )
    return {"Versions": [version_node(v, document=False) for v in page], **tail}


@action("DeletePolicyVersion")
async def delete_policy_version(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    vid = _version_id(p)
    p.check()
    await svc.delete_policy_version(caller, arn, vid)
    return None


@action("SetDefaultPolicyVersion")
async def set_default_policy_version(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    vid = _version_id(p)
    p.check()
    await svc.set_default_policy_version(caller, arn, vid)
    return None


@action("ListEntitiesForPolicy")
async def list_entities_for_policy(svc: IamService, caller: Principal, p: Params) -> Node:
    arn = _arn(p, "PolicyArn")
    entity_filter = p.string(
        "EntityFilter", enum=("User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy")
    )
    prefix = p.string(
        "PathPrefix", min_len=1, max_len=512, pattern=PATH_PREFIX, pattern_text=PATH_PREFIX_TEXT
    )
    usage = p.string("PolicyUsageFilter", enum=("PermissionsPolicy", "PermissionsBoundary"))
    marker, max_items = _page_params(p)
    p.check()
    found = await svc.list_entities_for_policy(caller, arn, entity_filter, usage, prefix)
    page, tail = paginate(found, lambda i: f"{i[0]}/{_by_name(i[1])}", marker, max_items)
    members = {GROUP: "Group", USER: "User", ROLE: "Role"}
    out: dict[str, Node] = {}
    for kind, noun in members.items():
        out[f"Policy{noun}s"] = [
            {f"{noun}Name": d["name"], f"{noun}Id": d["id"]} for k, d in page if k == kind
        ]
    return {**out, **tail}


def _attachment_actions(noun: str, kind: str, member: str, max_len: int) -> None:
    async def attach(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        arn = _arn(p, "PolicyArn")
        p.check()
        await svc.attach_policy(caller, kind, name, arn)
        return None

    async def detach(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        arn = _arn(p, "PolicyArn")
        p.check()
        await svc.detach_policy(caller, kind, name, arn)
        return None

    async def list_attached(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        prefix = p.string(
            "PathPrefix", min_len=1, max_len=512, pattern=POLICY_PATH, pattern_text=POLICY_PATH_TEXT
        )
        marker, max_items = _page_params(p)
        p.check()
        items = await svc.list_attached(caller, kind, name, prefix)
        page, tail = paginate(items, lambda i: i[1], marker, max_items)
        return {"AttachedPolicies": [{"PolicyName": n, "PolicyArn": a} for n, a in page], **tail}

    async def put_inline(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        policy_name = _name(p, "PolicyName", 128)
        document = _document(p, "PolicyDocument")
        p.check()
        await svc.put_inline_policy(caller, kind, name, policy_name, document)
        return None

    async def get_inline(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        policy_name = _name(p, "PolicyName", 128)
        p.check()
        stored, document = await svc.get_inline_policy(caller, kind, name, policy_name)
        return {
            member: name,
            "PolicyName": stored,
            "PolicyDocument": encode_policy_document(document),
        }

    async def delete_inline(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        policy_name = _name(p, "PolicyName", 128)
        p.check()
        await svc.delete_inline_policy(caller, kind, name, policy_name)
        return None

    async def list_inline(svc: IamService, caller: Principal, p: Params) -> Node:
        name = _name(p, member, max_len)
        marker, max_items = _page_params(p)
        p.check()
        names = await svc.list_inline_policies(caller, kind, name)
        page, tail = paginate(names, str.lower, marker, max_items)
        return {"PolicyNames": page, **tail}

    if kind in (USER, ROLE):

        async def put_boundary(svc: IamService, caller: Principal, p: Params) -> Node:
            name = _name(p, member, max_len)
            arn = _arn(p, "PermissionsBoundary")
            p.check()
            await svc.put_permissions_boundary(caller, kind, name, arn)
            return None

        async def delete_boundary(svc: IamService, caller: Principal, p: Params) -> Node:
            name = _name(p, member, max_len)
            p.check()
            await svc.delete_permissions_boundary(caller, kind, name)
            return None

        action(f"Put{noun}PermissionsBoundary")(put_boundary)
        action(f"Delete{noun}PermissionsBoundary")(delete_boundary)

    action(f"Attach{noun}Policy")(attach)
    action(f"Detach{noun}Policy")(detach)
    action(f"ListAttached{noun}Policies")(list_attached)
    action(f"Put{noun}Policy")(put_inline)
    action(f"Get{noun}Policy")(get_inline)
    action(f"Delete{noun}Policy")(delete_inline)
    action(f"List{noun}Policies")(list_inline)


_attachment_actions("User", USER, "UserName", 128)
_attachment_actions("Group", GROUP, "GroupName", 128)
_attachment_actions("Role", ROLE, "RoleName", 64)

# -- access keys -------------------------------------------------------------------------


def _key_id(p: Params) -> str:
    return p.req("AccessKeyId", min_len=16, max_len=128, pattern=KEY_ID, pattern_text=r"[\w]+")


@action("CreateAccessKey")
async def create_access_key(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _opt_name(p, "UserName", 128)
    p.check()
    key = await svc.create_access_key(caller, user)
    node: dict[str, Node] = {}
    if key.user_name is not None:
        node["UserName"] = key.user_name
    node.update(
        {
            "AccessKeyId": key.access_key_id,
            "Status": key.status,
            "SecretAccessKey": key.secret_access_key,
            "CreateDate": key.created,
        }
    )
    return {"AccessKey": node}


@action("UpdateAccessKey")
async def update_access_key(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _opt_name(p, "UserName", 128)
    akid = _key_id(p)
    status = p.req("Status", enum=("Active", "Inactive"))
    p.check()
    await svc.update_access_key(caller, user, akid, status)
    return None


@action("DeleteAccessKey")
async def delete_access_key(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _opt_name(p, "UserName", 128)
    akid = _key_id(p)
    p.check()
    await svc.delete_access_key(caller, user, akid)
    return None


@action("ListAccessKeys")
async def list_access_keys(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _opt_name(p, "UserName", 128)
    marker, max_items = _page_params(p)
    p.check()
    keys = await svc.list_access_keys(caller, user)
    page, tail = paginate(keys, lambda k: str(k["id"]), marker, max_items)
    members: list[Node] = []
    for k in page:
        m: dict[str, Node] = {}
        if k["user"] is not None:
            m["UserName"] = k["user"]
        m.update({"AccessKeyId": k["id"], "Status": k["status"], "CreateDate": k["created"]})
        members.append(m)
    return {"AccessKeyMetadata": members, **tail}


@action("GetAccessKeyLastUsed")
async def get_access_key_last_used(svc: IamService, caller: Principal, p: Params) -> Node:
    akid = _key_id(p)
    p.check()
    out = await svc.get_access_key_last_used(caller, akid)
    used = out["used"]
    last: dict[str, Node] = (
        {"LastUsedDate": used["time"], "ServiceName": used["service"], "Region": used["region"]}
        if used
        else {"ServiceName": "N/A", "Region": "N/A"}
    )
    node: dict[str, Node] = {}
    if out["user"] is not None:
        node["UserName"] = out["user"]
    node["AccessKeyLastUsed"] = last
    return node


# -- account -----------------------------------------------------------------------------


@action("GetAccountAuthorizationDetails")
async def get_account_authorization_details(svc: IamService, caller: Principal, p: Params) -> Node:
    filters = p.members("Filter") or []
    allowed = ("User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy")
    for i, f in enumerate(filters, start=1):
        p.string(f"Filter.member.{i}", enum=allowed, value=f)
    marker, max_items = _page_params(p)
    p.check()
    want = set(filters) or set(allowed)
    d = await svc.account_authorization_details(caller)
    names = d["group_names"]

    def inline(doc: Doc) -> list[Node]:
        return [
            {"PolicyName": n, "PolicyDocument": encode_policy_document(t)}
            for n, t in sorted(doc["inline"].items())
        ]

    def attached(doc: Doc) -> list[Node]:
        return [{"PolicyName": a.rsplit("/", 1)[1], "PolicyArn": a} for a in doc["attached"]]

    users = (
        [
            {
                **user_node(u, tags=False),
                "UserPolicyList": inline(u),
                "GroupList": [names.get(g, g) for g in u["groups"]],
                "AttachedManagedPolicies": attached(u),
                "PermissionsBoundary": _boundary_node(u),
                "Tags": _tags_node(u.get("tags", [])),
            }
            for u in d["users"]
        ]
        if "User" in want
        else []
    )
    groups = (
        [
            {**group_node(g), "GroupPolicyList": inline(g), "AttachedManagedPolicies": attached(g)}
            for g in d["groups"]
        ]
        if "Group" in want
        else []
    )
    roles = (
        [
            {
                **role_node(r, tags=False),
                "InstanceProfileList": [
                    profile_node(d["profiles"][x], [r]) for x in r["profiles"] if x in d["profiles"]
                ],
                "RolePolicyList": inline(r),
                "AttachedManagedPolicies": attached(r),
                "PermissionsBoundary": _boundary_node(r),
                "Tags": _tags_node(r.get("tags", [])),
            }
            for r in d["roles"]
        ]
        if "Role" in want
        else []
    )
    policies: list[Node] = []
    if "LocalManagedPolicy" in want:
        for view, doc in d["policies"]:
            versions = [
                {
                    "Document": encode_policy_document(v["doc"]),
                    "VersionId": vid,
                    "IsDefaultVersion": vid == doc["default"],
                    "CreateDate": v["created"],
                }
                for vid, v in doc["versions"].items()
            ]
            node = policy_node(view, tags=False)
            node["PolicyVersionList"] = versions
            policies.append(node)
    if "AWSManagedPolicy" in want:
        for view in d["aws_policies"]:
            node = policy_node(view, tags=False)
            node["PolicyVersionList"] = [
                {
                    "Document": encode_policy_document(view.document),
                    "VersionId": view.default_version,
                    "IsDefaultVersion": True,
                    "CreateDate": view.created,
                }
            ]
            policies.append(node)
    # One ordered listing across the four result lists, paged as a whole (as IAM does).
    lists = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")
    name_members = ("UserName", "GroupName", "RoleName", "Arn")
    entries: list[tuple[str, int, Node]] = []
    buckets: tuple[list[dict[str, Node]], ...] = (users, groups, roles, policies)  # type: ignore[assignment]
    for i, nodes in enumerate(buckets):
        for node in nodes:
            entries.append((f"{i}/{str(node[name_members[i]]).lower()}", i, node))
    page, tail = paginate(entries, lambda e: e[0], marker, max_items)
    out: dict[str, Node] = {
        name: [n for _, i, n in page if i == idx] for idx, name in enumerate(lists)
    }
    return {**out, **tail}
