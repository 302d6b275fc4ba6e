"""Service: the token keyring (session-token keys and identity-token signing keys).

Keys live in the global namespace, each sealed with the master key:

* ``tokenkey/<kid>``: an AES-256 key that seals session tokens. The newest usable one seals
  new tokens; older ones keep opening tokens until they are retired, or until every token
  they could have sealed has expired (``MAX_TOKEN_LIFETIME_SECONDS`` after being rotated out).
* ``signkey/<kid>``: an asymmetric key (RS256 RSA-2048 or ES384 P-384) that signs identity
  JWTs (``GetWebIdentityToken``); the JWKS publishes every signing key that still verifies.

Every node holds the keyring in memory and reloads it when the global generation moves
(a rotation or retirement bumps it), so nodes and workers see keyring changes within the
generation propagation time. Verifying a token never reads the store.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from broker.clock import Clock
from broker.core.keyring import (
    SIGNING_ALGORITHMS,
    Keyring,
    SealError,
    SigningKey,
    generate_signing_key,
    public_jwk,
)
from broker.core.tokens import TokenKey, new_token_key
from broker.errors import NoSuchEntityError
from broker.service.cache import Generations
from broker.service.txn import Doc, Txn, scan, transact
from broker.store.base import GLOBAL_NS, Store

MAX_TOKEN_LIFETIME_SECONDS = 36 * 3600
"""The longest a session token can live (GetSessionToken/GetFederationToken: 36 h)."""

MAX_JWT_LIFETIME_SECONDS = 3600
"""The longest an identity JWT can live (GetWebIdentityToken DurationSeconds <= 3600)."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What ``broker keys list`` shows of a key: never its material."""

    kid: str
    kind: str  # "token" | "signing"
    alg: str
    created_at: int
    rotated_out_at: int | None
    retired: bool
    active: bool
    verifies: bool


@dataclass(frozen=True, slots=True)
class _Loaded:
    generation: int
    token_keys: dict[str, TokenKey]
    token_active: TokenKey | None
    signing_keys: dict[str, SigningKey]
    signing_active: dict[str, SigningKey]
    infos: tuple[KeyInfo, ...]


