"""Service: virtual MFA devices (the IAM MFA actions) and MFA code checks for STS.

A virtual MFA device is a TOTP seed (``broker.core.totp``) with a serial number, the ARN
``arn:aws:iam::ACCT:mfa/<path><name>``. It is created unassigned; ``EnableMFADevice`` assigns
it to one user (or to the root user) once two consecutive codes prove that the authenticator
holds the seed. STS calls :meth:`MfaService.verify` for ``SerialNumber`` + ``TokenCode``.

Records (in the account's namespace, next to the IAM records of ``broker.service.iam``):

==========================  =============================================================
key                         record
==========================  =============================================================
``mfa/<name lower>``        device: name, path, serial, creation time, tags, the seed sealed
                            with the serial as associated data, owner (``None`` while
                            unassigned), enable time and clock drift in steps
``mfaused/<name lower>``    last time step a code of the device was accepted for (a code is
                            never accepted twice); written without bumping the generation
``user/<name>`` ``mfa``     serial of the user's enabled device (``DeleteUser`` refuses while set)
``account`` ``mfa``         serial of the root user's enabled device
==========================  =============================================================

Device names are unique per account, case-insensitively (whatever the path).

The root user's device. The model requires ``UserName`` for ``EnableMFADevice`` and
``ResyncMFADevice``, and AWS offers the root user's MFA only in its console. Here the root user
manages its own device through the API: when the *caller is the root user* and ``UserName`` is
omitted or equals the account id, the target is the root user itself (an IAM user whose name
happens to be the account id is then out of the root caller's reach for these actions). Listings
show the account id as the root device's ``UserName``. AWS names the root's device
``root-account-mfa-device`` (:data:`ROOT_DEVICE_NAME`); any name works here. Other callers can
never act on the root user's device.

Seeds are sealed at rest (spec E3) and returned only by :meth:`MfaService.create_virtual`;
nothing here logs a seed or a code (spec G2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from broker.core.arn import iam_arn, parse_arn, root_arn
from broker.core.keyring import SealError
from broker.core.model import Principal, PrincipalKind
from broker.core.totp import (
    DEFAULT_WINDOW,
    RESYNC_WINDOW,
    STEP_SECONDS,
    new_seed,
    verify_code,
    verify_consecutive,
)
from broker.errors import (
    AccessDeniedError,
    DeleteConflictError,
    EntityAlreadyExistsError,
    InvalidAuthenticationCodeError,
    InvalidInputError,
    LimitExceededError,
    NoSuchEntityError,
    ValidationError,
)
from broker.service.iam import (
    USER,
    check_tags,
    entity_key,
    now_text,
    request_tag_keys,
    resource_keys,
)
from broker.service.scoped import AccountScopedService
from broker.service.txn import Doc, Txn, read, read_many, scan

log = logging.getLogger(__name__)

T = TypeVar("T")

MFA_DEVICES_PER_USER = 1
"""MFA devices in use per user (spec/aws-wire.md section 3.2; ``LimitExceeded`` beyond)."""

SERIAL_MAX_LENGTH = 256
"""Longest serial number the model allows (``serialNumberType``)."""

ROOT_DEVICE_NAME = "root-account-mfa-device"
"""The name AWS gives the root user's virtual MFA device."""

MFA_FAILED_MESSAGE = "MultiFactorAuthentication failed with invalid MFA one time pass code."
"""STS's message (``AccessDenied`` 403) for any MFA failure."""

ASSIGNMENT_STATUSES = ("Assigned", "Unassigned", "Any")
"""``ListVirtualMFADevices`` ``AssignmentStatus`` values."""

DEVICE, USED = "mfa", "mfaused"


@dataclass(frozen=True, slots=True)
class MfaDevice:
    """An enabled device as ``ListMFADevices`` and ``GetMFADevice`` show it.

    ``user_name`` is the owner's user name, or the account id for the root user.
    """

    user_name: str
    serial: str
    enabled: str


