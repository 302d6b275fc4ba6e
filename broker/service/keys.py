"""Service: the token keyring (session-token keys and identity-token signing keys).

Keys live in the global namespace, each sealed with the master key (the record's kind, kid and
algorithm are the sealing's associated data, so a sealed key copied to another record fails):

* ``tokenkey/<kid>``: an AES-256 key that seals session tokens. The active one seals new
  tokens; older ones keep opening tokens until they are retired, or until every token they
  could have sealed has expired (:data:`MAX_TOKEN_LIFETIME_SECONDS` after being rotated out).
* ``signkey/<kid>``: an asymmetric key (RS256 RSA-2048 or ES384 P-384) that signs identity
  JWTs (``GetWebIdentityToken``); the JWKS publishes every signing key that still verifies,
  a rotated-out one for :data:`MAX_JWT_LIFETIME_SECONDS` (the longest a JWT it signed lives).
* ``keyring``: a small head record that every keyring write reads and rewrites. Writers
  serialize on its version, so two nodes running :meth:`KeyService.ensure` at the same time
  create one set of keys, and a rotation racing another rotation leaves one active key per
  kind and algorithm.

At most one key per kind (and per algorithm for signing keys) is *active*: not rotated out and
not retired. Retiring the active key leaves none; the next use makes a fresh one.

Every node holds the keyring in memory and reloads it when the global generation moves (every
keyring write bumps it), or when a rotated-out key's verification window ends. Generations reach
other nodes through the store's pub/sub (Redis) or polling (SQLite workers), so a rotation or
retirement takes effect everywhere within the generation propagation time. Verifying a token
never reads the store; when the store cannot be reached, the last keyring loaded keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.clock import Clock
from broker.core.keyring import (
    SIGNING_ALGORITHMS,
    Keyring,
    PrivateKey,
    SealError,
    SigningKey,
    generate_signing_key,
    load_private_key,
    public_jwk,
)
from broker.core.tokens import TokenKey, new_token_key
from broker.errors import (
    InternalFailureError,
    KeyringMismatchError,
    NoSuchEntityError,
    UnavailableError,
)
from broker.service.cache import Generations
from broker.service.txn import Doc, Txn, scan, transact
from broker.store.base import GLOBAL_NS, Store, StoreUnavailable

log = logging.getLogger(__name__)

MAX_TOKEN_LIFETIME_SECONDS = 36 * 3600
"""The longest a session token can live (GetSessionToken/GetFederationToken: 36 h)."""

MAX_JWT_LIFETIME_SECONDS = 3600
"""The longest an identity JWT can live (GetWebIdentityToken DurationSeconds <= 3600)."""

KEY_RETENTION_SECONDS = 30 * 86400
"""How long a key's record stays listed after it stopped verifying; rotation prunes older ones."""

RELOAD_RETRY_SECONDS = 1.0
"""After a reload failed on an unreachable store, the loaded keyring serves this long."""

TOKEN_PREFIX = "tokenkey/"
SIGNING_PREFIX = "signkey/"
HEAD_KEY = "keyring"
"""The record every keyring write reads and rewrites (writers serialize on its version)."""

TOKEN_KIND = "token"
SIGNING_KIND = "signing"
TOKEN_ALG = "A256GCM"


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
class Signer:
    """An identity-token signing key with its loaded private key (load once, sign often)."""

    key: SigningKey
    private: PrivateKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Opened:
    """Unsealed material of one key, remembered across loads while its record is unchanged."""

    sealed: str
    token: TokenKey | None = None
    signer: Signer | None = None
    jwk: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class LoadedKeys:
    """The keyring as one node holds it in memory (built per global generation)."""

    generation: int
    refresh_at: float | None  # epoch seconds when a verification window ends
    token_keys: dict[str, TokenKey]
    token_active: TokenKey | None
    signers: dict[str, Signer]
    signing_active: dict[str, Signer]
    jwks: tuple[dict[str, str], ...]
    infos: tuple[KeyInfo, ...]
    unopened_active: tuple[str, ...]  # kids of active keys that failed to unseal


def _verify_until(doc: Doc, lifetime: int) -> float | None:
    """Epoch time the key stops verifying, or ``None`` while it is active."""
    out = doc.get("rotated_out_at")
    if out is None:
        return None
    return float(out) if doc.get("retired") else float(out) + lifetime


