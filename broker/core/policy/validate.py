"""Core layer, policy engine: validation of a decoded policy document (spec §2, §3).

:func:`check_document` walks the JSON value once and returns **every** problem it finds as a
:class:`broker.errors.Finding` ``(code, json_path, detail)``. ``code`` names the rule from
:data:`CATALOGUE`; ``detail`` is IAM's own message text for it. IAM reports only one message,
chosen by check group (syntax, version, legacy parsing, Sid, actions, resources, action
prefixes, type-specific rules); findings come back sorted by group, then document order, so
the first finding carries the message a client would see from AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.core.policy.conditions import WILDCARD_FAMILIES, Family, parse_date, parse_operator
from broker.core.policy.match import Glob, count_wildcards
from broker.core.policy.model import VERSION_2008, VERSIONS, PolicyKind
from broker.errors import Finding

MAX_WILDCARDS = 64
"""Most ``*``/``?`` characters allowed in one pattern string (security D7)."""

MAX_DEPTH = 10
"""Deepest JSON nesting accepted in a policy document (security D6)."""

PARTITIONS = frozenset(
    {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"}
)
"""Partitions a resource ARN may name (§3 group 6)."""

TRUST_ACTIONS = (
    "sts:assumerole",
    "sts:assumerolewithsaml",
    "sts:assumerolewithwebidentity",
    "sts:tagsession",
    "sts:setsourceidentity",
)
"""Actions a role trust policy may grant (lower-cased; wildcards must cover one of them)."""

IAM_RESOURCE_PREFIXES = (
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
)

TOP_LEVEL_KEYS = frozenset({"Version", "Id", "Statement"})
STATEMENT_KEYS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})


class JsonNumber:
    """A JSON number kept as its source text (the decoder's ``parse_int``/``parse_float``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"JsonNumber({self.text!r})"


# -- the catalogue -----------------------------------------------------------------------------

SYNTAX, VERSION, LEGACY, SID, ACTIONS, RESOURCES, PREFIXES, TYPE, LIMITS = range(1, 10)

_SYNTAX_MSG = "Syntax errors in policy."
_LEGACY_MSG = "The policy failed legacy parsing"
_VENDOR_MSG = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."

CATALOGUE: dict[str, tuple[int, str]] = {
    "syntax.json": (SYNTAX, _SYNTAX_MSG),
    "syntax.duplicate-key": (SYNTAX, _SYNTAX_MSG),
    "syntax.too-deep": (SYNTAX, _SYNTAX_MSG),
    "syntax.not-object": (SYNTAX, _SYNTAX_MSG),
    "syntax.unknown-key": (SYNTAX, _SYNTAX_MSG),
    "syntax.missing-statement": (SYNTAX, _SYNTAX_MSG),
    "syntax.empty-statement": (SYNTAX, _SYNTAX_MSG),
    "syntax.missing-effect": (SYNTAX, _SYNTAX_MSG),
    "syntax.bad-effect": (SYNTAX, _SYNTAX_MSG),
    "syntax.both-action": (SYNTAX, _SYNTAX_MSG),
    "syntax.both-resource": (SYNTAX, _SYNTAX_MSG),
    "syntax.both-principal": (SYNTAX, _SYNTAX_MSG),
    "syntax.type": (SYNTAX, _SYNTAX_MSG),
    "syntax.unknown-operator": (SYNTAX, _SYNTAX_MSG),
    "syntax.bad-version": (SYNTAX, _SYNTAX_MSG),
    "version.required": (VERSION, "Policy document must be version 2012-10-17 or greater."),
    "legacy.effect-case": (LEGACY, _LEGACY_MSG),
    "legacy.date": (LEGACY, _LEGACY_MSG),
    "legacy.resource": (LEGACY, _LEGACY_MSG),
    "sid.duplicate": (SID, "Statement IDs (SID) in a single policy must be unique."),
    "sid.format": (
        SID,
        "Statement IDs (SID) must be alpha-numeric. "
        "Check that your input satisfies the regular expression [0-9A-Za-z]*",
    ),
    "action.missing": (ACTIONS, "Policy statement must contain actions."),
    "resource.missing": (RESOURCES, "Policy statement must contain resources."),
    "resource.format": (RESOURCES, 'Resource {value} must be in ARN format or "*".'),
    "resource.partition": (RESOURCES, 'Partition "{partition}" is not valid for resource "{arn}".'),
    "resource.vendor": (
        RESOURCES,
        "Resource vendor must be fully qualified and cannot contain regexes.",
    ),
    "resource.s3-region": (RESOURCES, "Resource {value} can not contain region information."),
    "resource.iam-region": (RESOURCES, "IAM resource {value} cannot contain region information."),
    "resource.iam-path": (
        RESOURCES,
        'IAM resource path must either be "*" or start with '
        + ", ".join(IAM_RESOURCE_PREFIXES)
        + ".",
    ),
    "action.no-vendor": (PREFIXES, _VENDOR_MSG),
    "action.colons": (PREFIXES, "Actions/Condition can contain only one colon."),
    "action.bad-vendor": (PREFIXES, "Vendor {vendor} is not valid"),
    "condition.no-vendor": (PREFIXES, _VENDOR_MSG),
    "principal.forbidden": (TYPE, "Policy document should not specify a principal."),
    "principal.missing": (TYPE, "Missing required field Principal."),
    "principal.not-principal": (TYPE, "Has prohibited field NotPrincipal."),
    "principal.not-principal-allow": (TYPE, "NotPrincipal may only be used with Deny."),
    "principal.invalid": (TYPE, 'Invalid principal in policy: "{type}":"{value}"'),
    "trust.resource": (TYPE, "Has prohibited field {field}."),
    "trust.action": (
        TYPE,
        "Trust Policy statement actions can only be sts:AssumeRole, "
        "sts:AssumeRoleWithSAML, and sts:AssumeRoleWithWebIdentity",
    ),
    "limit.wildcards": (
        LIMITS,
        f"A pattern in the policy has more than {MAX_WILDCARDS} wildcard characters.",
    ),
}
"""Every rule: code -> (check group, IAM message template)."""


def finding(code: str, path: str, **fields: str) -> Finding:
    """Build the :class:`Finding` of rule ``code`` at ``path``."""
    _, template = CATALOGUE[code]
    return Finding(code, path, template.format(**fields) if fields else template)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Order findings by check group, keeping document order within a group."""
    return sorted(findings, key=lambda f: CATALOGUE[f.code][0])


# -- the walk -------------------------------------------------------------------------------------

_SID_RE = re.compile(r"[0-9A-Za-z]*")
_VENDOR_RE = re.compile(r"[A-Za-z0-9.-]+")
_ACCOUNT_RE = re.compile(r"\d{12}")
_UNIQUE_ID_RE = re.compile(r"A(?:IDA|ROA)[A-Z0-9]{12,}")
_SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_IAM_NAME_RE = re.compile(r"[^*?\s]+")


@dataclass(slots=True)
class _Walk:
    kind: PolicyKind
    findings: list[Finding]

    def add(self, code: str, path: str, **fields: str) -> None:
        self.findings.append(finding(code, path, **fields))


def check_depth(doc: object, limit: int = MAX_DEPTH) -> bool:
    """Return whether ``doc`` nests containers at most ``limit`` deep (iterative)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = list(value)
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def check_document(doc: object, kind: PolicyKind, *, managed: bool = False) -> list[Finding]:
    """Return every finding for a decoded document (empty when it is valid), sorted.

    ``managed`` applies the managed-policy rule that ``Version`` must be ``2012-10-17``.
    """
    walk = _Walk(kind, [])
    if not isinstance(doc, dict):
        walk.add("syntax.not-object", "$")
        return walk.findings
    if not check_depth(doc):
        walk.add("syntax.too-deep", "$")
        return walk.findings
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            walk.add("syntax.unknown-key", f"$.{key}")
    version = doc.get("Version")
    if "Version" in doc and (not isinstance(version, str) or version not in VERSIONS):
        walk.add("syntax.bad-version", "$.Version")
    elif managed and (version is None or version == VERSION_2008):
        walk.add("version.required", "$.Version")
    if "Id" in doc and not isinstance(doc["Id"], str):
        walk.add("syntax.type", "$.Id")
    statements = _statements(doc, walk)
    sids: dict[str, str] = {}
    for path, statement in statements:
        _check_statement(statement, path, walk)
        sid = statement.get("Sid")
        if isinstance(sid, str) and sid:
            if sid in sids:
                walk.add("sid.duplicate", f"{path}.Sid")
            else:
                sids[sid] = path
    return sort_findings(walk.findings)


def _statements(doc: dict[object, object], walk: _Walk) -> list[tuple[str, dict[object, object]]]:
    if "Statement" not in doc:
        walk.add("syntax.missing-statement", "$")
        return []
    value = doc["Statement"]
    if isinstance(value, dict):
        return [("$.Statement", value)]
    if not isinstance(value, list):
        walk.add("syntax.type", "$.Statement")
        return []
    if not value:
        walk.add("syntax.empty-statement", "$.Statement")
        return []
    out: list[tuple[str, dict[object, object]]] = []
    for i, item in enumerate(value):
        path = f"$.Statement[{i}]"
        if isinstance(item, dict):
            out.append((path, item))
        else:
            walk.add("syntax.type", path)
    return out


def _strings(value: object, path: str, walk: _Walk) -> list[tuple[str, str]] | None:
    """Return ``(path, text)`` entries of a string-or-list element; ``None`` on a type error."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        out: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                walk.add("syntax.type", f"{path}[{i}]")
                return None
            out.append((f"{path}[{i}]", item))
        return out
    walk.add("syntax.type", path)
    return None


def _check_statement(st: dict[object, object], path: str, walk: _Walk) -> None:
    kind = walk.kind
    for key in st:
        if key not in STATEMENT_KEYS:
            walk.add("syntax.unknown-key", f"{path}.{key}")

    sid = st.get("Sid")
    if "Sid" in st:
        if not isinstance(sid, str):
            walk.add("syntax.type", f"{path}.Sid")
        elif kind is not PolicyKind.RESOURCE and not _SID_RE.fullmatch(sid):
            walk.add("sid.format", f"{path}.Sid")

    effect = st.get("Effect")
    if "Effect" not in st:
        walk.add("syntax.missing-effect", path)
    elif not isinstance(effect, str):
        walk.add("syntax.type", f"{path}.Effect")
    elif effect not in ("Allow", "Deny"):
        if effect.lower() in ("allow", "deny"):
            walk.add("legacy.effect-case", f"{path}.Effect")
        else:
            walk.add("syntax.bad-effect", f"{path}.Effect")

    _check_actions(st, path, walk)
    _check_resources(st, path, walk)
    _check_principals(st, path, walk, effect)
    if "Condition" in st:
        _check_conditions(st["Condition"], f"{path}.Condition", walk)


def _check_actions(st: dict[object, object], path: str, walk: _Walk) -> None:
    if "Action" in st and "NotAction" in st:
        walk.add("syntax.both-action", path)
        return
    name = "Action" if "Action" in st else "NotAction" if "NotAction" in st else None
    if name is None:
        walk.add("action.missing", path)
        return
    entries = _strings(st[name], f"{path}.{name}", walk)
    if entries is None:
        return
    if not entries:
        walk.add("action.missing", f"{path}.{name}")
        return
    for entry_path, action in entries:
        if not _check_action_name(action, entry_path, walk):
            continue
        _check_wildcards(action, entry_path, walk)
        if walk.kind is PolicyKind.TRUST and name == "Action":
            glob = Glob.compile(action.lower())
            if not any(glob.match(a) for a in TRUST_ACTIONS):
                walk.add("trust.action", entry_path)


def _check_action_name(action: str, path: str, walk: _Walk) -> bool:
    if action == "*":
        return True
    colons = action.count(":")
    if colons == 0:
        walk.add("action.no-vendor", path)
        return False
    if colons > 1:
        walk.add("action.colons", path)
        return False
    vendor = action.split(":", 1)[0]
    if not vendor:
        walk.add("action.no-vendor", path)
        return False
    if not _VENDOR_RE.fullmatch(vendor):
        walk.add("action.bad-vendor", path, vendor=vendor)
        return False
    return True


def _check_wildcards(pattern: str, path: str, walk: _Walk) -> None:
    if count_wildcards(pattern) > MAX_WILDCARDS:
        walk.add("limit.wildcards", path)


def _check_resources(st: dict[object, object], path: str, walk: _Walk) -> None:
    if "Resource" in st and "NotResource" in st:
        walk.add("syntax.both-resource", path)
        return
    name = "Resource" if "Resource" in st else "NotResource" if "NotResource" in st else None
    if walk.kind is PolicyKind.TRUST:
        if name is not None:
            walk.add("trust.resource", f"{path}.{name}", field=name)
        return
    if name is None:
        walk.add("resource.missing", path)
        return
    entries = _strings(st[name], f"{path}.{name}", walk)
    if entries is None:
        return
    if not entries:
        walk.add("resource.missing", f"{path}.{name}")
        return
    for entry_path, resource in entries:
        if _check_resource(resource, entry_path, walk):
            _check_wildcards(resource, entry_path, walk)


def _check_resource(value: str, path: str, walk: _Walk) -> bool:
    """Check one resource entry (groups 3 and 6); return whether it is acceptable."""
    if value == "*":
        return True
    fields = value.split(":", 5)
    if len(fields) < 2 or fields[0] != "arn":
        walk.add("resource.format", path, value=value)
        return False
    short = len(fields) < 6
    if (short and "" in fields) or (len(fields) >= 3 and fields[2] == ""):
        walk.add("legacy.resource", path)
        return False
    if len(fields) < 3:
        walk.add("resource.vendor", path)
        return False
    partition, service = fields[1], fields[2]
    ok = True
    if partition not in PARTITIONS and not _has_wildcard(partition):
        rest = [fields[i] if i < len(fields) else "*" for i in range(2, 6)]
        arn = ":".join(["arn", partition, *rest])
        walk.add("resource.partition", path, partition=partition, arn=arn)
        ok = False
    region = fields[3] if len(fields) > 3 else ""
    account = fields[4] if len(fields) > 4 else ""
    if service == "s3" and region and not account and len(fields) > 4:
        walk.add("resource.s3-region", path, value=value)
        ok = False
    elif service == "iam":
        if region:
            walk.add("resource.iam-region", path, value=value)
            ok = False
        elif len(fields) == 6 and not _iam_path_ok(fields[5]):
            walk.add("resource.iam-path", path)
            ok = False
    return ok


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _iam_path_ok(path: str) -> bool:
    """Whether an IAM resource could start with one of the known prefixes (wildcards allowed)."""
    if path.startswith(("*", "${")):
        return True
    for prefix in IAM_RESOURCE_PREFIXES:
        if _could_start_with(path, prefix):
            return True
    return False


def _could_start_with(pattern: str, prefix: str) -> bool:
    for i, want in enumerate(prefix):
        if i >= len(pattern):
            return False
        ch = pattern[i]
        if ch == "*":
            return True
        if ch != "?" and ch != want:
            return False
    return True


def _check_principals(st: dict[object, object], path: str, walk: _Walk, effect: object) -> None:
    kind = walk.kind
    has_p, has_np = "Principal" in st, "NotPrincipal" in st
    if has_p and has_np:
        walk.add("syntax.both-principal", path)
        return
    if kind in (PolicyKind.IDENTITY, PolicyKind.SESSION):
        if has_p or has_np:
            walk.add("principal.forbidden", f"{path}.{'Principal' if has_p else 'NotPrincipal'}")
        return
    if kind is PolicyKind.TRUST and has_np:
        walk.add("principal.not-principal", f"{path}.NotPrincipal")
        return
    if not has_p and not has_np:
        walk.add("principal.missing", path)
        return
    name = "Principal" if has_p else "NotPrincipal"
    if has_np and effect == "Allow":
        walk.add("principal.not-principal-allow", f"{path}.NotPrincipal")
    _check_principal_value(st[name], f"{path}.{name}", walk)


def _check_principal_value(value: object, path: str, walk: _Walk) -> None:
    if isinstance(value, str):
        if value != "*":
            walk.add("principal.invalid", path, type="AWS", value=value)
        return
    if not isinstance(value, dict) or not value:
        walk.add("syntax.type", path)
        return
    for ptype, entries in value.items():
        entry_path = f"{path}.{ptype}"
        items = _strings(entries, entry_path, walk)
        if items is None:
            continue
        if not items:
            walk.add("syntax.type", entry_path)
            continue
        for item_path, item in items:
            if not isinstance(ptype, str) or ptype not in PRINCIPAL_TYPES:
                walk.add("principal.invalid", item_path, type=str(ptype), value=item)
            elif not _principal_ok(ptype, item):
                walk.add("principal.invalid", item_path, type=ptype, value=item)


def _principal_ok(ptype: str, value: str) -> bool:
    if ptype == "AWS":
        return _aws_principal_ok(value)
    if ptype == "Service":
        return bool(_SERVICE_RE.fullmatch(value))
    return bool(value) and not _has_wildcard(value) and not any(c.isspace() for c in value)


def _aws_principal_ok(value: str) -> bool:
    if value == "*" or _ACCOUNT_RE.fullmatch(value) or _UNIQUE_ID_RE.fullmatch(value):
        return True
    if _has_wildcard(value):
        return False  # "*" is only valid alone
    fields = value.split(":", 5)
    if len(fields) != 6 or fields[0] != "arn" or fields[1] not in PARTITIONS:
        return False
    service, region, account, resource = fields[2], fields[3], fields[4], fields[5]
    if region or not _ACCOUNT_RE.fullmatch(account):
        return False
    if service == "iam":
        if resource == "root":
            return True
        for prefix in ("user/", "role/"):
            if resource.startswith(prefix):
                name = resource[len(prefix) :].rsplit("/", 1)[-1]
                return bool(_IAM_NAME_RE.fullmatch(name))
        return False
    if service == "sts":
        if resource.startswith("assumed-role/"):
            parts = resource.split("/")
            return len(parts) == 3 and all(parts[1:])
        if resource.startswith("federated-user/"):
            return len(resource) > len("federated-user/")
    return False


def _check_conditions(value: object, path: str, walk: _Walk) -> None:
    if not isinstance(value, dict):
        walk.add("syntax.type", path)
        return
    for op, block in value.items():
        op_path = f"{path}.{op}"
        spec = parse_operator(op) if isinstance(op, str) else None
        if not isinstance(block, dict):
            walk.add("syntax.type", op_path)
            continue
        if spec is None:
            if block:  # an unknown operator is tolerated only with an empty object
                walk.add("syntax.unknown-operator", op_path)
            continue
        for key, values in block.items():
            key_path = f"{op_path}.{key}"
            if not isinstance(key, str) or not _condition_key_ok(key):
                walk.add("condition.no-vendor", key_path)
            texts = _condition_values(values, key_path, walk)
            if texts is None:
                continue
            if spec.family is Family.DATE:
                for value_path, text in texts:
                    if parse_date(text) is None:
                        walk.add("legacy.date", value_path)
            elif spec.family in WILDCARD_FAMILIES:
                for value_path, text in texts:
                    _check_wildcards(text, value_path, walk)


def _condition_key_ok(key: str) -> bool:
    vendor, colon, _ = key.partition(":")
    return bool(colon) and bool(vendor)


ConditionScalar = str | bool | JsonNumber


def condition_text(value: ConditionScalar) -> str:
    """Return the text of a condition value (JSON literals keep their spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JsonNumber):
        return value.text
    return value


def _condition_values(value: object, path: str, walk: _Walk) -> list[tuple[str, str]] | None:
    if isinstance(value, (str, bool, JsonNumber)):
        return [(path, condition_text(value))]
    if isinstance(value, list):
        out: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            if not isinstance(item, (str, bool, JsonNumber)):
                walk.add("syntax.type", f"{path}[{i}]")
                return None
            out.append((f"{path}[{i}]", condition_text(item)))
        return out
    walk.add("syntax.type", path)
    return None


__all__ = [
    "CATALOGUE",
    "IAM_RESOURCE_PREFIXES",
    "MAX_DEPTH",
    "MAX_WILDCARDS",
    "PARTITIONS",
    "TRUST_ACTIONS",
    "JsonNumber",
    "check_depth",
    "check_document",
    "condition_text",
    "finding",
    "sort_findings",
]