@dataclass(frozen=True, slots=True)
class VirtualDevice:
    """A virtual device as ``CreateVirtualMFADevice`` / ``ListVirtualMFADevices`` show it.

    ``user`` is the owner's user record (the root user in the shape ``IamService.get_user``
    returns for it) or ``None`` while unassigned. Never carries the seed.
    """

    name: str
    path: str
    serial: str
    created: str
    tags: list[list[str]]
    user: Doc | None
    enabled: str | None


@dataclass(frozen=True, slots=True)
class _Target:
    """Whose device an action is about: a user (by name) or the account's root user."""

    root: bool
    name: str  # user name as given; the account id for the root user
    arn: str


def device_key(name: str) -> str:
    """Return the record key of the virtual device named ``name``."""
    return f"{DEVICE}/{name.lower()}"


def _used_key(name: str) -> str:
    return f"{USED}/{name.lower()}"


def split_serial(account_id: str, serial: str) -> tuple[str, str] | None:
    """Return ``(path, name)`` of a virtual device serial of ``account_id``, or ``None``."""
    arn = parse_arn(serial)
    if (
        arn is None
        or arn.partition != "aws"
        or arn.service != "iam"
        or arn.region
        or arn.account != account_id
        or not arn.resource.startswith(f"{DEVICE}/")
    ):
        return None
    rest = arn.resource[len(DEVICE) :]
    cut = rest.rfind("/")
    path, name = rest[: cut + 1], rest[cut + 1 :]
    if not name:
        return None
    return path, name


