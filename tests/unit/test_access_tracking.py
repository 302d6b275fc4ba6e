"""AccessTracker: who is tracked, how pending uses merge with stored records, and flushing.

The tracker runs on a ``MemoryStore``; a store whose commits fail on demand stands in for an
outage (the store protocol itself is real, only its availability is switched).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

import pytest

from broker.core.model import ANONYMOUS, Principal, PrincipalKind
from broker.service.access_tracking import (
    DEFAULT_REGION,
    AccessTracker,
    accessed_key,
    assumed_role,
    merge_accessed,
    merge_last_used,
    role_last_used_key,
    tracked_entity,
)
from broker.store.base import Put, StoreUnavailable, Write
from broker.store.memory import MemoryStore

ACCOUNT = "123456789012"
OTHER = "210987654321"
T0 = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def stamp(seconds: int) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def user(name: str = "alice", account: str = ACCOUNT) -> Principal:
    return Principal(
        PrincipalKind.USER, account, f"arn:aws:iam::{account}:user/{name}", "AIDA1", name, "AKIA1"
    )


def role_session(role: str = "Deployer", session: str = "s1") -> Principal:
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"
    return Principal(PrincipalKind.ASSUMED_ROLE, ACCOUNT, arn, "AROA1:s1", session, "ASIA1")


ROOT = Principal(PrincipalKind.ROOT, ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, "root", "A")
FEDERATED = Principal(
    PrincipalKind.FEDERATED_USER,
    ACCOUNT,
    f"arn:aws:sts::{ACCOUNT}:federated-user/bob",
    f"{ACCOUNT}:bob",
    "bob",
    "ASIA2",
)


class SwitchableStore(MemoryStore):
    """A memory store whose commits raise ``StoreUnavailable`` while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.commits = 0
        self.bumps = 0

    async def commit(
        self,
        ns: str,
        writes: Mapping[str, Write],
        *,
        expect: Mapping[str, int] | None = None,
        bump: bool = True,
    ) -> int:
        if self.down:
            raise StoreUnavailable("switched off")
        self.commits += 1
        self.bumps += int(bump)
        return await super().commit(ns, writes, expect=expect, bump=bump)


async def stored(store: MemoryStore, key: str, account: str = ACCOUNT) -> dict[str, object] | None:
    rec = await store.get(account, key)
    if rec is None:
        return None
    doc = json.loads(rec.value)
    assert isinstance(doc, dict)
    return doc


# -- who is tracked -----------------------------------------------------------------------------


def test_tracked_entities() -> None:
    assert tracked_entity(user("Alice")) == ("user", "Alice")
    assert tracked_entity(role_session("Deployer")) == ("role", "Deployer")
    assert tracked_entity(ROOT) is None
    assert tracked_entity(FEDERATED) is None
    assert tracked_entity(ANONYMOUS) is None


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (f"arn:aws:iam::{ACCOUNT}:role/Deployer", (ACCOUNT, "Deployer")),
        (f"arn:aws:iam::{ACCOUNT}:role/team/a/Deployer", (ACCOUNT, "Deployer")),
        (f"arn:aws:iam::{ACCOUNT}:user/Deployer", None),
        (f"arn:aws:iam::{ACCOUNT}:role/", None),
        ("arn:aws:iam::12:role/x", None),
        ("not-an-arn", None),
        (None, None),
    ],
)
def test_assumed_role_arns(arn: str | None, expected: tuple[str, str] | None) -> None:
    assert assumed_role(arn) == expected


# -- merging ------------------------------------------------------------------------------------


def test_merge_accessed_keeps_the_later_use_per_service_and_action() -> None:
    stored_doc = {
        "iam": {
            "time": stamp(10),
            "region": "eu-west-1",
            "actions": {
                "ListUsers": {"time": stamp(10), "region": "eu-west-1"},
                "GetUser": {"time": stamp(5), "region": "eu-west-1"},
            },
        },
        "sts": {"time": stamp(50), "region": "eu-west-1", "actions": {}},
    }
    delta = {
        "iam": {
            "time": stamp(20),
            "region": "us-east-1",
            "actions": {"GetUser": {"time": stamp(20), "region": "us-east-1"}},
        },
        "sts": {
            "time": stamp(30),
            "region": "us-east-1",
            "actions": {"GetCallerIdentity": {"time": stamp(30), "region": "us-east-1"}},
        },
    }
    merged = merge_accessed(stored_doc, delta)
    assert merged["iam"]["time"] == stamp(20)
    assert merged["iam"]["region"] == "us-east-1"
    assert merged["iam"]["actions"]["ListUsers"] == {"time": stamp(10), "region": "eu-west-1"}
    assert merged["iam"]["actions"]["GetUser"] == {"time": stamp(20), "region": "us-east-1"}
    # The stored sts use is newer than the pending one: it stays, the new action joins.
    assert merged["sts"]["time"] == stamp(50)
    assert merged["sts"]["region"] == "eu-west-1"
    assert merged["sts"]["actions"]["GetCallerIdentity"]["time"] == stamp(30)
    # Inputs are left alone.
    assert stored_doc["iam"]["time"] == stamp(10)
    assert "GetCallerIdentity" not in stored_doc["sts"]["actions"]


def test_merge_accessed_tolerates_odd_stored_shapes() -> None:
    delta = {"iam": {"time": stamp(1), "region": "r", "actions": {}}}
    merged = merge_accessed({"iam": "garbage", "sts": {"time": 3}}, delta)
    assert merged["iam"]["time"] == stamp(1)
    assert merge_accessed(None, delta) == delta


def test_merge_last_used() -> None:
    old = {"time": stamp(1), "region": "a"}
    new = {"time": stamp(2), "region": "b"}
    assert merge_last_used(old, new) == new
    assert merge_last_used(new, old) == new
    assert merge_last_used(None, old) == old


