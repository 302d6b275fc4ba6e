"""Service: issued sessions: listing, revocation, and the per-node revocation state.

Sessions are recorded by ``StsService`` (``session/<sid>`` and ``asia/<akid>`` in the
account that owns the credentials, expiring with them). Revoking one session writes
``revoked/<sid>`` (expiring with the session) and moves the account's generation, so every
node reloads the account's revoked set within the propagation time (Redis pub/sub, or polling
on SQLite). Revoking every session of a role issued before a time uses AWS's own pattern: an
inline deny policy ``AWSRevokeOlderSessions`` on ``aws:TokenIssueTime``.

Authentication of temporary credentials consults only the in-memory revoked set. When the
store cannot be reached the last known set keeps being used while it is younger than
``[revocation] max_staleness_seconds``; after that temporary credentials fail closed (503).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from broker import metrics
from broker.clock import Clock, iso8601
from broker.core.arn import parse_arn
from broker.core.tokens import SessionClaims
from broker.errors import NoSuchEntityError, UnavailableError, ValidationError
from broker.service.cache import Generations
from broker.service.txn import Doc, Txn, decode, read, scan, transact
from broker.store.base import Store, StoreUnavailable

REVOKE_OLDER_POLICY = "AWSRevokeOlderSessions"


def session_doc(session_id: str, stored: Doc) -> Doc:
    """Return a ``session/<sid>`` record as the API shows it: with its id and every field.

    The record leaves out what its key says and facts that are absent (see ``StsService``).
    """
    return {"source_ip": None, "source_identity": None, **stored, "sid": session_id}


@dataclass(frozen=True, slots=True)
class _Revoked:
    generation: int
    sids: frozenset[str]


class SessionService:
    """Lists and revokes sessions; answers "is this session revoked?" from memory."""

    def __init__(
        self,
        store: Store,
        generations: Generations,
        clock: Clock,
        max_staleness_seconds: float,
        fail_closed: bool = True,
    ) -> None:
        self._store = store
        self._generations = generations
        self._clock = clock
        self._max_staleness = max_staleness_seconds
        self._fail_closed = fail_closed
        self._revoked: dict[str, _Revoked] = {}

    # -- the hot path ------------------------------------------------------------------------

    async def check(self, claims: SessionClaims) -> bool:
        """Return True when the session is revoked; raise 503 once revocation state is stale."""
        account = claims.account_id
        state = self._revoked.get(account)
        gen = self._generations.current(account)
        if state is None or gen is None or state.generation != gen:
            try:
                state = await self._load(account)
            except StoreUnavailable:
                if state is None:
                    raise UnavailableError() from None
        stale = self._generations.staleness(self._clock.monotonic()) > self._max_staleness
        if stale and self._fail_closed:
            raise UnavailableError(
                "Revocation state could not be refreshed; temporary credentials are refused "
                "until the store is reachable again."
            )
        return claims.session_id in state.sids

    async def _load(self, account: str) -> _Revoked:
        gen = self._generations.current(account)
        if gen is None:
            gen = await self._store.generation(account)
        now = self._clock.now().timestamp()
        records = await self._store.scan(account, "revoked/")
        sids = frozenset(
            r.key.split("/", 1)[1] for r in records if r.expires_at is None or r.expires_at > now
        )
        self._generations.observe(account, gen)
        state = _Revoked(gen, sids)
        if len(self._revoked) > 100_000:
            self._revoked.clear()
        self._revoked[account] = state
        return state

    # -- listing -----------------------------------------------------------------------------

    async def list_sessions(self, account: str, role_arn: str | None = None) -> list[Doc]:
        """Return the account's live sessions (optionally of one role), newest first."""
        now = self._clock.now().timestamp()
        revoked = {d["sid"] for d in await scan(self._store, account, "revoked/")}
        out = []
        try:
            records = await self._store.scan(account, "session/")
        except StoreUnavailable:
            raise UnavailableError() from None
        for rec in records:
            doc = session_doc(rec.key.removeprefix("session/"), decode(rec.value))
            if doc["expires_at"] <= now:
                continue
            if role_arn is not None and doc["issuer"] != role_arn:
                continue
            doc["revoked"] = doc["sid"] in revoked
            out.append(doc)
        out.sort(key=lambda d: (-int(d["issued_at"]), str(d["sid"])))
        return out

    async def find_session(self, accounts: list[str], session_id: str) -> tuple[str, Doc]:
        """Find a live session by id among ``accounts``."""
        now = self._clock.now().timestamp()
        for account in accounts:
            doc = await read(self._store, account, f"session/{session_id}")
            if doc is not None and doc["expires_at"] > now:
                return account, session_doc(session_id, doc)
        raise NoSuchEntityError(f"No live session with id {session_id}.")

    # -- revocation --------------------------------------------------------------------------

    async def revoke_session(self, account: str, session_id: str) -> Doc:
        """Revoke one session: its credentials stop working on every node."""

        async def fn(txn: Txn) -> Doc:
            doc = await txn.get(f"session/{session_id}")
            if doc is None or doc["expires_at"] <= self._clock.now().timestamp():
                raise NoSuchEntityError(f"No live session with id {session_id}.")
            doc = session_doc(session_id, doc)
            txn.put(
                f"revoked/{session_id}",
                {"sid": session_id, "at": iso8601(self._clock.now())},
                expires_at=float(doc["expires_at"]),
            )
            return doc

        doc = await transact(self._store, account, fn, on_commit=self._generations.observe)
        metrics.session_revoked("session")
        await self._load(account)
        return doc

    async def revoke_role_sessions(self, role_arn: str, issued_before: datetime | None) -> str:
        """Deny every session of ``role_arn`` issued before ``issued_before`` (default now).

        Writes AWS's ``AWSRevokeOlderSessions`` inline policy on the role (replacing an older
        one), exactly as the AWS console does; returns the cut-off time.
        """
        arn = parse_arn(role_arn)
        if arn is None or arn.service != "iam" or not arn.resource.startswith("role/"):
            raise ValidationError(f"{role_arn} is not a role ARN")
        cutoff = iso8601((issued_before or self._clock.now()).astimezone(UTC))
        name = arn.resource.rsplit("/", 1)[1]
        document = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": ["*"],
                        "Resource": ["*"],
                        "Condition": {"DateLessThan": {"aws:TokenIssueTime": cutoff}},
                    }
                ],
            }
        )

        async def fn(txn: Txn) -> None:
            role = await txn.get(f"role/{name.lower()}")
            if role is None or role["arn"] != role_arn:
                raise NoSuchEntityError(f"The role with name {name} cannot be found.")
            inline: dict[str, str] = role["inline"]
            for existing in [k for k in inline if k.lower() == REVOKE_OLDER_POLICY.lower()]:
                del inline[existing]
            inline[REVOKE_OLDER_POLICY] = document
            txn.put(f"role/{name.lower()}", role)

        await transact(self._store, arn.account, fn, on_commit=self._generations.observe)
        metrics.session_revoked("role")
        return cutoff


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` or offset); naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"Invalid time: {text!r} (use ISO 8601)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
