"""Core layer, policy engine: policy checks in the manner of IAM Access Analyzer (pure).

:func:`validate_policy` reads a policy document's text and returns every
:class:`PolicyFinding` it has, each with Access Analyzer's finding type (``ERROR``,
``SECURITY_WARNING``, ``WARNING``, ``SUGGESTION``), issue code, details text, learn-more link and
the locations in the text it concerns: a path through the JSON value (``PathElement`` of the
``ValidatePolicy`` API: ``{"value": key}`` steps into a member, ``{"index": i}`` into an array,
``{"key": key}`` names the member's key itself) and a span (line from 1, column and offset from
0, in characters; the end is exclusive).

Grammar problems come from :func:`broker.core.policy.validate.check_document` (the same rules
IAM applies when a policy is stored) and are translated to Access Analyzer's issue codes. On
top of them: unknown actions of the services the broker serves (``iam``, ``sts``,
``access-analyzer``; the names are :data:`SERVICE_ACTIONS`, taken from botocore's service models
plus the actions that exist only in policies), ``iam:PassRole`` on every role, ``Allow`` with
``NotAction``, wildcard principals in resource policies and role trust policies, statements made
redundant by another one, and a missing or outdated ``Version``.

Issue codes are AWS's where Access Analyzer has the check. The broker adds four of its own,
listed in :data:`BROKER_CODES`. The function never raises for any input string.

See https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html
"""

from __future__ import annotations

import bisect
import difflib
import enum
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from broker.core.policy.match import Glob
from broker.core.policy.model import VERSION_2008, VERSION_2012, PolicyKind
from broker.core.policy.parse import decode_json
from broker.core.policy.validate import MAX_DEPTH, MAX_WILDCARDS, check_depth, check_document
from broker.errors import Finding, MalformedPolicyError


class FindingType(enum.Enum):
    """How much a finding matters (``ValidatePolicyFindingType``)."""

    ERROR = "ERROR"
    SECURITY_WARNING = "SECURITY_WARNING"
    WARNING = "WARNING"
    SUGGESTION = "SUGGESTION"


class PolicyType(enum.Enum):
    """The ``policyType`` of a ``ValidatePolicy`` request."""

    IDENTITY_POLICY = "IDENTITY_POLICY"
    RESOURCE_POLICY = "RESOURCE_POLICY"
    SERVICE_CONTROL_POLICY = "SERVICE_CONTROL_POLICY"
    RESOURCE_CONTROL_POLICY = "RESOURCE_CONTROL_POLICY"


ROLE_TRUST_RESOURCE_TYPE = "AWS::IAM::AssumeRolePolicyDocument"
"""The ``validatePolicyResourceType`` that makes a resource policy a role trust policy."""

RESOURCE_TYPES = (
    "AWS::S3::Bucket",
    "AWS::S3::AccessPoint",
    "AWS::S3::MultiRegionAccessPoint",
    "AWS::S3ObjectLambda::AccessPoint",
    ROLE_TRUST_RESOURCE_TYPE,
    "AWS::DynamoDB::Table",
)
"""Every ``ValidatePolicyResourceType`` the API model allows."""

MAX_REDUNDANCY_STATEMENTS = 200
"""Statements beyond this count are not compared pairwise for redundancy (keeps it linear-ish)."""

PASSED_TO_SERVICE_KEY = "iam:passedtoservice"

_DOC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
_CHECKS = _DOC + "access-analyzer-reference-policy-checks.html"
_ANCHOR_KIND = {
    FindingType.ERROR: "error",
    FindingType.SECURITY_WARNING: "security-warning",
    FindingType.WARNING: "general-warning",
    FindingType.SUGGESTION: "suggestion",
}

E, S, W, G = (
    FindingType.ERROR,
    FindingType.SECURITY_WARNING,
    FindingType.WARNING,
    FindingType.SUGGESTION,
)