# -- recording and flushing ---------------------------------------------------------------------


async def test_flush_writes_user_and_role_records_without_bumping() -> None:
    store = SwitchableStore()
    tracker = AccessTracker(store)
    tracker.record(user("Alice"), "iam", "ListUsers", "us-east-1", at(0))
    tracker.record(user("Alice"), "iam", "GetUser", "eu-west-1", at(5))
    tracker.record(user("Alice"), "sts", "GetCallerIdentity", "", at(7))
    tracker.record(role_session("Deployer"), "iam", "ListRoles", "us-west-2", at(9))
    tracker.record(ROOT, "iam", "ListUsers", "us-east-1", at(9))
    tracker.record(FEDERATED, "sts", "GetCallerIdentity", "us-east-1", at(9))
    assert tracker.pending == 3  # alice, the role's accessed/ and rlused/ records

    assert await tracker.flush() == 3
    assert tracker.pending == 0
    assert store.bumps == 0
    assert await store.generation(ACCOUNT) == 0

    alice = await stored(store, accessed_key("user", "alice"))
    assert alice is not None
    assert alice["iam"] == {
        "time": stamp(5),
        "region": "eu-west-1",
        "actions": {
            "ListUsers": {"time": stamp(0), "region": "us-east-1"},
            "GetUser": {"time": stamp(5), "region": "eu-west-1"},
        },
    }
    assert alice["sts"]["region"] == DEFAULT_REGION  # type: ignore[index]
    role = await stored(store, accessed_key("role", "deployer"))
    assert role is not None and role["iam"]["actions"]["ListRoles"]["time"] == stamp(9)  # type: ignore[index]
    assert await stored(store, role_last_used_key("Deployer")) == {
        "time": stamp(9),
        "region": "us-west-2",
    }
    assert [r.key for r in await store.scan(ACCOUNT, "accessed/")] == [
        "accessed/role/deployer",
        "accessed/user/alice",
    ]


async def test_flush_merges_into_newer_stored_data() -> None:
    store = SwitchableStore()
    newer = {"iam": {"time": stamp(100), "region": "ap-south-1", "actions": {}}}
    await store.commit(ACCOUNT, {accessed_key("user", "alice"): Put(json.dumps(newer).encode())})
    tracker = AccessTracker(store)
    tracker.record(user("alice"), "iam", "ListUsers", "us-east-1", at(1))
    await tracker.flush()
    doc = await stored(store, accessed_key("user", "alice"))
    assert doc is not None
    assert doc["iam"]["time"] == stamp(100)  # type: ignore[index]
    assert doc["iam"]["region"] == "ap-south-1"  # type: ignore[index]
    assert doc["iam"]["actions"] == {"ListUsers": {"time": stamp(1), "region": "us-east-1"}}  # type: ignore[index]


async def test_assume_role_counts_as_a_use_of_the_role() -> None:
    store = SwitchableStore()
    tracker = AccessTracker(store)
    role_arn = f"arn:aws:iam::{OTHER}:role/path/Target"
    tracker.record(user("alice"), "sts", "AssumeRole", "eu-north-1", at(3), role_arn)
    tracker.record(ANONYMOUS, "sts", "AssumeRoleWithWebIdentity", "", at(4), role_arn)
    # Any other action naming a RoleArn is not a use of that role.
    tracker.record(user("alice"), "iam", "GetRole", "us-east-1", at(5), role_arn)
    await tracker.flush()
    assert await stored(store, role_last_used_key("Target"), OTHER) == {
        "time": stamp(4),
        "region": DEFAULT_REGION,
    }
    alice = await stored(store, accessed_key("user", "alice"))
    assert alice is not None and alice["sts"]["actions"]["AssumeRole"]["time"] == stamp(3)  # type: ignore[index]


async def test_failed_flush_keeps_pending_data_and_merges_it_later() -> None:
    store = SwitchableStore()
    tracker = AccessTracker(store)
    tracker.record(user("alice"), "iam", "ListUsers", "us-east-1", at(0))
    tracker.record(role_session("R"), "sts", "GetCallerIdentity", "us-east-1", at(1))
    store.down = True
    assert await tracker.flush() == 0
    assert tracker.pending == 3
    assert await stored(store, accessed_key("user", "alice")) is None
    # New uses while the store is down merge with what is kept.
    tracker.record(user("alice"), "iam", "GetUser", "us-east-1", at(2))
    tracker.record(role_session("R"), "sts", "GetCallerIdentity", "eu-west-1", at(3))
    store.down = False
    assert await tracker.flush() == 3
    alice = await stored(store, accessed_key("user", "alice"))
    assert alice is not None
    assert set(alice["iam"]["actions"]) == {"ListUsers", "GetUser"}  # type: ignore[index]
    assert alice["iam"]["time"] == stamp(2)  # type: ignore[index]
    assert await stored(store, role_last_used_key("r")) == {"time": stamp(3), "region": "eu-west-1"}
    assert tracker.pending == 0


async def test_flush_in_batches_and_per_account() -> None:
    store = SwitchableStore()
    tracker = AccessTracker(store, batch_records=4)
    for i in range(10):
        tracker.record(user(f"u{i}"), "iam", "ListUsers", "us-east-1", at(i))
    tracker.record(user("x", OTHER), "iam", "ListUsers", "us-east-1", at(0))
    assert await tracker.flush() == 11
    assert store.commits == 3 + 1  # 10 records in batches of 4, and the other account's one
    assert len(await store.scan(ACCOUNT, "accessed/user/")) == 10
    assert len(await store.scan(OTHER, "accessed/user/")) == 1
    assert await tracker.flush() == 0  # nothing left