def _lifetime(doc: Doc) -> int:
    return MAX_TOKEN_LIFETIME_SECONDS if doc["kind"] == TOKEN_KIND else MAX_JWT_LIFETIME_SECONDS


def _is_active(doc: Doc) -> bool:
    return doc.get("rotated_out_at") is None and not doc.get("retired")


def _aad(doc: Doc) -> bytes:
    return f"{doc['kind']}:{doc['kid']}:{doc['alg']}".encode("ascii")


def _prefix(kind: str) -> str:
    return TOKEN_PREFIX if kind == TOKEN_KIND else SIGNING_PREFIX


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
        self._loaded: LoadedKeys | None = None
        self._opened: dict[str, _Opened] = {}
        self._lock = asyncio.Lock()
        self._retry_at = 0.0  # monotonic time before which a failed reload is not retried

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    # -- reading ---------------------------------------------------------------------------

    def _fresh(self, loaded: LoadedKeys | None) -> bool:
        if loaded is None or self._generations.current(GLOBAL_NS) != loaded.generation:
            return False
        return loaded.refresh_at is None or self._clock.now().timestamp() < loaded.refresh_at

    async def current(self) -> LoadedKeys:
        """Return the in-memory keyring, reloading it when the global generation moved.

        When the store cannot be reached, the keyring loaded last keeps serving (verifying
        tokens must not depend on the store); with nothing loaded yet the error propagates.
        """
        loaded = self._loaded
        if self._fresh(loaded) or (loaded is not None and self._clock.monotonic() < self._retry_at):
            assert loaded is not None
            return loaded
        try:
            return await self._reload()
        except (UnavailableError, StoreUnavailable):
            if loaded is None:
                raise
            self._retry_at = self._clock.monotonic() + RELOAD_RETRY_SECONDS
            log.warning("keyring reload failed: store unavailable; serving the loaded keyring")
            return loaded

    async def _reload(self, *, force: bool = False) -> LoadedKeys:
        # One load at a time: requests that queue behind a reload reuse its result.
        async with self._lock:
            loaded = self._loaded
            if not force and self._fresh(loaded):
                assert loaded is not None
                return loaded
            return await self._load()

    async def _load(self) -> LoadedKeys:
        # The generation is read before the records, so a load never claims a newer
        # generation than its data.
        gen = await self._generations.watch(GLOBAL_NS)
        now = self._now()
        docs = await scan(self._store, GLOBAL_NS, TOKEN_PREFIX)
        docs += await scan(self._store, GLOBAL_NS, SIGNING_PREFIX)
        opened: dict[str, _Opened] = {}
        token_keys: dict[str, TokenKey] = {}
        signers: dict[str, Signer] = {}
        token_active: TokenKey | None = None
        signing_active: dict[str, Signer] = {}
        infos: list[KeyInfo] = []
        unopened: list[str] = []
        refresh_at: float | None = None
        for doc in sorted(docs, key=lambda d: (int(d["created_at"]), str(d["kid"]))):
            kid = str(doc["kid"])
            until = _verify_until(doc, _lifetime(doc))
            verifies = until is None or now < until
            active = _is_active(doc)
            if verifies:
                material = self._open(doc)
                if material is None:
                    verifies = False
                    if active:
                        unopened.append(kid)
                    active = False
                else:
                    opened[kid] = material
                    if until is not None and (refresh_at is None or until < refresh_at):
                        refresh_at = until
                    if material.token is not None:
                        token_keys[kid] = material.token
                        if active:  # sorted by creation: the newest active key wins
                            token_active = material.token
                    if material.signer is not None:
                        signers[kid] = material.signer
                        if active:
                            signing_active[material.signer.key.alg] = material.signer
            infos.append(
                KeyInfo(
                    kid=kid,
                    kind=str(doc["kind"]),
                    alg=str(doc["alg"]),
                    created_at=int(doc["created_at"]),
                    rotated_out_at=doc.get("rotated_out_at"),
                    retired=bool(doc.get("retired")),
                    active=active,
                    verifies=verifies,
                )
            )
        active_kids = {s.key.kid for s in signing_active.values()}
        if token_active is not None:
            active_kids.add(token_active.kid)
        loaded = LoadedKeys(
            generation=gen,
            refresh_at=refresh_at,
            token_keys=token_keys,
            token_active=token_active,
            signers=signers,
            signing_active=signing_active,
            jwks=tuple(m.jwk for m in opened.values() if m.jwk is not None),
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
                for i in sorted(infos, key=lambda i: (i.kind, i.created_at, i.kid))
            ),
            unopened_active=tuple(unopened),
        )
        self._opened = opened
        if self._loaded is None or loaded.generation >= self._loaded.generation:
            self._loaded = loaded
        return loaded

    def _open(self, doc: Doc) -> _Opened | None:
        """Unseal a key record (reusing what an earlier load opened); ``None`` on failure."""
        kid = str(doc["kid"])
        sealed = str(doc["sealed"])
        hit = self._opened.get(kid)
        if hit is not None and hit.sealed == sealed:
            return hit
        try:
            secret = self._master.unseal(sealed, aad=_aad(doc))
        except SealError:
            log.warning("keyring: key %s cannot be opened with this node's master key", kid)
            return None
        if doc["kind"] == TOKEN_KIND:
            return _Opened(sealed, token=TokenKey(kid, secret))
        key = SigningKey(kid, str(doc["alg"]), secret, int(doc["created_at"]))
        try:
            signer = Signer(key, load_private_key(key))
            jwk = public_jwk(key)
        except ValueError:
            log.warning("keyring: signing key %s holds unusable material", kid)
            return None
        return _Opened(sealed, signer=signer, jwk=jwk)

    def token_key_now(self, kid: str) -> TokenKey | None:
        """Return the token key ``kid`` from memory (no I/O; call :meth:`current` first)."""
        loaded = self._loaded
        return None if loaded is None else loaded.token_keys.get(kid)

    async def active_token_key(self) -> TokenKey:
        """Return the key that seals new session tokens (made on first use)."""
        loaded = await self.current()
        if loaded.token_active is None:
            loaded = await self._ensure()
        if loaded.token_active is None:  # pragma: no cover - ensure made one
            raise InternalFailureError("No session-token key is available.")
        return loaded.token_active

    async def signer(self, alg: str) -> Signer:
        """Return the active signer of identity JWTs with ``alg`` (made on first use).

        Raises :class:`ValueError` for an algorithm outside ``SIGNING_ALGORITHMS``.
        """
        if alg not in SIGNING_ALGORITHMS:
            raise ValueError(f"signing algorithm must be one of {list(SIGNING_ALGORITHMS)}")
        loaded = await self.current()
        found = loaded.signing_active.get(alg)
        if found is None:
            found = (await self._ensure()).signing_active.get(alg)
        if found is None:  # pragma: no cover - ensure made one
            raise InternalFailureError(f"No {alg} signing key is available.")
        return found

    async def active_signing_key(self, alg: str) -> SigningKey:
        """Return the key that signs new identity JWTs with ``alg``."""
        return (await self.signer(alg)).key

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JSON Web Key Set of every signing key that still verifies."""
        loaded = await self.current()
        return {"keys": [dict(jwk) for jwk in loaded.jwks]}

    async def list_keys(self) -> list[KeyInfo]:
        """Return every key's metadata, read from the store now (never material)."""
        return list((await self._reload(force=True)).infos)

    # -- writing ---------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Create a token key and one signing key per algorithm where no active one exists.

        Idempotent, and safe when several nodes run it at once: writers serialize on the
        keyring head record, so exactly one set of keys comes to exist. Raises
        :class:`KeyringMismatchError` when an active key is sealed under another master key.
        """
        await self._ensure()

    async def _ensure(self) -> LoadedKeys:
        loaded = await self._reload(force=True)
        self._check_opened(loaded)
        missing: list[tuple[str, str]] = []
        if loaded.token_active is None:
            missing.append((TOKEN_KIND, TOKEN_ALG))
        missing += [(SIGNING_KIND, a) for a in SIGNING_ALGORITHMS if a not in loaded.signing_active]
        if not missing:
            return loaded
        fresh = self._new_keys(missing)

        async def fn(txn: Txn) -> None:
            head = await self._read_head(txn)
            docs = await self._scan_all()
            present = {(d["kind"], d["alg"]) for d in docs if _is_active(d)}
            for (kind, alg), doc in fresh.items():
                if (kind, alg) not in present:
                    txn.put(_prefix(kind) + doc["kid"], doc)
                    self._bump_head(txn, head)

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        return await self._reload(force=True)

    async def rotate(self) -> list[KeyInfo]:
        """Make new active keys (token and signing); older ones keep verifying a while.

        One atomic write: the previous active keys are rotated out, the new ones added, and
        records that stopped verifying more than :data:`KEY_RETENTION_SECONDS` ago pruned.
        Returns the new keys.
        """
        self._check_opened(await self._reload(force=True))
        wanted = [(TOKEN_KIND, TOKEN_ALG)] + [(SIGNING_KIND, a) for a in SIGNING_ALGORITHMS]
        fresh = self._new_keys(wanted)
        now = self._now()

        async def fn(txn: Txn) -> None:
            self._bump_head(txn, await self._read_head(txn))
            for doc in await self._scan_all():
                key = _prefix(doc["kind"]) + doc["kid"]
                until = _verify_until(doc, _lifetime(doc))
                if until is not None and until + KEY_RETENTION_SECONDS < now:
                    txn.delete(key)
                elif doc.get("rotated_out_at") is None:
                    doc["rotated_out_at"] = now
                    txn.put(key, doc)
            for (kind, _), doc in fresh.items():
                txn.put(_prefix(kind) + doc["kid"], doc)

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        kids = {doc["kid"] for doc in fresh.values()}
        loaded = await self._reload(force=True)
        return [i for i in loaded.infos if i.kid in kids]

    async def retire(self, kid: str) -> KeyInfo:
        """Stop key ``kid`` verifying at once (its tokens and JWTs fail from now on).

        Retiring a retired key changes nothing. Raises ``NoSuchEntityError`` for an unknown
        kid. Returns the key's new state.
        """
        now = self._now()

        async def fn(txn: Txn) -> None:
            head = await self._read_head(txn)
            for prefix in (TOKEN_PREFIX, SIGNING_PREFIX):
                doc = await txn.get(prefix + kid)
                if doc is None:
                    continue
                if not doc.get("retired"):
                    self._bump_head(txn, head)
                    doc["retired"] = True
                    if doc.get("rotated_out_at") is None:
                        doc["rotated_out_at"] = now
                    txn.put(prefix + kid, doc)
                return
            raise NoSuchEntityError(f"No key with id {kid}.")

        await transact(self._store, GLOBAL_NS, fn, on_commit=self._generations.observe)
        loaded = await self._reload(force=True)
        return next(i for i in loaded.infos if i.kid == kid)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_opened(loaded: LoadedKeys) -> None:
        # Adding keys next to ones this node cannot open would split the keyring in two.
        if loaded.unopened_active:
            raise KeyringMismatchError()

    @staticmethod
    async def _read_head(txn: Txn) -> Doc:
        # Read first in every keyring write: its version is what concurrent writers race on,
        # so the records scanned after it are current when the commit succeeds.
        return await txn.get(HEAD_KEY) or {"writes": 0}

    @staticmethod
    def _bump_head(txn: Txn, head: Doc) -> None:
        txn.put(HEAD_KEY, {"writes": int(head["writes"]) + 1})

    async def _scan_all(self) -> list[Doc]:
        return await scan(self._store, GLOBAL_NS, TOKEN_PREFIX) + await scan(
            self._store, GLOBAL_NS, SIGNING_PREFIX
        )

    def _new_keys(self, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Doc]:
        """Make and seal new keys (outside any transaction: RSA generation takes a moment)."""
        now = self._now()
        out: dict[tuple[str, str], Doc] = {}
        for kind, alg in wanted:
            material: bytes
            if kind == TOKEN_KIND:
                token = new_token_key(self._rng)
                kid, material = token.kid, token.secret
            else:
                signing = generate_signing_key(alg, now=now, rng=self._rng)
                kid, material = signing.kid, signing.private_pem
            doc: Doc = {"kid": kid, "kind": kind, "alg": alg, "created_at": now,
                        "rotated_out_at": None, "retired": False}  # fmt: skip
            doc["sealed"] = self._master.seal(material, aad=_aad(doc))
            out[(kind, alg)] = doc
        return out