CATALOGUE: dict[str, tuple[FindingType, str]] = {
    "JSON_SYNTAX_ERROR": (E, "Fix the JSON syntax error."),
    "JSON_SYNTAX_ERROR_AT": (
        E,
        "Fix the JSON syntax error at index {index} line {line} column {column}.",
    ),
    "DATA_TYPE_MISMATCH": (E, "The text does not match the expected JSON data type {data_type}."),
    "INVALID_POLICY_ELEMENT": (E, "The policy element {element} is not valid."),
    "MISSING_STATEMENT": (E, "Add a statement to the policy"),
    "MISSING_EFFECT": (
        E,
        "Add an Effect element to the policy statement with a value of Allow or Deny.",
    ),
    "INVALID_EFFECT": (E, "The effect {effect} is not valid. Use Allow or Deny."),
    "UNSUPPORTED_ELEMENT_COMBINATION": (
        E,
        "The policy elements {element1} and {element2} can not be used in the same statement. "
        "Remove one of these elements.",
    ),
    "INVALID_CONDITION_OPERATOR": (
        E,
        "The condition operator {operator} is not valid. Use a valid condition operator.",
    ),
    "INVALID_VERSION": (
        E,
        "The version {version} is not valid. Use one of the following versions: "
        f"{VERSION_2012}, {VERSION_2008}",
    ),
    "INVALID_ARN_PREFIX": (E, "Add the required prefix (arn) to the resource ARN."),
    "MISSING_ARN_FIELD": (
        E,
        "Resource ARNs must include at least 6 fields in the following structure: "
        "arn:partition:service:region:account:resource",
    ),
    "INVALID_PARTITION": (
        E,
        "The resource ARN for the service {service} does not support the partition "
        "{partition}. Use the supported values: aws, aws-cn, aws-us-gov",
    ),
    "ARN_REGION_NOT_ALLOWED": (
        E,
        "The service {service} does not support specifying a Region in the resource ARN.",
    ),
    "INVALID_ARN_RESOURCE": (
        E,
        "Resource ARN does not match the expected ARN format. "
        "Update the resource portion of the ARN.",
    ),
    "UNIQUE_SIDS_REQUIRED": (
        E,
        "Duplicate statement IDs are not supported for this policy type. Update the Sid value.",
    ),
    "UNIQUE_SIDS_RECOMMENDED": (
        W,
        "We recommend that you use statement IDs that are unique to your policy. "
        "Update the Sid value.",
    ),
    "UNSUPPORTED_SID": (
        E,
        "Update the characters in the Sid element to use one of the following character "
        "types: [a-z, A-Z, 0-9]",
    ),
    "MISSING_ACTION": (E, "Add an Action or NotAction element to the policy statement."),
    "EMPTY_ARRAY_ACTION": (
        G,
        "This statement includes no actions and does not affect the policy. Specify actions.",
    ),
    "MISSING_RESOURCE": (E, "Add a Resource or NotResource element to the policy statement."),
    "EMPTY_ARRAY_RESOURCE": (
        G,
        "This statement includes no resources and does not affect the policy. Specify resources.",
    ),
    "INVALID_ACTION": (E, "The action {action} does not exist.{hint}"),
    "INVALID_CONDITION_KEY_FORMAT": (
        E,
        "The condition key format is not valid. Use the format service:keyname.",
    ),
    "UNSUPPORTED_PRINCIPAL": (
        E,
        "The policy type {policy_type} does not support the Principal element. "
        "Remove the Principal element.",
    ),
    "MISSING_PRINCIPAL": (E, "Add a Principal element to the policy statement."),
    "INVALID_PRINCIPAL_KEY": (E, "The principal key {key} is not valid."),
    "INVALID_PRINCIPAL_FORMAT": (
        E,
        "The Principal element contents are not valid. "
        "Specify a key-value pair in the Principal element.",
    ),
    "UNSUPPORTED_WILDCARD_IN_PRINCIPAL": (
        E,
        "Wildcards (*, ?) are not supported with the principal key {key}. "
        "Replace the wildcard with a valid principal value.",
    ),
    "ROLE_TRUST_POLICY_SYNTAX_ERROR_NOTPRINCIPAL": (
        E,
        "Role trust policies do not support NotPrincipal. "
        "Update the policy to use a Principal element instead.",
    ),
    "ROLE_TRUST_POLICY_SYNTAX_ERROR_RESOURCE": (
        E,
        "Role trust policies apply to the role that they are attached to. You cannot specify "
        "a resource. Remove the Resource or NotResource element.",
    ),
    "ROLE_TRUST_POLICY_UNSUPPORTED_WILDCARD_IN_PRINCIPAL": (
        E,
        '"Principal:" "*" is not supported in the principal element of a role trust policy. '
        "Replace the wildcard with a valid principal value.",
    ),
    "UNSUPPORTED_ACTION_IN_POLICY": (
        E,
        "The action {action} is not supported for the resource-based policy attached to the "
        "resource type {resource_type}.",
    ),
    "SCP_SYNTAX_ERROR_PRINCIPAL": (
        E,
        "SCPs do not support specifying principals. Remove the Principal or NotPrincipal element.",
    ),
    "SCP_SYNTAX_ERROR_NOTRESOURCE": (
        E,
        "SCPs do not support the NotResource element. Update the policy to use Resource instead.",
    ),
    "SCP_SYNTAX_ERROR_ALLOW_CONDITION": (
        E,
        "SCPs do not support the Condition element with effect Allow. "
        "Update the element Condition or the effect.",
    ),
    "SCP_SYNTAX_ERROR_ALLOW_NOTACTION": (
        E,
        "SCPs do not support NotAction with effect Allow. "
        "Update the element NotAction or the effect.",
    ),
    "SCP_SYNTAX_ERROR_ACTION_WILDCARD": (
        E,
        "SCP actions can include wildcards (*) only at the end of a string. Update {action}.",
    ),
    "VARIABLE_UNSUPPORTED_IN_VERSION": (
        E,
        "To include variables in your policy, use the policy version 2012-10-17 or later.",
    ),
    "TYPE_MISMATCH_DATE": (
        W,
        "The date condition operator is used with an invalid value. Specify a valid date "
        "using YYYY-MM-DD or other ISO 8601 date/time format.",
    ),
    "MISSING_VERSION": (
        W,
        "We recommend that you specify the Version element to help you with debugging "
        "permission issues.",
    ),
    "ALLOW_WITH_NOT_PRINCIPAL": (
        S,
        "Using Allow with NotPrincipal can be overly permissive. "
        "We recommend that you use Principal instead.",
    ),
    "PASS_ROLE_WITH_STAR_IN_RESOURCE": (
        S,
        "Using the iam:PassRole action with wildcards (*) in the resource can be overly "
        "permissive because it allows iam:PassRole permissions on multiple resources. We "
        "recommend that you specify resource ARNs or add the iam:PassedToService condition "
        "key to your statement.",
    ),
    "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE": (
        S,
        "Using wildcards (*) in the action and the resource can be overly permissive because "
        "it allows iam:PassRole permissions on all resources. We recommend that you specify "
        "resource ARNs or add the iam:PassedToService condition key to your statement.",
    ),
    "PASS_ROLE_WITH_STAR_IN_RESOURCE_AND_NOT_ACTION": (
        S,
        "Using a resource with wildcards (*) and NotAction can be overly permissive because "
        "it allows iam:PassRole permissions on all resources. We recommend that you specify "
        "resource ARNs or add the iam:PassedToService condition key to your statement.",
    ),
    "PASS_ROLE_WITH_NOT_RESOURCE": (
        S,
        "Using the iam:PassRole action with NotResource can be overly permissive because it "
        "can allow iam:PassRole permissions on multiple resources. We recommend that you "
        "specify resource ARNs instead.",
    ),
    "PASS_ROLE_WITH_STAR_IN_ACTION_AND_NOT_RESOURCE": (
        S,
        "Using an action with a wildcard (*) and NotResource can be overly permissive because "
        "it can allow iam:PassRole permissions on multiple resources. We recommend that you "
        "specify resource ARNs instead.",
    ),
    "PASS_ROLE_WITH_NOT_ACTION_AND_NOT_RESOURCE": (
        S,
        "Using NotAction with NotResource can be overly permissive because it can allow "
        "iam:PassRole permissions on multiple resources. We recommend that you specify "
        "resource ARNs instead.",
    ),
    "REDUNDANT_STATEMENT": (
        G,
        "The statements are redundant because they provide identical permissions. "
        "Update the policy to remove the redundant statement.",
    ),
    # -- the broker's own checks (BROKER_CODES) --
    "ALLOW_WITH_NOT_ACTION": (
        W,
        "Using Allow with NotAction allows every action that is not listed, including actions "
        "of services added later, and can be overly permissive. We recommend that you list "
        "the allowed actions with Action instead.",
    ),
    "ALLOW_WITH_WILDCARD_PRINCIPAL": (
        S,
        'Using Allow with the principal "*" and no condition grants access to anyone, '
        "including anonymous callers and every other account. We recommend that you name the "
        "principals or add a condition such as aws:PrincipalOrgID or aws:SourceAccount.",
    ),
    "OUTDATED_VERSION": (
        W,
        f"The version {VERSION_2008} does not support policy variables and newer features. "
        f"We recommend that you use the version {VERSION_2012}.",
    ),
    "TOO_MANY_WILDCARDS": (
        E,
        "A pattern in the policy has more than {limit} wildcard characters. "
        "Reduce the wildcards in this pattern.",
    ),
}
"""Every check: issue code -> (finding type, details template)."""

BROKER_CODES = frozenset(
    {
        "ALLOW_WITH_NOT_ACTION",
        "ALLOW_WITH_WILDCARD_PRINCIPAL",
        "OUTDATED_VERSION",
        "TOO_MANY_WILDCARDS",
    }
)
"""Issue codes of checks Access Analyzer does not have."""

