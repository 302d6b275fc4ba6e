"""KeyService: the keyring's life cycle (ensure, rotate, retire, list) and how nodes follow it.

Each test builds services on a ``MemoryStore`` (or two SQLite clients of one file) with a
clock the test moves by hand. "Another node" is a second ``KeyService`` with its own
``Generations`` on the same store: it learns of changes only when its generations move, as a
real node does through pub/sub or polling.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jwt
import pytest

from broker.core.keyring import SIGNING_ALGORITHMS, Keyring
from broker.errors import KeyringMismatchError, NoSuchEntityError
from broker.service.cache import Generations
from broker.service.keys import (
    HEAD_KEY,
    KEY_RETENTION_SECONDS,
    MAX_JWT_LIFETIME_SECONDS,
    MAX_TOKEN_LIFETIME_SECONDS,
    SIGNING_PREFIX,
    TOKEN_PREFIX,
    KeyInfo,
    KeyService,
)
from broker.store.base import GLOBAL_NS, Record, Store, StoreUnavailable
from broker.store.memory import MemoryStore
from broker.store.sqlite import SqliteStore

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class ManualClock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.at = start
        self.mono = 0.0

    def now(self) -> dt.datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)
        self.mono += seconds


class FlakyStore(MemoryStore):
    """A MemoryStore that can be switched to fail every call, and counts scans."""

    down = False
    scans = 0

    async def _enter(self) -> None:
        await super()._enter()
        if self.down:
            raise StoreUnavailable("switched off by the test")

    async def scan(
        self, ns: str, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[Record]:
        self.scans += 1
        return await super().scan(ns, prefix, start_after=start_after, limit=limit)


def master() -> Keyring:
    return Keyring(os.urandom(32))


def service(store: Store, keyring: Keyring, clock: ManualClock) -> KeyService:
    return KeyService(store, keyring, Generations(store, clock.monotonic), clock)


def by_kind(infos: Sequence[KeyInfo]) -> dict[tuple[str, str], list[KeyInfo]]:
    out: dict[tuple[str, str], list[KeyInfo]] = {}
    for info in infos:
        out.setdefault((info.kind, info.alg), []).append(info)
    return out


def kids(jwks: dict[str, list[dict[str, str]]]) -> set[str]:
    return {k["kid"] for k in jwks["keys"]}


async def raw_records(store: Store) -> list[Record]:
    return await store.scan(GLOBAL_NS, TOKEN_PREFIX) + await store.scan(GLOBAL_NS, SIGNING_PREFIX)


def sign_and_verify(svc_jwks: dict[str, list[dict[str, str]]], token: str) -> dict[str, object]:
    """Verify ``token`` against a JWKS the way a relying party does (kid -> key)."""
    header = jwt.get_unverified_header(token)
    found = [k for k in svc_jwks["keys"] if k["kid"] == header["kid"]]
    if not found:
        raise jwt.InvalidTokenError("kid not in the JWKS")
    key = jwt.PyJWK.from_dict(found[0])
    claims: dict[str, object] = jwt.decode(
        token, key=key, algorithms=[header["alg"]], audience="rp", options={"verify_exp": False}
    )
    return claims


# -- ensure ---------------------------------------------------------------------------------


async def test_ensure_creates_one_key_of_each_kind_and_is_idempotent() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    await svc.ensure()
    first = await svc.list_keys()
    groups = by_kind(first)
    assert sorted(groups) == sorted(
        [("token", "A256GCM")] + [("signing", alg) for alg in SIGNING_ALGORITHMS]
    )
    assert all(len(v) == 1 for v in groups.values())
    assert all(i.active and i.verifies and not i.retired for i in first)
    assert all(i.created_at == int(T0.timestamp()) and i.rotated_out_at is None for i in first)
    await svc.ensure()
    await svc.ensure()
    assert await svc.list_keys() == first


async def test_key_material_is_sealed_in_the_store() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    token_key = await svc.active_token_key()
    signer = await svc.signer("RS256")
    blob = b"".join(r.value for r in await raw_records(store))
    assert token_key.secret not in blob
    assert base64.b64encode(token_key.secret) not in blob
    assert b"PRIVATE KEY" not in blob
    assert signer.key.private_pem not in blob
    assert "PRIVATE" not in repr(signer) and "private_pem" not in repr(signer.key)


async def test_concurrent_ensure_on_two_nodes_makes_one_keyset() -> None:
    clock, store, keyring = ManualClock(), MemoryStore(), master()
    nodes = [service(store, keyring, clock) for _ in range(4)]
    await asyncio.gather(*(n.ensure() for n in nodes))
    infos = await nodes[0].list_keys()
    assert len(infos) == 1 + len(SIGNING_ALGORITHMS), infos
    actives = {(await n.active_token_key()).kid for n in nodes}
    assert len(actives) == 1
    assert {(await n.signer("ES384")).key.kid for n in nodes} == {
        next(i.kid for i in infos if i.alg == "ES384")
    }


async def test_concurrent_ensure_on_two_sqlite_clients_makes_one_keyset(tmp_path: Path) -> None:
    clock, keyring = ManualClock(), master()
    path = tmp_path / "broker.db"
    one = await SqliteStore.open(path)
    two = await SqliteStore.open(path)
    try:
        a, b = service(one, keyring, clock), service(two, keyring, clock)
        await asyncio.gather(a.ensure(), b.ensure(), a.ensure(), b.ensure())
        assert len(await a.list_keys()) == 1 + len(SIGNING_ALGORITHMS)
        assert await a.list_keys() == await b.list_keys()
        head = await one.get(GLOBAL_NS, HEAD_KEY)
        assert head is not None and json.loads(head.value)["writes"] == 1
    finally:
        await one.close()
        await two.close()


async def test_concurrent_rotations_leave_one_active_key_per_kind() -> None:
    clock, store, keyring = ManualClock(), MemoryStore(), master()
    a, b = service(store, keyring, clock), service(store, keyring, clock)
    await a.ensure()
    await asyncio.gather(a.rotate(), b.rotate(), a.rotate())
    infos = await a.list_keys()
    for (kind, alg), group in by_kind(infos).items():
        assert len(group) == 4, (kind, alg)  # the first key and three rotations
        assert sum(i.active for i in group) == 1, (kind, alg)
        assert all(i.verifies for i in group)


async def test_ensure_refuses_a_keyring_sealed_under_another_master_key() -> None:
    clock, store = ManualClock(), MemoryStore()
    await service(store, master(), clock).ensure()
    before = await raw_records(store)
    stranger = service(store, master(), clock)
    with pytest.raises(KeyringMismatchError):
        await stranger.ensure()
    with pytest.raises(KeyringMismatchError):
        await stranger.rotate()
    with pytest.raises(KeyringMismatchError):
        await stranger.signer("RS256")
    assert await raw_records(store) == before
    assert all(not i.verifies and not i.active for i in await stranger.list_keys())
    assert (await stranger.jwks())["keys"] == []


# -- signing and the JWKS ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
async def test_signer_signs_what_the_jwks_verifies(alg: str) -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    signer = await svc.signer(alg)
    assert signer.key.alg == alg
    token = jwt.encode(
        {"sub": "me", "aud": "rp"}, signer.private, algorithm=alg, headers={"kid": signer.key.kid}
    )
    document = await svc.jwks()
    assert kids(document) == {i.kid for i in await svc.list_keys() if i.kind == "signing"}
    assert all("d" not in k and "p" not in k for k in document["keys"])  # public halves only
    assert sign_and_verify(document, token)["sub"] == "me"
    assert (await svc.active_signing_key(alg)).kid == signer.key.kid


async def test_signer_rejects_an_unknown_algorithm() -> None:
    svc = service(MemoryStore(), master(), ManualClock())
    with pytest.raises(ValueError, match="signing algorithm"):
        await svc.signer("HS256")


async def test_jwks_is_served_from_memory_while_the_generation_holds() -> None:
    clock, store = ManualClock(), FlakyStore()
    svc = service(store, master(), clock)
    await svc.ensure()
    await svc.jwks()
    scans = store.scans
    for _ in range(20):
        await svc.jwks()
        await svc.current()
    assert store.scans == scans


# -- rotation -------------------------------------------------------------------------------


async def test_rotation_keeps_old_keys_verifying_for_their_windows() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    old_token = await svc.active_token_key()
    old_signer = await svc.signer("ES384")
    clock.advance(10)
    new = await svc.rotate()
    assert sorted((i.kind, i.alg) for i in new) == sorted(
        [("token", "A256GCM")] + [("signing", a) for a in SIGNING_ALGORITHMS]
    )
    assert all(i.active and i.verifies for i in new)
    assert (await svc.active_token_key()).kid == next(i.kid for i in new if i.kind == "token")
    assert (await svc.signer("ES384")).key.kid != old_signer.key.kid
    infos = {i.kid: i for i in await svc.list_keys()}
    assert infos[old_token.kid].rotated_out_at == int(T0.timestamp()) + 10
    assert not infos[old_token.kid].active and infos[old_token.kid].verifies

    # Both signing generations are published until the old key's JWTs have all expired.
    assert old_signer.key.kid in kids(await svc.jwks())
    assert svc.token_key_now(old_token.kid) == old_token
    clock.advance(MAX_JWT_LIFETIME_SECONDS - 1)
    assert old_signer.key.kid in kids(await svc.jwks())
    clock.advance(1)  # no store write in between: the window's end alone triggers a reload
    assert old_signer.key.kid not in kids(await svc.jwks())
    await svc.current()
    assert svc.token_key_now(old_token.kid) == old_token
    clock.advance(MAX_TOKEN_LIFETIME_SECONDS - MAX_JWT_LIFETIME_SECONDS)
    await svc.current()
    assert svc.token_key_now(old_token.kid) is None
    listed = {i.kid: i for i in await svc.list_keys()}
    assert not listed[old_token.kid].verifies and not listed[old_signer.key.kid].verifies


async def test_rotation_prunes_records_long_past_their_windows() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    await svc.ensure()
    first = {(i.kind, i.kid) for i in await svc.list_keys()}
    first_signing = {kid for kind, kid in first if kind == "signing"}
    first_token = {kid for kind, kid in first if kind == "token"}
    await svc.rotate()  # the first keys are rotated out now

    async def listed_after(seconds: int) -> set[str]:
        clock.advance(seconds)
        await svc.rotate()
        return {i.kid for i in await svc.list_keys()}

    listed = await listed_after(MAX_JWT_LIFETIME_SECONDS + KEY_RETENTION_SECONDS)
    assert first_signing | first_token <= listed  # exactly at the end of retention: kept
    listed = await listed_after(1)
    assert not first_signing & listed and first_token <= listed
    listed = await listed_after(MAX_TOKEN_LIFETIME_SECONDS - MAX_JWT_LIFETIME_SECONDS)
    assert not first_token & listed
    assert all(i.kind != "token" or i.kid not in first_token for i in await svc.list_keys())


# -- retirement -----------------------------------------------------------------------------


async def test_retire_stops_a_key_at_once_and_the_next_use_makes_a_new_one() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    signer = await svc.signer("RS256")
    token_key = await svc.active_token_key()
    info = await svc.retire(signer.key.kid)
    assert info.retired and not info.active and not info.verifies
    assert info.rotated_out_at == int(T0.timestamp())
    assert signer.key.kid not in kids(await svc.jwks())
    replacement = await svc.signer("RS256")
    assert replacement.key.kid != signer.key.kid
    assert replacement.key.kid in kids(await svc.jwks())

    await svc.retire(token_key.kid)
    await svc.current()
    assert svc.token_key_now(token_key.kid) is None
    assert (await svc.active_token_key()).kid != token_key.kid

    again = await svc.retire(signer.key.kid)  # retiring twice changes nothing
    assert again == info


async def test_retire_of_an_unknown_kid_is_no_such_entity() -> None:
    svc = service(MemoryStore(), master(), ManualClock())
    await svc.ensure()
    with pytest.raises(NoSuchEntityError):
        await svc.retire("0123456789abcdef")


async def test_a_retired_rotated_out_key_stops_verifying_before_its_window_ends() -> None:
    clock, store = ManualClock(), MemoryStore()
    svc = service(store, master(), clock)
    old = await svc.signer("ES384")
    await svc.rotate()
    assert old.key.kid in kids(await svc.jwks())
    await svc.retire(old.key.kid)
    assert old.key.kid not in kids(await svc.jwks())
    listed = {i.kid: i for i in await svc.list_keys()}[old.key.kid]
    assert listed.retired and not listed.verifies


# -- other nodes ----------------------------------------------------------------------------


async def test_another_node_follows_rotation_and_retirement_when_its_generation_moves() -> None:
    clock, store, keyring = ManualClock(), MemoryStore(), master()
    admin = service(store, keyring, clock)
    node_generations = Generations(store, clock.monotonic)
    node = KeyService(store, keyring, node_generations, clock)
    old = await node.signer("RS256")
    published = kids(await node.jwks())

    await admin.rotate()
    await admin.retire(old.key.kid)
    # Until the node hears of the new generation it serves what it loaded...
    assert kids(await node.jwks()) == published
    await node_generations.poll()  # ... which pub/sub or polling brings within a second
    after = kids(await node.jwks())
    assert old.key.kid not in after
    assert (await node.signer("RS256")).key.kid in after
    assert after == kids(await admin.jwks())


async def test_store_outage_keeps_serving_the_loaded_keyring() -> None:
    clock, store = ManualClock(), FlakyStore()
    svc = service(store, master(), clock)
    token_key = await svc.active_token_key()
    published = kids(await svc.jwks())
    svc._generations.observe(GLOBAL_NS, 10_000)  # noqa: SLF001 - the keyring is now stale
    store.down = True
    scans = store.scans
    for _ in range(5):
        assert kids(await svc.jwks()) == published
        assert (await svc.active_token_key()).kid == token_key.kid
    assert store.scans == scans + 1  # one failed reload, then a pause before the next try
    store.down = False
    await svc.jwks()
    assert store.scans == scans + 1
    clock.advance(2)  # past the pause, the next use reloads
    assert kids(await svc.jwks()) == published
    assert store.scans > scans + 1
    assert (await svc.current()).generation == 10_000


async def test_nothing_loaded_and_store_down_is_an_error() -> None:
    store = FlakyStore()
    store.down = True
    svc = service(store, master(), ManualClock())
    with pytest.raises(StoreUnavailable):
        await svc.jwks()
