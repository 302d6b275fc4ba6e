"""Core layer, policy engine: statements indexed by action, so a decision skips the rest.

Most statements name a handful of exact actions (``s3:GetObject``) or one service's wildcard
(``s3:Get*``); a request for ``ec2:RunInstances`` cannot match them. An :class:`ActionIndex`
files every statement under its exact action names and its service prefixes, and keeps the few
that may match any service (``*``, ``*:Get*``, ``NotAction``) on a short list that is always
consulted. For a requested action it returns, in document order, exactly the statements whose
``Action``/``NotAction`` covers it; the answer is memoized per action spelling in a bounded LRU,
so repeated decisions for the same action cost one dict lookup.

:class:`PolicySet` bundles ``(policy_id, CompiledPolicy)`` pairs behind one such index; build it
once per principal and pass it wherever a sequence of pairs is accepted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar, overload

if TYPE_CHECKING:
    from broker.core.policy.compile import CompiledPolicy, CompiledStatement, MatchedStatement

ACTION_MEMO_SIZE = 256
"""How many distinct action spellings each index remembers (least recently used go first)."""

T = TypeVar("T")


class ActionIndex(Generic[T]):
    """Statements filed by the actions they can match; see the module docstring.

    Built from ``(statement, payload)`` pairs; :meth:`candidates` returns the payloads of the
    statements whose action element covers the action, in the order given. Safe to share
    between threads: the memo only ever holds complete answers.
    """

    __slots__ = ("_items", "_exact", "_services", "_always", "_memo", "_size")

    def __init__(
        self, entries: Iterable[tuple[CompiledStatement, T]], size: int = ACTION_MEMO_SIZE
    ) -> None:
        items: list[tuple[CompiledStatement, T]] = []
        exact: dict[str, list[int]] = {}
        services: dict[str, list[int]] = {}
        always: list[int] = []
        for statement, payload in entries:
            matcher = statement.actions
            if matcher is None:
                if statement.not_actions is None:
                    continue  # neither element: the statement covers no action
                position = len(items)
                items.append((statement, payload))
                always.append(position)
                continue
            position = len(items)
            items.append((statement, payload))
            if matcher.open:
                always.append(position)
                continue
            for name in matcher.exact:
                exact.setdefault(name, []).append(position)
            for service in matcher.services:
                services.setdefault(service, []).append(position)
        self._items = tuple(items)
        self._exact = {name: tuple(found) for name, found in exact.items()}
        self._services = {name: tuple(found) for name, found in services.items()}
        self._always = tuple(always)
        self._memo: OrderedDict[str, tuple[T, ...]] = OrderedDict()
        self._size = max(1, size)

    def __len__(self) -> int:
        """Number of statements that can match some action."""
        return len(self._items)

    def candidates(self, action: str) -> tuple[T, ...]:
        """Return the payloads of the statements whose action element covers ``action``.

        ``action`` is compared case-insensitively; each spelling is memoized as given.
        """
        memo = self._memo
        hit = memo.get(action)
        if hit is not None:
            try:
                memo.move_to_end(action)
            except KeyError:  # evicted by another thread in between: the answer still holds
                pass
            return hit
        found = self.lookup(action.lower())
        memo[action] = found
        if len(memo) > self._size:
            try:
                memo.popitem(last=False)
            except KeyError:  # pragma: no cover - emptied concurrently
                pass
        return found

    def lookup(self, action_lc: str) -> tuple[T, ...]:
        """Compute :meth:`candidates` for a lower-cased action without the memo."""
        positions = set(self._always)
        positions.update(self._exact.get(action_lc, ()))
        service, colon, _ = action_lc.partition(":")
        if colon:
            positions.update(self._services.get(service, ()))
        items = self._items
        out: list[T] = []
        for position in sorted(positions):
            statement, payload = items[position]
            if statement.action_matches(action_lc):
                out.append(payload)
        return tuple(out)


class PolicySet(Sequence[tuple[str, "CompiledPolicy"]]):
    """An immutable bundle of ``(policy_id, CompiledPolicy)`` pairs with one action index.

    It is a sequence of its pairs, so it goes wherever a sequence of pairs is accepted
    (``evaluate_request(identity=...)``, ``evaluate_statements``); the evaluators recognise it
    and look statements up by action instead of scanning every policy. Build it once per
    principal (and rebuild when its policies change) and share it between requests and threads.
    """

    __slots__ = ("_pairs", "_index")

    def __init__(
        self,
        policies: Iterable[tuple[str, CompiledPolicy]] = (),
        *,
        memo_size: int = ACTION_MEMO_SIZE,
    ) -> None:
        self._pairs = tuple((policy_id, compiled) for policy_id, compiled in policies)
        self._index: ActionIndex[tuple[CompiledStatement, MatchedStatement]] = ActionIndex(
            (
                (statement, (statement, statement.matched(policy_id)))
                for policy_id, compiled in self._pairs
                for statement in compiled.statements
            ),
            memo_size,
        )

    def candidates(self, action: str) -> tuple[tuple[CompiledStatement, MatchedStatement], ...]:
        """Return ``(statement, its MatchedStatement)`` for every statement covering ``action``.

        Policies in the order given, statements in document order.
        """
        return self._index.candidates(action)

    @property
    def policies(self) -> tuple[tuple[str, CompiledPolicy], ...]:
        """The ``(policy_id, CompiledPolicy)`` pairs, in the order given."""
        return self._pairs

    def __len__(self) -> int:
        return len(self._pairs)

    @overload
    def __getitem__(self, item: int) -> tuple[str, CompiledPolicy]: ...

    @overload
    def __getitem__(self, item: slice) -> Sequence[tuple[str, CompiledPolicy]]: ...

    def __getitem__(
        self, item: int | slice
    ) -> tuple[str, CompiledPolicy] | Sequence[tuple[str, CompiledPolicy]]:
        return self._pairs[item]

    def __iter__(self) -> Iterator[tuple[str, CompiledPolicy]]:
        return iter(self._pairs)

    def __repr__(self) -> str:
        return f"PolicySet({[policy_id for policy_id, _ in self._pairs]!r})"


__all__ = ["ACTION_MEMO_SIZE", "ActionIndex", "PolicySet"]
