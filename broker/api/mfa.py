"""API: the IAM virtual MFA device actions of the query protocol.

``CreateVirtualMFADevice``, ``EnableMFADevice``, ``DeactivateMFADevice``,
``DeleteVirtualMFADevice``, ``ListMFADevices``, ``ListVirtualMFADevices``, ``ResyncMFADevice``
and ``GetMFADevice`` register into ``broker.api.iam.IAM_ACTIONS`` when this module is imported.
Each handler checks the model's member constraints (spec/aws-wire.md Appendix A, "MFA devices"),
calls :class:`broker.service.mfa.MfaService` and renders the model's shapes.

``CreateVirtualMFADevice`` is the one response that carries a device's seed: as
``Base32StringSeed`` (the base32 text, sent base64-encoded like every blob) and as
``QRCodePNG`` (a PNG QR code of the ``otpauth://`` provisioning URI, base64-encoded).

The MFA service is built once per ``IamService`` from that service's store, keyring, clock,
authorizer and generations, so it authorizes with the same cached policies as every other IAM
action without a change to the listener's wiring.
"""

from __future__ import annotations

import base64
import io
import re
import weakref

import segno

from broker.api.iam import (
    NAME,
    NAME_TEXT,
    PATH,
    PATH_TEXT,
    _page_params,
    _tags,
    _tags_node,
    action,
    paginate,
    user_node,
)
from broker.api.query import Node, Params
from broker.core.model import Principal
from broker.core.totp import DIGITS, otpauth_uri, seed_base32
from broker.service.iam import IamService
from broker.service.mfa import ASSIGNMENT_STATUSES, MfaDevice, MfaService, VirtualDevice

SERIAL = re.compile(r"[\w+=/:,.@-]+", re.ASCII)
SERIAL_TEXT = r"[\w+=/:,.@-]+"
CODE = re.compile(r"[\d]+", re.ASCII)
CODE_TEXT = r"[\d]+"

QR_ISSUER = "broker"
"""Issuer shown by authenticator apps for devices provisioned from the QR code."""

QR_SCALE = 4
"""Pixels per QR module in ``QRCodePNG``."""

_SERVICES: weakref.WeakKeyDictionary[IamService, MfaService] = weakref.WeakKeyDictionary()


def mfa_for(svc: IamService) -> MfaService:
    """Return the MFA service sharing ``svc``'s store, keyring, clock and caches."""
    found = _SERVICES.get(svc)
    if found is None:
        # The IAM service owns the store, keyring and authorizer this node uses for IAM actions.
        found = MfaService(svc._store, svc._keyring, svc._clock, svc._authz, svc._generations)
        _SERVICES[svc] = found
    return found


def render_qr_png(text: str) -> bytes:
    """Return a PNG image of a QR code encoding ``text``."""
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=QR_SCALE)
    return out.getvalue()


def _blob(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- parameters ---------------------------------------------------------------------------------


def _serial(p: Params) -> str:
    return p.req("SerialNumber", min_len=9, max_len=256, pattern=SERIAL, pattern_text=SERIAL_TEXT)


def _user(p: Params, *, required: bool, max_len: int = 128) -> str | None:
    return p.string(
        "UserName",
        required=required,
        min_len=1,
        max_len=max_len,
        pattern=NAME,
        pattern_text=NAME_TEXT,
    )


def _code(p: Params, member: str) -> str:
    return p.req(member, min_len=DIGITS, max_len=DIGITS, pattern=CODE, pattern_text=CODE_TEXT)


# -- renderers ----------------------------------------------------------------------------------


def mfa_device_node(device: MfaDevice) -> dict[str, Node]:
    """Render an ``MFADevice`` structure."""
    return {
        "UserName": device.user_name,
        "SerialNumber": device.serial,
        "EnableDate": device.enabled,
    }


def virtual_device_node(device: VirtualDevice) -> dict[str, Node]:
    """Render a ``VirtualMFADevice`` structure as listings show it (never the seed)."""
    node: dict[str, Node] = {"SerialNumber": device.serial}
    if device.user is not None:
        node["User"] = user_node(device.user, tags=False)
        node["EnableDate"] = device.enabled
    if device.tags:
        node["Tags"] = _tags_node(device.tags)
    return node


# -- actions ------------------------------------------------------------------------------------


@action("CreateVirtualMFADevice")
async def create_virtual_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    path = p.string("Path", min_len=1, max_len=512, pattern=PATH, pattern_text=PATH_TEXT) or "/"
    name = p.req("VirtualMFADeviceName", min_len=1, pattern=NAME, pattern_text=NAME_TEXT)
    tags = _tags(p)
    p.check()
    device, seed = await mfa_for(svc).create_virtual(caller, name, path, tags)
    uri = otpauth_uri(seed, account=f"{device.name}@{caller.account_id}", issuer=QR_ISSUER)
    node: dict[str, Node] = {
        "SerialNumber": device.serial,
        "Base32StringSeed": _blob(seed_base32(seed).encode("ascii")),
        "QRCodePNG": _blob(render_qr_png(uri)),
    }
    if device.tags:
        node["Tags"] = _tags_node(device.tags)
    return {"VirtualMFADevice": node}


@action("EnableMFADevice")
async def enable_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=True)
    serial = _serial(p)
    code1 = _code(p, "AuthenticationCode1")
    code2 = _code(p, "AuthenticationCode2")
    p.check()
    await mfa_for(svc).enable(caller, user, serial, code1, code2)
    return None


@action("ResyncMFADevice")
async def resync_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=True)
    serial = _serial(p)
    code1 = _code(p, "AuthenticationCode1")
    code2 = _code(p, "AuthenticationCode2")
    p.check()
    await mfa_for(svc).resync(caller, user, serial, code1, code2)
    return None


@action("DeactivateMFADevice")
async def deactivate_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=False)
    serial = _serial(p)
    p.check()
    await mfa_for(svc).deactivate(caller, user, serial)
    return None


@action("DeleteVirtualMFADevice")
async def delete_virtual_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    serial = _serial(p)
    p.check()
    await mfa_for(svc).delete_virtual(caller, serial)
    return None


@action("ListMFADevices")
async def list_mfa_devices(svc: IamService, caller: Principal, p: Params) -> Node:
    user = _user(p, required=False)
    marker, max_items = _page_params(p)
    p.check()
    devices = await mfa_for(svc).list_devices(caller, user)
    page, tail = paginate(devices, lambda d: d.serial, marker, max_items)
    return {"MFADevices": [mfa_device_node(d) for d in page], **tail}


@action("ListVirtualMFADevices")
async def list_virtual_mfa_devices(svc: IamService, caller: Principal, p: Params) -> Node:
    status = p.string("AssignmentStatus", enum=ASSIGNMENT_STATUSES) or "Any"
    marker, max_items = _page_params(p)
    p.check()
    devices = await mfa_for(svc).list_virtual(caller, status)
    page, tail = paginate(devices, lambda d: d.serial, marker, max_items)
    return {"VirtualMFADevices": [virtual_device_node(d) for d in page], **tail}


@action("GetMFADevice")
async def get_mfa_device(svc: IamService, caller: Principal, p: Params) -> Node:
    serial = _serial(p)
    user = _user(p, required=False, max_len=64)
    p.check()
    device = await mfa_for(svc).get_device(caller, serial, user)
    return mfa_device_node(device)