class KeyService:
    """Creates, rotates, retires and serves the token keyring."""

    def __init__(
        self,
        store: Store,
        master: Keyring,
        generations: Generations,
        clock: Clock,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._store = store
        self._master = master
        self._generations = generations
        self._clock = clock
        self._rng = rng
        self._loaded: _Loaded | None = None

    # -- reading ---------------------------------------------------------------------------

    async def current(self) -> _Loaded:
        """Return the in-memory keyring, reloading it when the global generation moved."""
        gen = self._generations.current(GLOBAL_NS)
        loaded = self._loaded
        if loaded is not None and gen is not None and loaded.generation == gen:
            return loaded
        return await self._load()

    async def _load(self) -> _Loaded:
        gen = await self._generations.watch(GLOBAL_NS)
        now = int(self._clock.now().timestamp())
        token_keys: dict[str, TokenKey] = {}
        signing: dict[str, SigningKey] = {}
        infos: list[KeyInfo] = []
        newest_token: tuple[int, str] | None = None
        newest_signing: dict[str, tuple[int, str]] = {}
        for doc in await scan(self._store, GLOBAL_NS, "tokenkey/"):
            verifies = _verifies(doc, now, MAX_TOKEN_LIFETIME_SECONDS)
            if verifies:
                try:
                    secret = self._master.unseal(doc["sealed"], aad=_aad(doc))
                except SealError:
                    verifies = False
                else:
                    token_keys[doc["kid"]] = TokenKey(doc["kid"], secret)
                    if doc.get("rotated_out_at") is None and (
                        newest_token is None or doc["created_at"] > newest_token[0]
                    ):
                        newest_token = (doc["created_at"], doc["kid"])
            infos.append(_info(doc, "token", "A256GCM", verifies))
        for doc in await scan(self._store, GLOBAL_NS, "signkey/"):
            verifies = _verifies(doc, now, MAX_JWT_LIFETIME_SECONDS)
            if verifies:
                try:
                    pem = self._master.unseal(doc["sealed"], aad=_aad(doc))
                except SealError:
                    verifies = False
                else:
                    key = SigningKey(doc["kid"], doc["alg"], pem, doc["created_at"])
                    signing[doc["kid"]] = key
                    best = newest_signing.get(doc["alg"])
                    if doc.get("rotated_out_at") is None and (
                        best is None or doc["created_at"] > best[0]
                    ):
                        newest_signing[doc["alg"]] = (doc["created_at"], doc["kid"])
            infos.append(_info(doc, "signing", doc["alg"], verifies))
        active_kids = {kid for _, kid in newest_signing.values()}
        if newest_token is not None:
            active_kids.add(newest_token[1])
        loaded = _Loaded(
            generation=gen,
            token_keys=token_keys,
            token_active=token_keys[newest_token[1]] if newest_token else None,
            signing_keys=signing,
            signing_active={alg: signing[kid] for alg, (_, kid) in newest_signing.items()},
            infos=tuple(
                KeyInfo(
                    i.kid,
                    i.kind,
                    i.alg,
                    i.created_at,
                    i.rotated_out_at,
                    i.retired,
                    i.kid in active_kids,
                    i.verifies,
                )  # fmt: skip
                for i in sorted(infos, key=lambda i: (i.kind, i.created_at))
            ),
        )
        self._loaded = loaded
        return loaded

    def token_key_now(self, kid: str) -> TokenKey | None:
        """Return the token key ``kid`` from memory (no I/O; call :meth:`current` first)."""
        loaded = self._loaded
        return None if loaded is None else loaded.token_keys.get(kid)

    async def active_token_key(self) -> TokenKey:
        """Return the key that seals new session tokens."""
        loaded = await self.current()
        if loaded.token_active is None:
            await self.ensure()
            loaded = await self._load()
        assert loaded.token_active is not None
        return loaded.token_active

    async def active_signing_key(self, alg: str) -> SigningKey:
        """Return the key that signs new identity JWTs with ``alg``."""
        loaded = await self.current()
        key = loaded.signing_active.get(alg)
        if key is None:
            await self.ensure()
            key = (await self._load()).signing_active[alg]
        return key

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JSON Web Key Set of every signing key that still verifies."""
        loaded = await self.current()
        return {"keys": [public_jwk(k) for k in loaded.signing_keys.values()]}

    async def list_keys(self) -> list[KeyInfo]:
        """Return every key's metadata (never material)."""
        return list((await self._load()).infos)

    # -- writing ---------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Create a token key and one signing key per algorithm when none is usable."""
        loaded = await self._load()
        if loaded.token_active is None:
            await self._add_token_key()
        for alg in SIGNING_ALGORITHMS:
            if alg not in loaded.signing_active:
                await self._add_signing_key(alg)

    async def rotate(self) -> list[str]:
        """Make new active keys (token and signing); older ones keep verifying a while."""
        now = int(self._clock.now().timestamp())
        kids = [await self._add_token_key(rotate_at=now)]
        for alg in SIGNING_ALGORITHMS:
            kids.append(await self._add_signing_key(alg, rotate_at=now))
        await self._load()
        return kids

    async def retire(self, kid: str) -> None:
        """Stop key ``kid`` verifying at once (its tokens and JWTs fail from now on)."""

        async def fn(txn: Txn) -> None:
            for prefix in ("tokenkey/", "signkey/"):
                doc = await txn.get(prefix + kid)
                if doc is not None:
                    doc["retired"] = True
                    if doc.get("rotated_out_at") is None:
                        doc["rotated_out_at"] = int(self._clock.now().timestamp())
                    txn.put(prefix + kid, doc)
                    return
            raise NoSuchEntityError(f"No key with id {kid}.")

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        await self._load()

    async def _rotate_out(self, txn: Txn, prefix: str, alg: str | None, now: int) -> None:
        for doc in await scan(self._store, GLOBAL_NS, prefix):
            if doc.get("rotated_out_at") is None and (alg is None or doc.get("alg") == alg):
                fresh = await txn.get(prefix + doc["kid"])
                if fresh is not None and fresh.get("rotated_out_at") is None:
                    fresh["rotated_out_at"] = now
                    txn.put(prefix + doc["kid"], fresh)

    async def _add_token_key(self, rotate_at: int | None = None) -> str:
        key = new_token_key(self._rng)
        now = int(self._clock.now().timestamp())

        async def fn(txn: Txn) -> None:
            if rotate_at is not None:
                await self._rotate_out(txn, "tokenkey/", None, rotate_at)
            doc: Doc = {"kid": key.kid, "kind": "token", "alg": "A256GCM", "created_at": now,
                        "rotated_out_at": None, "retired": False}  # fmt: skip
            doc["sealed"] = self._master.seal(key.secret, aad=_aad(doc))
            if await txn.get(f"tokenkey/{key.kid}") is not None:  # pragma: no cover
                raise NoSuchEntityError("key id clash")
            txn.put(f"tokenkey/{key.kid}", doc)

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        return key.kid

    async def _add_signing_key(self, alg: str, rotate_at: int | None = None) -> str:
        now = int(self._clock.now().timestamp())
        key = generate_signing_key(alg, now=now, rng=self._rng)

        async def fn(txn: Txn) -> None:
            if rotate_at is not None:
                await self._rotate_out(txn, "signkey/", alg, rotate_at)
            doc: Doc = {"kid": key.kid, "kind": "signing", "alg": alg, "created_at": now,
                        "rotated_out_at": None, "retired": False}  # fmt: skip
            doc["sealed"] = self._master.seal(key.private_pem, aad=_aad(doc))
            txn.put(f"signkey/{key.kid}", doc)

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        return key.kid


def _aad(doc: Doc) -> bytes:
    return f"{doc['kind']}:{doc['kid']}:{doc['alg']}".encode("ascii")


def _verifies(doc: Doc, now: int, lifetime: int) -> bool:
    if doc.get("retired"):
        return False
    out = doc.get("rotated_out_at")
    return out is None or now < int(out) + lifetime


def _info(doc: Doc, kind: str, alg: str, verifies: bool) -> KeyInfo:
    return KeyInfo(
        kid=doc["kid"],
        kind=kind,
        alg=alg,
        created_at=int(doc["created_at"]),
        rotated_out_at=doc.get("rotated_out_at"),
        retired=bool(doc.get("retired")),
        active=False,
        verifies=verifies,
    )
