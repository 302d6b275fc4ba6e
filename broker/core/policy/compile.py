"""Core layer, policy engine: turn a parsed :class:`Policy` into ready-to-run matchers.

Everything that does not depend on the request is done here, once per document: action
patterns are lower-cased and split into an exact-name set plus globs, resource entries become
field-by-field ARN matchers, principals are classified by form, and condition values are
converted to their operator's family. Each :class:`CompiledPolicy` also carries an
:class:`~broker.core.policy.index.ActionIndex` of its statements. Callers cache the
:class:`CompiledPolicy` (it is immutable and safe to share between requests and threads).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.core.policy.conditions import (
    VARIABLE_FAMILIES,
    CompiledCondition,
    compile_conditions,
    parse_operator,
)
from broker.core.policy.index import ActionIndex
from broker.core.policy.match import ARN_FIELDS, ActionMatcher, ArnPattern, split_arn
from broker.core.policy.model import ContextValue, Policy, Principal, PrincipalType, Statement
from broker.core.policy.variables import parse_template

_ACCOUNT_RE = re.compile(r"\d{12}")


class PrincipalForm(enum.Enum):
    """How a ``Principal`` entry names callers (spec §2.1, §4.4)."""

    EVERYONE = "everyone"
    ACCOUNT = "account"
    USER = "user"
    ROLE = "role"
    SESSION = "session"  # an assumed-role or federated-user session ARN
    SERVICE = "service"
    FEDERATED = "federated"
    OTHER = "other"  # any other AWS value (unique ids of deleted entities...): exact ARN only
    NOBODY = "nobody"  # CanonicalUser: S3 only, never matches here


@dataclass(frozen=True, slots=True)
class CompiledPrincipal:
    """One principal entry with its form; ``value`` is an account id, ARN or name."""

    form: PrincipalForm
    value: str


def compile_principal(principal: Principal) -> CompiledPrincipal:
    """Classify one principal entry."""
    kind, value = principal.type, principal.value
    if kind is PrincipalType.ANY or (kind is PrincipalType.AWS and value == "*"):
        return CompiledPrincipal(PrincipalForm.EVERYONE, "*")
    if kind is PrincipalType.SERVICE:
        return CompiledPrincipal(PrincipalForm.SERVICE, value.lower())
    if kind is PrincipalType.FEDERATED:
        return CompiledPrincipal(PrincipalForm.FEDERATED, value)
    if kind is PrincipalType.CANONICAL_USER:
        return CompiledPrincipal(PrincipalForm.NOBODY, value)
    if _ACCOUNT_RE.fullmatch(value):
        return CompiledPrincipal(PrincipalForm.ACCOUNT, value)
    fields = split_arn(value)
    if fields is not None and fields[0] == "arn":
        service, account, resource = fields[2], fields[4], fields[5]
        if service == "iam":
            if resource == "root":
                return CompiledPrincipal(PrincipalForm.ACCOUNT, account)
            if resource.startswith("user/"):
                return CompiledPrincipal(PrincipalForm.USER, value)
            if resource.startswith("role/"):
                return CompiledPrincipal(PrincipalForm.ROLE, value)
        if service == "sts" and resource.startswith(("assumed-role/", "federated-user/")):
            return CompiledPrincipal(PrincipalForm.SESSION, value)
    return CompiledPrincipal(PrincipalForm.OTHER, value)


@dataclass(frozen=True, slots=True)
class MatchedStatement:
    """An applicable statement: the policy it came from, its Sid, effect and position.

    ``index`` is the statement's place in its document (0-based). The ``start_*``/``end_*``
    fields locate the statement object in the source text, 1-based like the simulator's
    ``StartPosition``/``EndPosition``; they are 0 when the policy was not parsed from text.
    """

    policy_id: str
    sid: str | None
    effect: str
    index: int = 0
    start_line: int = 0
    start_column: int = 0
    end_line: int = 0
    end_column: int = 0


_MATCHED_CACHE_SIZE = 64
"""Per statement, how many policy ids get a reusable :class:`MatchedStatement`."""


class CompiledStatement:
    """One statement with its matchers.

    :meth:`action_matches`, :meth:`resource_matches` and :meth:`conditions_hold` check the
    parts that do not depend on principals; principal matching is the evaluator's job.
    """

    __slots__ = (
        "index",
        "sid",
        "deny",
        "effect",
        "actions",
        "not_actions",
        "resources",
        "not_resources",
        "any_resource",
        "principals",
        "not_principals",
        "conditions",
        "span",
        "unconditional",
        "_matched",
    )

    def __init__(self, index: int, statement: Statement, variables: bool) -> None:
        self.index = index
        self.sid = statement.sid
        self.effect = statement.effect
        self.deny = statement.is_deny
        self.span = statement.span
        self.actions = ActionMatcher(statement.actions) if statement.actions is not None else None
        self.not_actions = (
            ActionMatcher(statement.not_actions) if statement.not_actions is not None else None
        )
        self.resources = _patterns(statement.resources, variables)
        self.not_resources = _patterns(statement.not_resources, variables)
        self.any_resource = self.resources is not None and any(
            p.is_everything for p in self.resources
        )
        self.principals = _principals(statement.principals)
        self.not_principals = _principals(statement.not_principals)
        self.conditions: tuple[CompiledCondition, ...] = compile_conditions(
            statement.conditions or (), variables
        )
        # Applies to every request its action element covers: the evaluator skips all checks.
        self.unconditional = (
            self.any_resource
            and not self.conditions
            and self.principals is None
            and self.not_principals is None
        )
        self._matched: dict[str, MatchedStatement] = {}

    def matched(self, policy_id: str) -> MatchedStatement:
        """Return the :class:`MatchedStatement` naming this statement of ``policy_id``."""
        found = self._matched.get(policy_id)
        if found is not None:
            return found
        span = self.span
        if span is None:
            found = MatchedStatement(policy_id, self.sid, self.effect, self.index)
        else:
            found = MatchedStatement(
                policy_id,
                self.sid,
                self.effect,
                self.index,
                span.start_line,
                span.start_column,
                span.end_line,
                span.end_column,
            )
        if len(self._matched) < _MATCHED_CACHE_SIZE:
            self._matched[policy_id] = found
        return found

    def action_matches(self, action_lc: str) -> bool:
        """Return whether ``Action``/``NotAction`` covers the lower-cased action (§4.1)."""
        if self.actions is not None:
            return self.actions.matches(action_lc)
        if self.not_actions is not None:
            return not self.not_actions.matches(action_lc)
        return False

    def resource_matches(
        self,
        fields: tuple[str, ...] | None,
        keys: Mapping[str, ContextValue],
        unspecified: bool = False,
    ) -> bool:
        """Return whether ``Resource``/``NotResource`` covers the request resource (§4.2).

        ``fields`` is the request resource split by :func:`split_arn` (``None`` for ``*``).
        With ``unspecified`` (the simulator's default resource) the §4.2 simulator rules
        apply. A statement with neither element (trust policies) covers its own resource.
        """
        neither = self.resources is None and self.not_resources is None
        if unspecified or fields is None or neither:
            return self._resource_special(fields, keys, unspecified)
        return self.resource_matches_split(fields[: ARN_FIELDS - 1], fields[ARN_FIELDS - 1], keys)

    def resource_matches_split(
        self, head: tuple[str, ...], tail: str, keys: Mapping[str, ContextValue]
    ) -> bool:
        """Return :meth:`resource_matches` for an ARN request given as two parts.

        ``head`` is its first five fields and ``tail`` its resource part: the evaluator splits
        each request once, not once per statement.
        """
        resources = self.resources
        if resources is not None:
            if self.any_resource:
                return True
            for pattern in resources:
                if pattern.matches_split(head, tail, keys):
                    return True
            return False
        not_resources = self.not_resources
        if not_resources is not None:
            for pattern in not_resources:
                if pattern.matches_split(head, tail, keys):
                    return False
        return True

    def _resource_special(
        self,
        fields: tuple[str, ...] | None,
        keys: Mapping[str, ContextValue],
        unspecified: bool,
    ) -> bool:
        if self.resources is not None:
            if self.any_resource:
                return True
            if unspecified:
                return not self.deny
            return any(p.matches(fields, keys) for p in self.resources)
        if self.not_resources is not None:
            if unspecified:
                return not any(p.is_everything for p in self.not_resources)
            return not any(p.matches(fields, keys) for p in self.not_resources)
        return True

    def conditions_hold(
        self, keys: Mapping[str, ContextValue], missing: list[str] | None = None
    ) -> bool:
        """Return whether every condition holds (AND over operators and keys)."""
        for condition in self.conditions:
            if not condition.evaluate(keys, missing):
                return False
        return True

    def __repr__(self) -> str:
        return f"CompiledStatement(index={self.index}, sid={self.sid!r}, effect={self.effect})"


def _patterns(entries: tuple[str, ...] | None, variables: bool) -> tuple[ArnPattern, ...] | None:
    if entries is None:
        return None
    return tuple(ArnPattern(parse_template(e, variables)) for e in entries)


def _principals(entries: tuple[Principal, ...] | None) -> tuple[CompiledPrincipal, ...] | None:
    if entries is None:
        return None
    return tuple(compile_principal(p) for p in entries)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A compiled document: its statements in document order, and the source model.

    ``index`` files the statements by action (:meth:`candidates`); it is built with the
    policy and takes no part in equality.
    """

    statements: tuple[CompiledStatement, ...]
    source: Policy
    index: ActionIndex[CompiledStatement] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = ActionIndex((statement, statement) for statement in self.statements)
        object.__setattr__(self, "index", index)

    def candidates(self, action: str) -> tuple[CompiledStatement, ...]:
        """Return the statements whose ``Action``/``NotAction`` covers ``action``, in order."""
        return self.index.candidates(action)


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Build the matchers of every statement of ``policy`` (pure; cache the result)."""
    variables = policy.variables_enabled
    statements = tuple(CompiledStatement(i, s, variables) for i, s in enumerate(policy.statements))
    return CompiledPolicy(statements, policy)


def referenced_keys(policy: Policy) -> tuple[str, ...]:
    """Return the condition keys and variable keys a policy uses, each once, in order.

    Keys compare case-insensitively; the first spelling met is kept (for
    ``GetContextKeysFor*Policy``).
    """
    seen: dict[str, str] = {}
    variables = policy.variables_enabled

    def note(key: str) -> None:
        seen.setdefault(key.lower(), key)

    def note_vars(text: str) -> None:
        for var in parse_template(text, variables).variables:
            note(var.source[2:-1].split(", '", 1)[0])

    for statement in policy.statements:
        for entry in (statement.resources or ()) + (statement.not_resources or ()):
            note_vars(entry)
        for cond in statement.conditions or ():
            note(cond.key)
            spec = parse_operator(cond.operator)
            if spec is not None and spec.family in VARIABLE_FAMILIES:
                for value in cond.values:
                    note_vars(value)
    return tuple(seen.values())


__all__ = [
    "CompiledPolicy",
    "CompiledPrincipal",
    "CompiledStatement",
    "MatchedStatement",
    "PrincipalForm",
    "compile_policy",
    "compile_principal",
    "referenced_keys",
]