_BROKER_LINKS = {
    "ALLOW_WITH_NOT_ACTION": _DOC + "reference_policies_elements_notaction.html",
    "ALLOW_WITH_WILDCARD_PRINCIPAL": _DOC + "reference_policies_elements_principal.html",
    "OUTDATED_VERSION": _DOC + "reference_policies_elements_version.html",
    "TOO_MANY_WILDCARDS": _DOC + "reference_iam-quotas.html",
}


def learn_more_link(code: str) -> str:
    """Return the documentation address of issue ``code``."""
    if code in _BROKER_LINKS:
        return _BROKER_LINKS[code]
    ftype = CATALOGUE[code][0]
    slug = code.removesuffix("_AT").lower().replace("_", "-")
    return f"{_CHECKS}#access-analyzer-reference-policy-checks-{_ANCHOR_KIND[ftype]}-{slug}"


# -- result values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the text: line from 1, column and offset from 0 (characters)."""

    line: int
    column: int
    offset: int


@dataclass(frozen=True, slots=True)
class Span:
    """A range of the text; ``end`` is exclusive."""

    start: Position
    end: Position


@dataclass(frozen=True, slots=True)
class PathElement:
    """One step of a location path; exactly one of the fields is set."""

    index: int | None = None
    key: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Location:
    """A path through the JSON value and the span of text it names."""

    path: tuple[PathElement, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    """One finding of :func:`validate_policy`."""

    finding_type: FindingType
    issue_code: str
    details: str
    learn_more_link: str
    locations: tuple[Location, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        """The finding as ``ValidatePolicyFinding`` (the API's member names)."""
        return {
            "findingDetails": self.details,
            "findingType": self.finding_type.value,
            "issueCode": self.issue_code,
            "learnMoreLink": self.learn_more_link,
            "locations": [_location_json(loc) for loc in self.locations],
        }


def _position_json(pos: Position) -> dict[str, object]:
    return {"line": pos.line, "column": pos.column, "offset": pos.offset}


def _location_json(loc: Location) -> dict[str, object]:
    path: list[dict[str, object]] = []
    for el in loc.path:
        if el.index is not None:
            path.append({"index": el.index})
        elif el.key is not None:
            path.append({"key": el.key})
        else:
            path.append({"value": el.value})
    return {
        "path": path,
        "span": {"start": _position_json(loc.span.start), "end": _position_json(loc.span.end)},
    }


# -- where JSON values sit in the text -------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SCALARS = json.JSONDecoder()


@dataclass(slots=True)
class _Node:
    """A JSON value's span, with its members (object) or items (array)."""

    start: int
    end: int
    members: dict[str, tuple[int, int, _Node]] | None = None
    items: list[_Node] | None = None


class _Tree:
    """Spans of every value of a document that decoded strictly (bounded depth)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _ws(self) -> str:
        match = _WS.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return self.text[self.pos : self.pos + 1]

    def value(self, depth: int) -> _Node:
        """Read the value at the cursor."""
        if depth > MAX_DEPTH + 1:
            raise ValueError("too deep")
        first = self._ws()
        start = self.pos
        if first == "{":
            self.pos += 1
            members: dict[str, tuple[int, int, _Node]] = {}
            if self._ws() == "}":
                self.pos += 1
                return _Node(start, self.pos, members=members)
            while True:
                self._ws()
                key_start = self.pos
                key, self.pos = _SCALARS.raw_decode(self.text, self.pos)
                key_end = self.pos
                if self._ws() != ":":
                    raise ValueError("':' expected")
                self.pos += 1
                members[str(key)] = (key_start, key_end, self.value(depth + 1))
                nxt = self._ws()
                self.pos += 1
                if nxt == "}":
                    return _Node(start, self.pos, members=members)
                if nxt != ",":
                    raise ValueError("',' expected")
        if first == "[":
            self.pos += 1
            items: list[_Node] = []
            if self._ws() == "]":
                self.pos += 1
                return _Node(start, self.pos, items=items)
            while True:
                items.append(self.value(depth + 1))
                nxt = self._ws()
                self.pos += 1
                if nxt == "]":
                    return _Node(start, self.pos, items=items)
                if nxt != ",":
                    raise ValueError("',' expected")
        _, self.pos = _SCALARS.raw_decode(self.text, self.pos)
        return _Node(start, self.pos)


def _build_tree(text: str) -> _Node | None:
    try:
        return _Tree(text).value(1)
    except (ValueError, IndexError, RecursionError):
        return None


class _Lines:
    """Offset -> (line, column) for one text."""

    def __init__(self, text: str) -> None:
        self.size = len(text)
        self.starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, self.size))
        line = bisect.bisect_right(self.starts, offset) - 1
        return Position(line + 1, offset - self.starts[line], offset)

    def span(self, start: int, end: int) -> Span:
        return Span(self.position(start), self.position(end))


Step = tuple[str, str | int]
"""One step into a value: ``("value", key)`` or ``("index", i)``."""


# -- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    text: str
    doc: object
    lines: _Lines
    tree: _Node | None
    ptype: PolicyType
    kind: PolicyKind
    resource_type: str | None
    out: list[PolicyFinding]

    def locate(self, steps: Sequence[Step], *, at_key: bool = False) -> Location:
        """The location of ``steps`` (``at_key``: the last member's key, not its value)."""
        path: list[PathElement] = []
        node = self.tree
        span = (0, len(self.text))
        if node is not None:
            span = (node.start, node.end)
        for i, (kind, ref) in enumerate(steps):
            last = i == len(steps) - 1
            if kind == "index":
                assert isinstance(ref, int)
                path.append(PathElement(index=ref))
                if node is not None and node.items is not None and 0 <= ref < len(node.items):
                    node = node.items[ref]
                    span = (node.start, node.end)
                else:
                    node = None
            else:
                name = str(ref)
                path.append(PathElement(key=name) if at_key and last else PathElement(value=name))
                member = node.members.get(name) if node is not None and node.members else None
                if member is None:
                    node = None
                    continue
                key_start, key_end, child = member
                if at_key and last:
                    span = (key_start, key_end)
                else:
                    node = child
                    span = (child.start, child.end)
        return Location(tuple(path), self.lines.span(*span))

    def add(
        self,
        code: str,
        locations: Sequence[Location],
        *,
        ftype: FindingType | None = None,
        **fields: object,
    ) -> None:
        """Record one finding of ``code``."""
        default_type, template = CATALOGUE[code]
        details = template.format(**fields) if fields else template
        issue = code.removesuffix("_AT")
        self.out.append(
            PolicyFinding(
                ftype or default_type, issue, details, learn_more_link(code), tuple(locations)
            )
        )


def validate_policy(
    text: str,
    policy_type: PolicyType = PolicyType.IDENTITY_POLICY,
    resource_type: str | None = None,
) -> list[PolicyFinding]:
    """Return every finding for the policy document ``text`` of ``policy_type``.

    ``resource_type`` is the ``validatePolicyResourceType`` (only meaningful for resource
    policies; :data:`ROLE_TRUST_RESOURCE_TYPE` applies the role trust policy rules). Findings
    come in document order (by the start of their first location). Never raises.
    """
    lines = _Lines(text)
    kind = _kind(policy_type, resource_type)
    try:
        doc = decode_json(text)
    except MalformedPolicyError as exc:
        return [_syntax_finding(text, lines, exc)]
    tree = _build_tree(text) if check_depth(doc) else None
    run = _Run(text, doc, lines, tree, policy_type, kind, resource_type, [])
    try:
        _grammar(run, check_document(doc, kind))
        if isinstance(doc, dict) and check_depth(doc):
            _semantics(run, doc)
    except RecursionError:  # pragma: no cover - depth is bounded before any walk
        pass
    return sorted(
        run.out,
        key=lambda f: (f.locations[0].span.start.offset if f.locations else 0, f.issue_code),
    )


def has_blocking(findings: Sequence[PolicyFinding]) -> bool:
    """Whether any finding is an ``ERROR`` or a ``SECURITY_WARNING``."""
    return any(
        f.finding_type in (FindingType.ERROR, FindingType.SECURITY_WARNING) for f in findings
    )


def _kind(policy_type: PolicyType, resource_type: str | None) -> PolicyKind:
    if policy_type in (PolicyType.RESOURCE_POLICY, PolicyType.RESOURCE_CONTROL_POLICY):
        if resource_type == ROLE_TRUST_RESOURCE_TYPE:
            return PolicyKind.TRUST
        return PolicyKind.RESOURCE
    return PolicyKind.IDENTITY


def _syntax_finding(text: str, lines: _Lines, exc: MalformedPolicyError) -> PolicyFinding:
    cause = exc.__cause__
    code, _ = CATALOGUE["JSON_SYNTAX_ERROR"]
    if isinstance(cause, json.JSONDecodeError):
        pos = lines.position(cause.pos)
        span = Span(pos, lines.position(cause.pos + 1))
        _, template = CATALOGUE["JSON_SYNTAX_ERROR_AT"]
        details = template.format(index=pos.offset, line=pos.line, column=pos.column)
        return PolicyFinding(
            FindingType.ERROR,
            "JSON_SYNTAX_ERROR",
            details,
            learn_more_link("JSON_SYNTAX_ERROR"),
            (Location((), span),),
        )
    _, template = CATALOGUE["JSON_SYNTAX_ERROR"]
    return PolicyFinding(
        FindingType.ERROR,
        "JSON_SYNTAX_ERROR",
        template,
        learn_more_link("JSON_SYNTAX_ERROR"),
        (Location((), lines.span(0, len(text))),),
    )


# -- grammar findings (translated from broker.core.policy.validate) ---------------------------


def _steps(doc: object, path: str) -> list[Step]:
    """Turn a validator path (``$.Statement[0].Action[1]``) into steps, resolving keys that
    contain ``.`` or ``[`` against the document itself."""
    steps: list[Step] = []
    rest = path[1:] if path.startswith("$") else path
    current: object = doc
    while rest:
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0 or not rest[1:close].isdigit():
                break
            index = int(rest[1:close])
            steps.append(("index", index))
            rest = rest[close + 1 :]
            current = current[index] if isinstance(current, list) and index < len(current) else None
        elif rest.startswith("."):
            body = rest[1:]
            name = None
            if isinstance(current, dict):
                for key in sorted(
                    (k for k in current if isinstance(k, str)), key=len, reverse=True
                ):
                    tail = body[len(key) :]
                    if body.startswith(key) and (not tail or tail[0] in ".["):
                        name = key
                        break
            if name is None:
                cut = re.search(r"[.\[]", body)
                name = body[: cut.start()] if cut else body
            steps.append(("value", name))
            rest = body[len(name) :]
            current = current.get(name) if isinstance(current, dict) else None
        else:
            break
    return steps


def _value_at(doc: object, steps: Sequence[Step]) -> object:
    current = doc
    for kind, ref in steps:
        if kind == "index" and isinstance(current, list) and isinstance(ref, int):
            current = current[ref] if 0 <= ref < len(current) else None
        elif kind == "value" and isinstance(current, dict):
            current = current.get(ref)
        else:
            return None
    return current


_EXPECTED_TYPE = {
    "Version": "string",
    "Id": "string",
    "Sid": "string",
    "Effect": "string",
    "Statement": "array",
    "Condition": "object",
    "Principal": "object",
    "NotPrincipal": "object",
}


def _expected_type(steps: Sequence[Step]) -> str:
    if not steps:
        return "object"
    kind, ref = steps[-1]
    if kind == "index":
        parent = steps[-2][1] if len(steps) > 1 else ""
        return "object" if parent == "Statement" else "string"
    return _EXPECTED_TYPE.get(str(ref), "string")


def _grammar(run: _Run, findings: list[Finding]) -> None:
    for found in findings:
        steps = _steps(run.doc, found.path)
        _translate(run, found.code, steps)


def _translate(run: _Run, code: str, steps: list[Step]) -> None:
    doc = run.doc
    here = [run.locate(steps)]
    value = _value_at(doc, steps)
    last = str(steps[-1][1]) if steps else ""
    match code:
        case "syntax.json" | "syntax.duplicate-key" | "syntax.too-deep":
            run.add("JSON_SYNTAX_ERROR", here)
        case "syntax.not-object":
            run.add("DATA_TYPE_MISMATCH", here, data_type="object")
        case "syntax.type":
            run.add("DATA_TYPE_MISMATCH", here, data_type=_expected_type(steps))
        case "syntax.unknown-key":
            run.add("INVALID_POLICY_ELEMENT", [run.locate(steps, at_key=True)], element=last)
        case "syntax.missing-statement" | "syntax.empty-statement":
            run.add("MISSING_STATEMENT", here)
        case "syntax.missing-effect":
            run.add("MISSING_EFFECT", here)
        case "syntax.bad-effect" | "legacy.effect-case":
            run.add("INVALID_EFFECT", here, effect=value)
        case "syntax.both-action" | "syntax.both-resource" | "syntax.both-principal":
            name = code.rsplit("-", 1)[1].capitalize()
            run.add(
                "UNSUPPORTED_ELEMENT_COMBINATION",
                [run.locate([*steps, ("value", f"Not{name}")], at_key=True)],
                element1=name,
                element2=f"Not{name}",
            )
        case "syntax.unknown-operator":
            run.add("INVALID_CONDITION_OPERATOR", [run.locate(steps, at_key=True)], operator=last)
        case "syntax.bad-version":
            run.add("INVALID_VERSION", here, version=value)
        case "version.required":
            run.add("MISSING_VERSION", here)
        case "legacy.date":
            run.add("TYPE_MISMATCH_DATE", here)
        case "legacy.resource" | "resource.vendor":
            run.add("MISSING_ARN_FIELD", here)
        case "resource.format":
            text = value if isinstance(value, str) else ""
            run.add(
                "INVALID_ARN_PREFIX" if not text.startswith("arn") else "MISSING_ARN_FIELD", here
            )
        case "resource.partition":
            fields = (value if isinstance(value, str) else "").split(":")
            run.add(
                "INVALID_PARTITION",
                here,
                service=fields[2] if len(fields) > 2 else "",
                partition=fields[1] if len(fields) > 1 else "",
            )
        case "resource.s3-region" | "resource.iam-region":
            run.add("ARN_REGION_NOT_ALLOWED", here, service=code.split(".")[1].split("-")[0])
        case "resource.iam-path":
            run.add("INVALID_ARN_RESOURCE", here)
        case "sid.duplicate":
            if run.kind is PolicyKind.RESOURCE:
                run.add("UNIQUE_SIDS_RECOMMENDED", here)
            else:
                run.add("UNIQUE_SIDS_REQUIRED", here)
        case "sid.format":
            run.add("UNSUPPORTED_SID", here)
        case "action.missing":
            run.add(
                "EMPTY_ARRAY_ACTION" if last in ("Action", "NotAction") else "MISSING_ACTION", here
            )
        case "resource.missing":
            empty = last in ("Resource", "NotResource")
            run.add("EMPTY_ARRAY_RESOURCE" if empty else "MISSING_RESOURCE", here)
        case "action.no-vendor" | "action.colons" | "action.bad-vendor":
            run.add("INVALID_ACTION", here, action=value, hint="")
        case "condition.no-vendor":
            run.add("INVALID_CONDITION_KEY_FORMAT", [run.locate(steps, at_key=True)])
        case "principal.forbidden":
            if run.ptype is PolicyType.SERVICE_CONTROL_POLICY:
                run.add("SCP_SYNTAX_ERROR_PRINCIPAL", [run.locate(steps, at_key=True)])
            else:
                run.add(
                    "UNSUPPORTED_PRINCIPAL",
                    [run.locate(steps, at_key=True)],
                    policy_type=run.ptype.value,
                )
        case "principal.missing":
            run.add("MISSING_PRINCIPAL", here)
        case "principal.not-principal":
            run.add("ROLE_TRUST_POLICY_SYNTAX_ERROR_NOTPRINCIPAL", [run.locate(steps, at_key=True)])
        case "principal.not-principal-allow":
            run.add("ALLOW_WITH_NOT_PRINCIPAL", [run.locate(steps, at_key=True)])
        case "principal.invalid":
            _principal_finding(run, steps, value, here)
        case "trust.resource":
            run.add("ROLE_TRUST_POLICY_SYNTAX_ERROR_RESOURCE", [run.locate(steps, at_key=True)])
        case "trust.action":
            run.add(
                "UNSUPPORTED_ACTION_IN_POLICY",
                here,
                action=value,
                resource_type=run.resource_type or ROLE_TRUST_RESOURCE_TYPE,
            )
        case "limit.wildcards":
            run.add("TOO_MANY_WILDCARDS", here, limit=MAX_WILDCARDS)
        case _:  # pragma: no cover - every catalogue code is translated above
            run.add("JSON_SYNTAX_ERROR", here)


def _principal_finding(run: _Run, steps: list[Step], value: object, here: list[Location]) -> None:
    # steps: ...Principal[.Type][index]; find the principal key, if there is one.
    keys = [str(ref) for kind, ref in steps if kind == "value"]
    pkey = keys[-1] if keys and keys[-1] not in ("Principal", "NotPrincipal") else None
    if pkey is None:
        run.add("INVALID_PRINCIPAL_FORMAT", here)
    elif pkey not in ("AWS", "Service", "Federated", "CanonicalUser"):
        cut = max(i for i, (k, r) in enumerate(steps) if k == "value" and r == pkey)
        run.add("INVALID_PRINCIPAL_KEY", [run.locate(steps[: cut + 1], at_key=True)], key=pkey)
    elif isinstance(value, str) and ("*" in value or "?" in value):
        run.add("UNSUPPORTED_WILDCARD_IN_PRINCIPAL", here, key=pkey)
    else:
        run.add("INVALID_PRINCIPAL_FORMAT", here)


# -- checks beyond the grammar --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One string of a string-or-list element, with the steps that reach it."""

    steps: tuple[Step, ...]
    text: str


@dataclass(frozen=True, slots=True)
class _Statement:
    steps: tuple[Step, ...]
    body: dict[object, object]

    def entries(self, name: str) -> list[_Entry] | None:
        """The strings of element ``name`` (``None`` when absent or not string-shaped)."""
        if name not in self.body:
            return None
        value = self.body[name]
        base = (*self.steps, ("value", name))
        if isinstance(value, str):
            return [_Entry(base, value)]
        if isinstance(value, list):
            return [
                _Entry((*base, ("index", i)), item)
                for i, item in enumerate(value)
                if isinstance(item, str)
            ]
        return None

    @property
    def effect(self) -> object:
        """The ``Effect`` value as written."""
        return self.body.get("Effect")


def _statements(doc: dict[object, object]) -> Iterator[_Statement]:
    value = doc.get("Statement")
    if isinstance(value, dict):
        yield _Statement((("value", "Statement"),), value)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield _Statement((("value", "Statement"), ("index", i)), item)


def _semantics(run: _Run, doc: dict[object, object]) -> None:
    _version(run, doc)
    statements = list(_statements(doc))
    hints: dict[str, str] = {}
    for st in statements:
        _unknown_actions(run, st, hints)
        if st.effect != "Allow":
            continue
        if run.ptype is PolicyType.IDENTITY_POLICY:
            _pass_role(run, st)
        if run.ptype is PolicyType.SERVICE_CONTROL_POLICY:
            _scp(run, st)
        elif "NotAction" in st.body:
            run.add(
                "ALLOW_WITH_NOT_ACTION",
                [run.locate([*st.steps, ("value", "NotAction")], at_key=True)],
            )
        if run.kind in (PolicyKind.RESOURCE, PolicyKind.TRUST):
            _wildcard_principal(run, st)
    _redundant(run, statements)


def _version(run: _Run, doc: dict[object, object]) -> None:
    if "Version" not in doc:
        run.add("MISSING_VERSION", [run.locate([])])
        return
    if doc["Version"] != VERSION_2008:
        return
    here = [run.locate([("value", "Version")])]
    run.add("OUTDATED_VERSION", here)
    if "${" in run.text:
        run.add("VARIABLE_UNSUPPORTED_IN_VERSION", here)


MAX_HINTS = 20
"""Unknown actions that get a "Did you mean" suggestion (the search is the costly part)."""


def _hint(vendor: str, lowered: str, table: dict[str, str], hints: dict[str, str]) -> str:
    if lowered not in hints:
        if len(hints) >= MAX_HINTS:
            return ""
        close = difflib.get_close_matches(lowered, list(table), n=1, cutoff=0.75)
        hints[lowered] = f"{table[close[0]]}" if close else ""
    found = hints[lowered]
    return f" Did you mean {vendor}:{found}?" if found else ""


def _unknown_actions(run: _Run, st: _Statement, hints: dict[str, str]) -> None:
    for name in ("Action", "NotAction"):
        for entry in st.entries(name) or ():
            vendor, colon, action = entry.text.partition(":")
            table = _KNOWN.get(vendor.lower())
            if not colon or table is None or ":" in action or not action:
                continue
            lowered = action.lower()
            if "*" in lowered or "?" in lowered:
                glob = Glob.compile(lowered)
                if any(glob.match(a) for a in table):
                    continue
                hint = ""
            elif lowered in table:
                continue
            else:
                hint = _hint(vendor, lowered, table, hints)
            run.add("INVALID_ACTION", [run.locate(entry.steps)], action=entry.text, hint=hint)


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _condition_keys(st: _Statement) -> set[str]:
    cond = st.body.get("Condition")
    keys: set[str] = set()
    if isinstance(cond, dict):
        for block in cond.values():
            if isinstance(block, dict):
                keys.update(str(k).lower() for k in block)
    return keys


def _star_resource(text: str) -> bool:
    """Whether a resource pattern covers every role (``*``, ``...:*`` or ``...:role/*``)."""
    return text == "*" or text.endswith((":*", ":role/*", ":role*"))


def _pass_role(run: _Run, st: _Statement) -> None:
    if PASSED_TO_SERVICE_KEY in _condition_keys(st):
        return
    actions = st.entries("Action")
    not_actions = st.entries("NotAction")
    resources = st.entries("Resource")
    not_resources = st.entries("NotResource")
    if actions is not None:
        granting = [a for a in actions if Glob.compile(a.text.lower()).match("iam:passrole")]
        if not granting:
            return
        star_action = all(_has_wildcard(a.text) for a in granting)
        action_loc = run.locate(granting[0].steps)
        if not_resources is not None:
            code = (
                "PASS_ROLE_WITH_STAR_IN_ACTION_AND_NOT_RESOURCE"
                if star_action
                else "PASS_ROLE_WITH_NOT_RESOURCE"
            )
            where = run.locate([*st.steps, ("value", "NotResource")], at_key=True)
            run.add(code, [action_loc, where])
            return
        stars = [r for r in resources or () if _star_resource(r.text)]
        if stars:
            code = (
                "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE"
                if star_action
                else "PASS_ROLE_WITH_STAR_IN_RESOURCE"
            )
            run.add(code, [action_loc, run.locate(stars[0].steps)])
        return
    if not_actions is None:
        return
    if any(Glob.compile(a.text.lower()).match("iam:passrole") for a in not_actions):
        return  # PassRole is excluded
    where = run.locate([*st.steps, ("value", "NotAction")], at_key=True)
    if not_resources is not None:
        run.add("PASS_ROLE_WITH_NOT_ACTION_AND_NOT_RESOURCE", [where])
        return
    stars = [r for r in resources or () if _star_resource(r.text)]
    if stars:
        run.add(
            "PASS_ROLE_WITH_STAR_IN_RESOURCE_AND_NOT_ACTION", [where, run.locate(stars[0].steps)]
        )


def _scp(run: _Run, st: _Statement) -> None:
    if "NotResource" in st.body:
        run.add(
            "SCP_SYNTAX_ERROR_NOTRESOURCE",
            [run.locate([*st.steps, ("value", "NotResource")], at_key=True)],
        )
    if "Condition" in st.body:
        run.add(
            "SCP_SYNTAX_ERROR_ALLOW_CONDITION",
            [run.locate([*st.steps, ("value", "Condition")], at_key=True)],
        )
    if "NotAction" in st.body:
        run.add(
            "SCP_SYNTAX_ERROR_ALLOW_NOTACTION",
            [run.locate([*st.steps, ("value", "NotAction")], at_key=True)],
        )
    for entry in st.entries("Action") or ():
        if "*" in entry.text.rstrip("*") or "?" in entry.text:
            run.add(
                "SCP_SYNTAX_ERROR_ACTION_WILDCARD", [run.locate(entry.steps)], action=entry.text
            )


def _wildcard_principal(run: _Run, st: _Statement) -> None:
    principal = st.body.get("Principal")
    base = (*st.steps, ("value", "Principal"))
    where: Location | None = None
    if principal == "*":
        where = run.locate(base)
    elif isinstance(principal, dict):
        aws = principal.get("AWS")
        if aws == "*":
            where = run.locate((*base, ("value", "AWS")))
        elif isinstance(aws, list) and "*" in aws:
            where = run.locate((*base, ("value", "AWS"), ("index", aws.index("*"))))
    if where is None:
        return
    if run.kind is PolicyKind.TRUST:
        run.add("ROLE_TRUST_POLICY_UNSUPPORTED_WILDCARD_IN_PRINCIPAL", [where])
    elif not st.body.get("Condition"):
        run.add("ALLOW_WITH_WILDCARD_PRINCIPAL", [where])


# -- redundant statements ----------------------------------------------------------------------


def _pattern_covers(wide: str, narrow: str) -> bool:
    """Whether every string ``narrow`` matches is matched by ``wide`` (both glob patterns).

    A ``?`` of ``wide`` stands for one character but never for a ``*`` of ``narrow``; a ``*``
    of ``wide`` stands for any run of ``narrow``. Two pointers with back-tracking to the last
    ``*`` (linear in practice, never exponential).
    """
    w = n = 0
    star_w, star_n = -1, 0
    while n < len(narrow):
        if w < len(wide) and wide[w] == "*":
            star_w, star_n = w, n
            w += 1
        elif w < len(wide) and (wide[w] == narrow[n] or (wide[w] == "?" and narrow[n] != "*")):
            w += 1
            n += 1
        elif star_w >= 0:
            star_n += 1
            n = star_n
            w = star_w + 1
        else:
            return False
    while w < len(wide) and wide[w] == "*":
        w += 1
    return w == len(wide)


def _canonical(value: object) -> object:
    """A comparable form of a principal or condition value (lists as sorted sets)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(sorted({repr(_canonical(v)) for v in value}))
    if isinstance(value, str):
        return (repr(value),)
    return (repr(value),)


@dataclass(frozen=True, slots=True)
class _Patterns:
    """Patterns split into exact strings (set lookups) and wildcard patterns."""

    exact: frozenset[str]
    wild: tuple[str, ...]
    all: tuple[str, ...]

    @classmethod
    def of(cls, texts: Sequence[str]) -> _Patterns:
        return cls(
            frozenset(t for t in texts if not _has_wildcard(t)),
            tuple(t for t in texts if _has_wildcard(t)),
            tuple(texts),
        )

    def covers(self, other: _Patterns) -> bool:
        """Whether every string ``other`` matches is matched by one of these patterns."""
        return all(
            n in self.exact or any(_pattern_covers(w, n) for w in self.wild) for n in other.all
        )


@dataclass(frozen=True, slots=True)
class _Grant:
    index: int
    statement: _Statement
    key: object
    actions: _Patterns
    resources: _Patterns


def _grant(index: int, st: _Statement) -> _Grant | None:
    if "NotAction" in st.body or "NotResource" in st.body:
        return None
    actions = st.entries("Action")
    if not actions:
        return None
    resources = st.entries("Resource")
    if resources is None:
        if "Resource" in st.body:
            return None
        resources = [_Entry((), "*")]  # a trust policy statement: the role itself
    if not resources:
        return None
    key = (
        st.effect,
        _canonical(st.body.get("Principal")),
        _canonical(st.body.get("NotPrincipal")),
        _canonical(st.body.get("Condition") or {}),
    )
    return _Grant(
        index,
        st,
        key,
        _Patterns.of([a.text.lower() for a in actions]),
        _Patterns.of([r.text for r in resources]),
    )


def _covers(wide: _Grant, narrow: _Grant) -> bool:
    return wide.actions.covers(narrow.actions) and wide.resources.covers(narrow.resources)


class _Candidates:
    """Grants of one group indexed so that a statement is compared only with possible wides.

    A wide statement covers a narrow one's first action only if it lists that action exactly
    or has a wildcard action (likewise for the first resource); both must hold.
    """

    def __init__(self, grants: list[_Grant]) -> None:
        self.by_action: dict[str, set[int]] = {}
        self.by_resource: dict[str, set[int]] = {}
        self.wild_action: set[int] = set()
        self.wild_resource: set[int] = set()
        self.grants = {g.index: g for g in grants}
        for g in grants:
            for a in g.actions.exact:
                self.by_action.setdefault(a, set()).add(g.index)
            for r in g.resources.exact:
                self.by_resource.setdefault(r, set()).add(g.index)
            if g.actions.wild:
                self.wild_action.add(g.index)
            if g.resources.wild:
                self.wild_resource.add(g.index)

    def for_narrow(self, narrow: _Grant) -> list[_Grant]:
        """The grants that could cover ``narrow``, in document order."""
        actions = self.by_action.get(narrow.actions.all[0], set()) | self.wild_action
        resources = self.by_resource.get(narrow.resources.all[0], set()) | self.wild_resource
        found = (actions & resources) - {narrow.index}
        return [self.grants[i] for i in sorted(found)]


def _redundant(run: _Run, statements: list[_Statement]) -> None:
    if len(statements) < 2 or len(statements) > MAX_REDUNDANCY_STATEMENTS:
        return
    groups: dict[str, list[_Grant]] = {}
    for grant in (_grant(i, st) for i, st in enumerate(statements)):
        if grant is not None:
            groups.setdefault(repr(grant.key), []).append(grant)
    indexes = {key: _Candidates(group) for key, group in groups.items()}
    for narrow in sorted((g for group in groups.values() for g in group), key=lambda g: g.index):
        for wide in indexes[repr(narrow.key)].for_narrow(narrow):
            if not _covers(wide, narrow):
                continue
            if _covers(narrow, wide) and wide.index > narrow.index:
                continue  # identical grants: the later one is the redundant one
            run.add(
                "REDUNDANT_STATEMENT",
                [run.locate(narrow.statement.steps), run.locate(wide.statement.steps)],
            )
            break


# -- actions of the services the broker serves ---------------------------------------------

SERVICE_ACTIONS: dict[str, tuple[str, ...]] = {
    "access-analyzer": (
        "ApplyArchiveRule",
        "CancelPolicyGeneration",
        "CheckAccessNotGranted",
        "CheckNoNewAccess",
        "CheckNoPublicAccess",
        "CreateAccessPreview",
        "CreateAnalyzer",
        "CreateArchiveRule",
        "CreateServiceLinkedAnalyzer",
        "DeleteAnalyzer",
        "DeleteArchiveRule",
        "DeleteServiceLinkedAnalyzer",
        "GenerateFindingRecommendation",
        "GetAccessPreview",
        "GetAnalyzedResource",
        "GetAnalyzer",
        "GetArchiveRule",
        "GetFinding",
        "GetFindingRecommendation",
        "GetFindingV2",
        "GetFindingsStatistics",
        "GetGeneratedPolicy",
        "ListAccessPreviewFindings",
        "ListAccessPreviews",
        "ListAnalyzedResources",
        "ListAnalyzers",
        "ListArchiveRules",
        "ListFindings",
        "ListFindingsV2",
        "ListPolicyGenerations",
        "ListTagsForResource",
        "StartPolicyGeneration",
        "StartResourceScan",
        "TagResource",
        "UntagResource",
        "UpdateAnalyzer",
        "UpdateArchiveRule",
        "UpdateFindings",
        "ValidatePolicy",
    ),
    "iam": (
        "AcceptDelegationRequest",
        "AcquireRole",
        "AddClientIDToOpenIDConnectProvider",
        "AddRoleToInstanceProfile",
        "AddUserToGroup",
        "AssociateDelegationRequest",
        "AttachGroupPolicy",
        "AttachRolePolicy",
        "AttachUserPolicy",
        "ChangePassword",
        "CreateAccessKey",
        "CreateAccountAlias",
        "CreateDelegationRequest",
        "CreateGroup",
        "CreateInstanceProfile",
        "CreateLoginProfile",
        "CreateOpenIDConnectProvider",
        "CreatePolicy",
        "CreatePolicyVersion",
        "CreateRole",
        "CreateSAMLProvider",
        "CreateServiceLinkedRole",
        "CreateServiceSpecificCredential",
        "CreateUser",
        "CreateVirtualMFADevice",
        "CreateWorkloadIdentityProvider",
        "CreateWorkloadIdentityProviderOutboundSigner",
        "CreateWorkloadIdentityTemplate",
        "DeactivateMFADevice",
        "DeleteAccessKey",
        "DeleteAccountAlias",
        "DeleteAccountPasswordPolicy",
        "DeleteCloudFrontPublicKey",
        "DeleteGroup",
        "DeleteGroupPolicy",
        "DeleteInstanceProfile",
        "DeleteLoginProfile",
        "DeleteOpenIDConnectProvider",
        "DeletePolicy",
        "DeletePolicyVersion",
        "DeleteRole",
        "DeleteRolePermissionsBoundary",
        "DeleteRolePolicy",
        "DeleteSAMLProvider",
        "DeleteSSHPublicKey",
        "DeleteServerCertificate",
        "DeleteServiceLinkedRole",
        "DeleteServiceSpecificCredential",
        "DeleteSigningCertificate",
        "DeleteUser",
        "DeleteUserPermissionsBoundary",
        "DeleteUserPolicy",
        "DeleteVirtualMFADevice",
        "DeleteWorkloadIdentityProvider",
        "DeleteWorkloadIdentityProviderOutboundSigner",
        "DeleteWorkloadIdentityProviderResourcePolicy",
        "DeleteWorkloadIdentityTemplate",
        "DeleteWorkloadIdentityTemplateAttestationPolicy",
        "DetachGroupPolicy",
        "DetachRolePolicy",
        "DetachUserPolicy",
        "DisableOrganizationLevelResources",
        "DisableOrganizationsRootCredentialsManagement",
        "DisableOrganizationsRootSessions",
        "DisableOutboundWebIdentityFederation",
        "DisableWorkloadIdentityProviderOutboundSigner",
        "EnableMFADevice",
        "EnableOrganizationLevelResources",
        "EnableOrganizationsRootCredentialsManagement",
        "EnableOrganizationsRootSessions",
        "EnableOutboundWebIdentityFederation",
        "EnableWorkloadIdentityProviderOutboundSigner",
        "GenerateCredentialReport",
        "GenerateOrganizationsAccessReport",
        "GenerateServiceLastAccessedDetails",
        "GetAccessKeyLastUsed",
        "GetAccountAuthorizationDetails",
        "GetAccountEmailAddress",
        "GetAccountName",
        "GetAccountPasswordPolicy",
        "GetAccountProperties",
        "GetAccountSummary",
        "GetCloudFrontPublicKey",
        "GetContextKeysForCustomPolicy",
        "GetContextKeysForPrincipalPolicy",
        "GetCredentialReport",
        "GetDelegationRequest",
        "GetGroup",
        "GetGroupPolicy",
        "GetHumanReadableSummary",
        "GetInstanceProfile",
        "GetLoginProfile",
        "GetMFADevice",
        "GetOpenIDConnectProvider",
        "GetOrganizationsAccessReport",
        "GetOutboundWebIdentityFederationInfo",
        "GetPolicy",
        "GetPolicyVersion",
        "GetRole",
        "GetRolePolicy",
        "GetRoleTemplateVersion",
        "GetSAMLProvider",
        "GetSSHPublicKey",
        "GetServerCertificate",
        "GetServiceLastAccessedDetails",
        "GetServiceLastAccessedDetailsWithEntities",
        "GetServiceLinkedRoleDeletionStatus",
        "GetUser",
        "GetUserPolicy",
        "GetWorkloadIdentityProvider",
        "GetWorkloadIdentityProviderDeletionStatus",
        "GetWorkloadIdentityProviderResourcePolicy",
        "GetWorkloadIdentityTemplate",
        "GetWorkloadIdentityTemplateAttestationPolicy",
        "ListAccessKeys",
        "ListAccountAliases",
        "ListAttachedGroupPolicies",
        "ListAttachedRolePolicies",
        "ListAttachedUserPolicies",
        "ListCloudFrontPublicKeys",
        "ListDelegationRequests",
        "ListEntitiesForPolicy",
        "ListGroupPolicies",
        "ListGroups",
        "ListGroupsForUser",
        "ListInstanceProfileTags",
        "ListInstanceProfiles",
        "ListInstanceProfilesForRole",
        "ListMFADeviceTags",
        "ListMFADevices",
        "ListOpenIDConnectProviderTags",
        "ListOpenIDConnectProviders",
        "ListOrganizationsFeatures",
        "ListPolicies",
        "ListPoliciesGrantingServiceAccess",
        "ListPolicyTags",
        "ListPolicyVersions",
        "ListRolePolicies",
        "ListRoleTags",
        "ListRoles",
        "ListSAMLProviderTags",
        "ListSAMLProviders",
        "ListSSHPublicKeys",
        "ListSTSRegionalEndpointsStatus",
        "ListServerCertificateTags",
        "ListServerCertificates",
        "ListServiceSpecificCredentials",
        "ListSigningCertificates",
        "ListUserPolicies",
        "ListUserTags",
        "ListUsers",
        "ListVirtualMFADevices",
        "ListWorkloadIdentityProviderOutboundSigners",
        "ListWorkloadIdentityProviderTags",
        "ListWorkloadIdentityProviders",
        "ListWorkloadIdentityTemplateTags",
        "ListWorkloadIdentityTemplates",
        "PassRole",
        "PutAccountProperties",
        "PutGroupPolicy",
        "PutRolePermissionsBoundary",
        "PutRolePolicy",
        "PutUserPermissionsBoundary",
        "PutUserPolicy",
        "PutWorkloadIdentityProviderResourcePolicy",
        "PutWorkloadIdentityTemplateAttestationPolicy",
        "RejectDelegationRequest",
        "RemoveClientIDFromOpenIDConnectProvider",
        "RemoveRoleFromInstanceProfile",
        "RemoveUserFromGroup",
        "ResetServiceSpecificCredential",
        "ResyncMFADevice",
        "SendDelegationToken",
        "SetDefaultPolicyVersion",
        "SetSecurityTokenServicePreferences",
        "SimulateCustomPolicy",
        "SimulatePrincipalPolicy",
        "TagInstanceProfile",
        "TagMFADevice",
        "TagOpenIDConnectProvider",
        "TagPolicy",
        "TagRole",
        "TagSAMLProvider",
        "TagServerCertificate",
        "TagUser",
        "TagWorkloadIdentityProvider",
        "TagWorkloadIdentityTemplate",
        "UntagInstanceProfile",
        "UntagMFADevice",
        "UntagOpenIDConnectProvider",
        "UntagPolicy",
        "UntagRole",
        "UntagSAMLProvider",
        "UntagServerCertificate",
        "UntagUser",
        "UntagWorkloadIdentityProvider",
        "UntagWorkloadIdentityTemplate",
        "UpdateAccessKey",
        "UpdateAccountPasswordPolicy",
        "UpdateAssumeRolePolicy",
        "UpdateCloudFrontPublicKey",
        "UpdateDelegationRequest",
        "UpdateGroup",
        "UpdateLoginProfile",
        "UpdateOpenIDConnectProvider",
        "UpdateOpenIDConnectProviderThumbprint",
        "UpdateRole",
        "UpdateRoleDescription",
        "UpdateSAMLProvider",
        "UpdateSSHPublicKey",
        "UpdateServerCertificate",
        "UpdateServiceSpecificCredential",
        "UpdateSigningCertificate",
        "UpdateUser",
        "UpdateWorkloadIdentityProviderOutboundSigner",
        "UploadCloudFrontPublicKey",
        "UploadSSHPublicKey",
        "UploadServerCertificate",
        "UploadSigningCertificate",
    ),
    "sts": (
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "AssumeRoot",
        "DecodeAuthorizationMessage",
        "GetAccessKeyInfo",
        "GetCallerIdentity",
        "GetCertificate",
        "GetDelegatedAccessToken",
        "GetFederationToken",
        "GetScopedCredentials",
        "GetServiceBearerToken",
        "GetSessionToken",
        "GetTrustBundles",
        "GetWebIdentityToken",
        "IssueWorkloadIdentityContext",
        "ListSessions",
        "RevokeSessions",
        "SetContext",
        "SetSourceIdentity",
        "TagSession",
    ),
}
"""Service prefix -> every action name (botocore's operations plus policy-only actions).

Generated from botocore's ``iam``, ``sts`` and ``accessanalyzer`` service models, plus actions
that exist only in policies (``iam:PassRole``, ``sts:TagSession`` ...) and the broker's own STS
actions; a unit test keeps it a superset of the models and of the broker's action tables.
"""

_KNOWN: dict[str, dict[str, str]] = {
    svc: {a.lower(): a for a in names} for svc, names in SERVICE_ACTIONS.items()
}
