"""Tests (e2e): the policy case table sent to a real broker through ``SimulateCustomPolicy``.

One ``broker serve`` process (SQLite, its own data directory, bootstrapped with the table's
account id) serves the whole module; boto3 calls ``iam.simulate_custom_policy`` with the root
key. Each case that the simulator can express (``engine_only`` is ``None``: no session
policies, the caller is an IAM user) maps to: ``PolicyInputList`` = identity policies,
``PermissionsBoundaryPolicyInputList`` = ``[boundary]``, ``ResourcePolicy`` with ``CallerArn``
(and ``ResourceOwner`` = ``arn:aws:iam::OWNER:root`` for cross-account cases), ``ActionNames`` =
``[action]``, ``ResourceArns`` = ``[resource]`` (left out for ``*``, the simulator's default),
``ContextEntries`` as written in the table. The ``EvalDecision`` must equal the expected
decision, and when the case lists Sids, the ``MatchedStatements`` must name exactly those
statements. Malformed documents must make boto3 raise ``ClientError`` with code
``MalformedPolicyDocument``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.policy.cases import ACCOUNT, CALLER_USERS, MALFORMED, SIMULATABLE, Case
from tests.support.broker_proc import BrokerProcess

pytestmark = pytest.mark.e2e

SIMULATOR_DEVIATIONS: dict[str, str] = {}
"""Cases where the simulator disagrees with the spec: case id -> what it does instead."""


@pytest.fixture(scope="module")
def policy_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module, its account pinned to the table's :data:`ACCOUNT`."""
    data: Path = tmp_path_factory.mktemp("policy-cases") / "data"
    broker = BrokerProcess(data, env={"BROKER_BOOTSTRAP_ACCOUNT_ID": ACCOUNT}).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def iam(policy_broker: BrokerProcess) -> Any:
    """A boto3 IAM client with the root key; the callers named by the table exist."""
    assert policy_broker.account_id() == ACCOUNT
    client = policy_broker.client("iam", policy_broker.root_creds())
    for name in CALLER_USERS:
        client.create_user(UserName=name)
    return client


def simulate_params(case: Case) -> dict[str, Any]:
    """Return the ``simulate_custom_policy`` keyword arguments for ``case``."""
    params: dict[str, Any] = {
        "PolicyInputList": list(case.policies),
        "ActionNames": [case.action],
    }
    if case.resource != "*":
        params["ResourceArns"] = [case.resource]
    if case.boundary is not None:
        params["PermissionsBoundaryPolicyInputList"] = [case.boundary]
    if case.resource_policy is not None:
        params["ResourcePolicy"] = case.resource_policy
        params["CallerArn"] = case.caller
        if case.resource_owner is not None:
            params["ResourceOwner"] = f"arn:aws:iam::{case.resource_owner}:root"
    if case.context:
        params["ContextEntries"] = [
            {"ContextKeyName": e.key, "ContextKeyValues": list(e.values), "ContextKeyType": e.type}
            for e in case.context
        ]
    return params


def _sources(case: Case) -> dict[str, str]:
    texts = {f"PolicyInputList.{n}": text for n, text in enumerate(case.policies, 1)}
    if case.boundary is not None:
        texts["PermissionsBoundaryPolicyInputList.1"] = case.boundary
    if case.resource_policy is not None:
        texts["ResourcePolicy"] = case.resource_policy
    return texts


def _statements(text: str) -> list[dict[str, Any]]:
    body = json.loads(text)
    found = body["Statement"]
    return found if isinstance(found, list) else [found]


def _offset(text: str, line: int, column: int) -> int | None:
    lines = text.split("\n")
    if not 0 <= line < len(lines) or column < 0:
        return None
    return sum(len(row) + 1 for row in lines[:line]) + column


def statement_at(text: str, line: int, column: int) -> dict[str, Any] | None:
    """Return the statement object that starts at ``line``/``column`` of ``text``.

    The simulator reports one-based positions; zero-based readings are tried as well so that
    a wrong base shows up as a wrong Sid rather than as nothing.
    """
    decoder = json.JSONDecoder()
    for line_base, column_base in ((1, 1), (1, 0), (0, 0), (0, 1)):
        offset = _offset(text, line - line_base, column - column_base)
        if offset is None or offset >= len(text) or text[offset] != "{":
            continue
        try:
            found, _ = decoder.raw_decode(text, offset)
        except ValueError:
            continue
        if isinstance(found, dict) and "Effect" in found:
            return found
    return None


def matched_sid(case: Case, statement: Mapping[str, Any]) -> str:
    """Name the statement a ``MatchedStatements`` entry points at by its Sid.

    The statement is located by ``StartPosition`` in the source text; without a position, a
    source policy holding a single statement still identifies it. Anything else gives a
    description of what could not be resolved (so the comparison fails and says why).
    """
    source = statement.get("SourcePolicyId", "")
    text = _sources(case).get(source)
    if text is None:
        return f"<unknown source {source!r}>"
    start = statement.get("StartPosition")
    if start is not None:
        found = statement_at(text, int(start["Line"]), int(start["Column"]))
        if found is None:
            return f"<no statement at {source} {start['Line']}:{start['Column']}>"
        return str(found.get("Sid", ""))
    statements = _statements(text)
    if len(statements) == 1:
        return str(statements[0].get("Sid", ""))
    return f"<no position in {source}>"


def _param(case: Case) -> object:
    marks = []
    if case.id in SIMULATOR_DEVIATIONS:
        marks.append(pytest.mark.xfail(strict=True, reason=SIMULATOR_DEVIATIONS[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in SIMULATABLE])
def test_simulator_decides_case(iam: Any, case: Case) -> None:
    params = simulate_params(case)
    if case.expected == MALFORMED:
        with pytest.raises(ClientError) as info:
            iam.simulate_custom_policy(**params)
        assert info.value.response["Error"]["Code"] == MALFORMED
        return
    reply = iam.simulate_custom_policy(**params)
    results = reply["EvaluationResults"]
    assert len(results) == 1
    assert results[0]["EvalDecision"] == case.expected
    if case.matched is not None:
        sids = [matched_sid(case, st) for st in results[0]["MatchedStatements"]]
        assert sorted(sids) == sorted(case.matched)


def test_statement_at_reads_one_based_positions() -> None:
    text = (
        '{\n  "Statement": [\n    {"Sid": "A", "Effect": "Allow"},\n    {"Effect": "Deny"}\n  ]\n}'
    )
    assert statement_at(text, 3, 5) == {"Sid": "A", "Effect": "Allow"}
    assert statement_at(text, 4, 5) == {"Effect": "Deny"}
    assert statement_at(text, 2, 3) is None