class MfaService(AccountScopedService):
    """Virtual MFA devices of every account the broker hosts, and MFA checks for STS."""

    def _epoch(self) -> int:
        return int(self._clock.now().timestamp())

    def _seed(self, device: Doc) -> bytes:
        return self._keyring.unseal(device["seed"], aad=device["serial"].encode("utf-8"))

    async def _target(self, caller: Principal, user: str | None, action: str) -> _Target:
        """Resolve and authorize whose device ``action`` is about (see the module docstring).

        As every IAM action does, the caller is authorized on the user's ARN before the user's
        existence is checked, so a caller without the permission cannot probe names.
        """
        account = caller.account_id
        if caller.is_root and (user is None or user == account):
            arn = root_arn(account)
            await self._allow(caller, action, arn)
            return _Target(True, account, arn)
        if user is None:
            if caller.kind is not PrincipalKind.USER:
                raise ValidationError(
                    "Must specify userName when calling with non-User credentials"
                )
            user = caller.name
        doc = await self._reads.get(account, entity_key(USER, user))
        arn = doc["arn"] if doc is not None else iam_arn(account, "user", "/", user)
        await self._allow(caller, action, arn, resource_keys(doc) if doc is not None else {})
        return _Target(False, user, arn)

    async def _holder(self, txn: Txn, target: _Target) -> tuple[str, Doc]:
        """Read the record that holds the target's ``mfa`` serial: the user or the account."""
        key = "account" if target.root else entity_key(USER, target.name)
        doc = await txn.get(key)
        if doc is None:
            if target.root:  # pragma: no cover - every hosted account has its record
                raise NoSuchEntityError(f"The account {target.name} cannot be found.")
            raise NoSuchEntityError(f"The user with name {target.name} cannot be found.")
        return key, doc

    @staticmethod
    def _no_device(serial: str) -> NoSuchEntityError:
        return NoSuchEntityError(f"VirtualMFADevice with serial number {serial} doesn't exist.")

    async def _device(self, txn: Txn, account: str, serial: str) -> tuple[str, Doc]:
        parts = split_serial(account, serial)
        if parts is None:
            raise self._no_device(serial)
        key = device_key(parts[1])
        doc = await txn.get(key)
        if doc is None or doc["serial"] != serial:
            raise self._no_device(serial)
        return key, doc

    @staticmethod
    def _owner_ref(target: _Target, holder: Doc) -> Doc:
        if target.root:
            return {"root": True, "id": target.name, "name": None}
        return {"root": False, "id": holder["id"], "name": holder["name"]}

    @staticmethod
    def _owned_by(device: Doc, holder: Doc, root: bool) -> bool:
        owner = device.get("user")
        if owner is None:
            return False
        if root:
            return bool(owner["root"])
        return not owner["root"] and owner["id"] == holder["id"]

    async def _assigned(
        self, txn: Txn, caller: Principal, target: _Target, serial: str
    ) -> tuple[str, Doc, str, Doc]:
        """Read the target's holder record and its enabled device ``serial`` (else NoSuchEntity)."""
        holder_key, holder = await self._holder(txn, target)
        if holder.get("mfa") != serial:
            raise NoSuchEntityError(
                f"MFA Device with serial number {serial} is not enabled for "
                f"{'the root user' if target.root else 'user ' + target.name}."
            )
        key, device = await self._device(txn, caller.account_id, serial)
        if not self._owned_by(device, holder, target.root):  # pragma: no cover - kept in step
            raise self._no_device(serial)
        return holder_key, holder, key, device

    # -- CreateVirtualMFADevice -------------------------------------------------------------

    async def create_virtual(
        self, caller: Principal, name: str, path: str, tags: Sequence[tuple[str, str]]
    ) -> tuple[VirtualDevice, bytes]:
        """CreateVirtualMFADevice: a new unassigned device and its seed.

        .. warning::
           The returned seed is the only copy outside the store (where it is sealed); show it
           once, in the ``CreateVirtualMFADevice`` response, and never log it.
        """
        serial = iam_arn(caller.account_id, DEVICE, path, name)
        await self._allow(caller, "iam:CreateVirtualMFADevice", serial, request_tag_keys(tags))
        if len(serial) > SERIAL_MAX_LENGTH:
            raise InvalidInputError(
                f"The serial number {serial} is longer than {SERIAL_MAX_LENGTH} characters."
            )
        check_tags(tags)
        seed = new_seed(self._rng)
        sealed = self._keyring.seal(seed, aad=serial.encode("utf-8"))
        created = now_text(self._clock)

        async def fn(txn: Txn) -> Doc:
            key = device_key(name)
            if await txn.get(key) is not None:
                raise EntityAlreadyExistsError(
                    "MFADevice entity at the same path and name already exists."
                )
            doc: Doc = {
                "name": name,
                "path": path,
                "serial": serial,
                "created": created,
                "tags": [[k, v] for k, v in tags],
                "seed": sealed,
                "user": None,
                "enabled": None,
                "drift": 0,
            }
            txn.put(key, doc)
            txn.delete(_used_key(name))  # a former device of this name left no codes behind
            return doc

        doc = await self._tx(caller.account_id, fn)
        return self._view(doc, None), seed

    # -- EnableMFADevice / ResyncMFADevice ----------------------------------------------------

    async def enable(
        self, caller: Principal, user: str | None, serial: str, code1: str, code2: str
    ) -> None:
        """EnableMFADevice: assign device ``serial`` to the target after two consecutive codes."""
        target = await self._target(caller, user, "iam:EnableMFADevice")
        now = self._epoch()

        async def fn(txn: Txn) -> None:
            holder_key, holder = await self._holder(txn, target)
            key, device = await self._device(txn, caller.account_id, serial)
            if device.get("user") is not None:
                raise EntityAlreadyExistsError("MFA Device is already in use.")
            if holder.get("mfa"):
                raise LimitExceededError(
                    f"Cannot exceed quota for MFADevicesPerUser: {MFA_DEVICES_PER_USER}"
                )
            step = verify_consecutive(self._seed(device), code1, code2, now=now)
            if step is None:
                raise InvalidAuthenticationCodeError()
            device["user"] = self._owner_ref(target, holder)
            device["enabled"] = now_text(self._clock)
            device["drift"] = step - now // STEP_SECONDS
            holder["mfa"] = serial
            txn.put(key, device)
            txn.put(holder_key, holder)
            txn.put(_used_key(device["name"]), {"step": step})

        await self._tx(caller.account_id, fn)

    async def resync(
        self, caller: Principal, user: str | None, serial: str, code1: str, code2: str
    ) -> None:
        """ResyncMFADevice: re-learn the device's clock drift from two consecutive fresh codes.

        The pair is searched within ``RESYNC_WINDOW`` steps of the broker's time; the offset
        found is applied to every later check of the device's codes.
        """
        target = await self._target(caller, user, "iam:ResyncMFADevice")
        now = self._epoch()

        async def fn(txn: Txn) -> None:
            _, _, key, device = await self._assigned(txn, caller, target, serial)
            used = await txn.get(_used_key(device["name"]))
            step = verify_consecutive(
                self._seed(device), code1, code2, now=now, window=RESYNC_WINDOW
            )
            # Both codes must be fresh: codes already accepted never count again.
            if step is None or (used is not None and step - 1 <= int(used["step"])):
                raise InvalidAuthenticationCodeError()
            device["drift"] = step - now // STEP_SECONDS
            txn.put(key, device)
            txn.put(_used_key(device["name"]), {"step": step})

        await self._tx(caller.account_id, fn)

    # -- DeactivateMFADevice / DeleteVirtualMFADevice ----------------------------------------

    async def deactivate(self, caller: Principal, user: str | None, serial: str) -> None:
        """DeactivateMFADevice: unassign the device from the target (it can be enabled again)."""
        target = await self._target(caller, user, "iam:DeactivateMFADevice")

        async def fn(txn: Txn) -> None:
            holder_key, holder, key, device = await self._assigned(txn, caller, target, serial)
            device["user"] = None
            device["enabled"] = None
            device["drift"] = 0
            holder.pop("mfa", None)
            txn.put(key, device)
            txn.put(holder_key, holder)

        await self._tx(caller.account_id, fn)

    async def delete_virtual(self, caller: Principal, serial: str) -> None:
        """DeleteVirtualMFADevice: only while unassigned (``DeleteConflict`` otherwise)."""
        parts = split_serial(caller.account_id, serial)
        found = (
            await self._reads.get(caller.account_id, device_key(parts[1]))
            if parts is not None
            else None
        )
        keys = resource_keys(found) if found is not None and found["serial"] == serial else {}
        await self._allow(caller, "iam:DeleteVirtualMFADevice", serial, keys)

        async def fn(txn: Txn) -> None:
            key, device = await self._device(txn, caller.account_id, serial)
            if device.get("user") is not None:
                raise DeleteConflictError("MFA Device is still in use.")
            txn.delete(key)
            txn.delete(_used_key(device["name"]))

        await self._tx(caller.account_id, fn)

    # -- reads ------------------------------------------------------------------------------

    async def list_devices(self, caller: Principal, user: str | None) -> list[MfaDevice]:
        """ListMFADevices: the target's enabled device(s); without ``user``, the caller's own."""
        target = await self._target(caller, user, "iam:ListMFADevices")
        txn = Txn(self._store, caller.account_id)  # read-only: never committed
        _, holder = await self._holder(txn, target)
        serial = holder.get("mfa")
        if not serial:
            return []
        _, device = await self._device(txn, caller.account_id, serial)
        return [self._enabled_view(target, holder, device)]

    async def get_device(self, caller: Principal, serial: str, user: str | None) -> MfaDevice:
        """GetMFADevice: device ``serial`` of the target; without ``user``, the caller's own."""
        target = await self._target(caller, user, "iam:GetMFADevice")
        txn = Txn(self._store, caller.account_id)  # read-only: never committed
        _, holder, _, device = await self._assigned(txn, caller, target, serial)
        return self._enabled_view(target, holder, device)

    @staticmethod
    def _enabled_view(target: _Target, holder: Doc, device: Doc) -> MfaDevice:
        name = target.name if target.root else str(holder["name"])
        return MfaDevice(name, device["serial"], str(device["enabled"]))

    async def list_virtual(self, caller: Principal, assignment_status: str) -> list[VirtualDevice]:
        """ListVirtualMFADevices (``Assigned`` | ``Unassigned`` | ``Any``), ordered by serial."""
        if assignment_status not in ASSIGNMENT_STATUSES:
            raise ValidationError(f"Invalid AssignmentStatus {assignment_status}.")
        await self._allow(caller, "iam:ListVirtualMFADevices", "*")
        account = caller.account_id
        devices = await scan(self._store, account, f"{DEVICE}/")
        if assignment_status == "Assigned":
            devices = [d for d in devices if d.get("user") is not None]
        elif assignment_status == "Unassigned":
            devices = [d for d in devices if d.get("user") is None]
        owners = await self._owners(account, [d["user"] for d in devices if d.get("user")])
        out = [
            self._view(d, owners.get(d["user"]["id"]) if d.get("user") else None) for d in devices
        ]
        return sorted(out, key=lambda v: v.serial)

    async def _owners(self, account: str, refs: Sequence[Doc]) -> dict[str, Doc]:
        """Map owner ids to current user records (the root user's too).

        Devices remember their owner's id and name; a user renamed since is found by id.
        """
        out: dict[str, Doc] = {}
        if any(r["root"] for r in refs):
            acct = await read(self._store, account, "account") or {}
            out[account] = {
                "root": True,
                "id": account,
                "arn": root_arn(account),
                "created": acct.get("created", now_text(self._clock)),
                "path": "/",
                "name": None,
                "tags": [],
            }
        users = [r for r in refs if not r["root"]]
        docs = await read_many(self._store, account, [entity_key(USER, r["name"]) for r in users])
        missing = False
        for ref, doc in zip(users, docs, strict=True):
            if doc is not None and doc["id"] == ref["id"]:
                out[ref["id"]] = doc
            else:
                missing = True
        if missing:
            for doc in await scan(self._store, account, f"{USER}/"):
                out.setdefault(doc["id"], doc)
        return out

    @staticmethod
    def _view(doc: Doc, owner: Doc | None) -> VirtualDevice:
        return VirtualDevice(
            name=doc["name"],
            path=doc["path"],
            serial=doc["serial"],
            created=doc["created"],
            tags=doc.get("tags", []),
            user=owner,
            enabled=doc.get("enabled") if owner is not None else None,
        )

    # -- STS ---------------------------------------------------------------------------------

    async def verify(self, account_id: str, user_name: str | None, serial: str, code: str) -> int:
        """Check an MFA code for STS; return the epoch time of the authentication.

        The device ``serial`` must be enabled and assigned to ``user_name`` (``None``: the
        account's root user), and ``code`` must match a time step within ``DEFAULT_WINDOW`` of
        now (after the device's recorded drift) that no earlier code was accepted for. The
        accepted step is recorded in the same atomic commit that checks it, so one code
        authenticates at most one request, even when two race. Any failure raises
        ``AccessDeniedError`` with STS's message; a store outage stays ``ServiceUnavailable``.
        """
        denied = AccessDeniedError(MFA_FAILED_MESSAGE)
        parts = split_serial(account_id, serial)
        if parts is None:
            raise denied
        holder_key = "account" if user_name is None else entity_key(USER, user_name)
        key, used_key = device_key(parts[1]), _used_key(parts[1])
        now = self._epoch()

        async def fn(txn: Txn) -> int:
            holder, device, used = await txn.get_many([holder_key, key, used_key])
            if holder is None or device is None or holder.get("mfa") != serial:
                raise denied
            if device["serial"] != serial or not self._owned_by(device, holder, user_name is None):
                raise denied
            try:
                seed = self._seed(device)
            except SealError:
                log.warning("account=%s mfa device %s: sealed seed unreadable", account_id, serial)
                raise denied from None
            at = now + int(device.get("drift", 0)) * STEP_SECONDS
            last = int(used["step"]) if used is not None else None
            step = verify_code(seed, code, now=max(at, 0), window=DEFAULT_WINDOW, after_step=last)
            if step is None:
                raise denied
            txn.put(used_key, {"step": step})
            txn.bump = False  # bookkeeping only: no cached state derives from it
            return now

        return await self._tx(account_id, fn)
