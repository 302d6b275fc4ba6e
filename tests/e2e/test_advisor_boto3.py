"""Service last accessed reports through unmodified boto3 (and the ``aws`` CLI), on a real broker.

The broker flushes its last-accessed data every ``BROKER_TRACKING_FLUSH_SECONDS``; tests poll
the report until the flushed use shows up (bounded by a deadline), as a client of AWS would.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import master_key
from tests.support.broker_proc import BrokerProcess, Creds
from tests.support.redis_server import RedisServer

FLUSH_SECONDS = "0.2"
WAIT_SECONDS = 15.0


def policy(actions: list[str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
    )


def trust(account: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


@pytest.fixture(params=["sqlite", "redis"])
def advisor_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker flushing last-accessed data every ``FLUSH_SECONDS``, on each backend."""
    env = {"BROKER_TRACKING_FLUSH_SECONDS": FLUSH_SECONDS}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("private_redis")
        env["BROKER_MASTER_KEY"] = master_key()
        broker = BrokerProcess(tmp_path / "data", store="redis", redis_url=redis.url, env=env)
    else:
        broker = BrokerProcess(tmp_path / "data", env=env)
    broker.start()
    yield broker
    broker.stop()


def new_user(iam: Any, name: str, actions: list[str] | None = None) -> Creds:
    iam.create_user(UserName=name)
    if actions is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy(actions))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Creds(key["AccessKeyId"], key["SecretAccessKey"])


def wait_for_report(
    iam: Any, arn: str, ready: Callable[[dict[str, Any]], bool], granularity: str = "SERVICE_LEVEL"
) -> dict[str, Any]:
    """Generate reports on ``arn`` until ``ready(services by namespace)``; return the last one."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        job = iam.generate_service_last_accessed_details(Arn=arn, Granularity=granularity)
        got: dict[str, Any] = iam.get_service_last_accessed_details(JobId=job["JobId"])
        got["JobId"] = job["JobId"]
        assert got["JobStatus"] == "COMPLETED"
        services = {s["ServiceNamespace"]: s for s in got["ServicesLastAccessed"]}
        if ready(services):
            return got
        assert time.monotonic() < deadline, f"no use reported in time: {services}"
        time.sleep(0.1)


def by_ns(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["ServiceNamespace"]: s for s in report["ServicesLastAccessed"]}


def test_role_session_use_is_reported(advisor_broker: BrokerProcess) -> None:
    broker = advisor_broker
    account = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    role_arn = iam.create_role(RoleName="Worker", AssumeRolePolicyDocument=trust(account))["Role"][
        "Arn"
    ]
    iam.put_role_policy(
        RoleName="Worker", PolicyName="p", PolicyDocument=policy(["sts:*", "iam:List*", "s3:*"])
    )
    assert iam.get_role(RoleName="Worker")["Role"].get("RoleLastUsed", {}) == {}
    op = new_user(iam, "op", ["sts:AssumeRole"])
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    c = broker.client("sts", op).assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    session = Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    assert broker.client("iam", session).list_users()["Users"]
    ident = broker.client("sts", session).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{account}:assumed-role/Worker/s1"

    got = wait_for_report(iam, role_arn, lambda s: "LastAuthenticated" in s["iam"])
    services = by_ns(got)
    assert list(services) == ["iam", "s3", "sts"]
    assert got["JobType"] == "SERVICE_LEVEL"
    assert got["JobCompletionDate"] >= got["JobCreationDate"]
    iam_entry = services["iam"]
    assert iam_entry["ServiceName"] == "AWS Identity and Access Management"
    assert iam_entry["LastAuthenticatedEntity"] == role_arn
    assert iam_entry["LastAuthenticatedRegion"] == "us-east-1"
    assert iam_entry["TotalAuthenticatedEntities"] == 1
    assert iam_entry["LastAuthenticated"] >= before
    s3 = services["s3"]
    assert "LastAuthenticated" not in s3 and "LastAuthenticatedEntity" not in s3
    assert s3["TotalAuthenticatedEntities"] == 0

    detailed = wait_for_report(
        iam, role_arn, lambda s: "LastAuthenticated" in s["sts"], "ACTION_LEVEL"
    )
    assert detailed["JobType"] == "ACTION_LEVEL"
    tracked = {a["ActionName"]: a for a in by_ns(detailed)["iam"]["TrackedActionsLastAccessed"]}
    assert tracked["ListUsers"]["LastAccessedEntity"] == role_arn
    assert tracked["ListUsers"]["LastAccessedTime"] >= before
    assert "LastAccessedTime" not in tracked["ListRoles"]
    sts_tracked = {a["ActionName"]: a for a in by_ns(detailed)["sts"]["TrackedActionsLastAccessed"]}
    assert sts_tracked["GetCallerIdentity"]["LastAccessedEntity"] == role_arn

    entities = iam.get_service_last_accessed_details_with_entities(
        JobId=got["JobId"], ServiceNamespace="iam"
    )
    assert entities["JobStatus"] == "COMPLETED"
    [entity] = entities["EntityDetailsList"]
    assert entity["EntityInfo"]["Arn"] == role_arn
    assert entity["EntityInfo"]["Type"] == "ROLE"
    assert entity["EntityInfo"]["Name"] == "Worker"
    assert entity["LastAuthenticated"] >= before

    used = iam.get_role(RoleName="Worker")["Role"]["RoleLastUsed"]
    assert used["Region"] == "us-east-1"
    assert used["LastUsedDate"] >= before

    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_service_last_accessed_details(JobId="00000000-0000-4000-8000-000000000000")
    with pytest.raises(iam.exceptions.InvalidInputException):
        iam.generate_service_last_accessed_details(Arn="arn:aws:s3:::some-bucket-name")


def test_user_report_through_group_policy(advisor_broker: BrokerProcess) -> None:
    broker = advisor_broker
    account = broker.account_id()
    iam = broker.client("iam", broker.root_creds())
    iam.create_group(GroupName="readers")
    iam.put_group_policy(
        GroupName="readers", PolicyName="read", PolicyDocument=policy(["iam:GetUser", "ec2:*"])
    )
    alice = new_user(iam, "alice")
    iam.add_user_to_group(GroupName="readers", UserName="alice")
    assert broker.client("iam", alice).get_user()["User"]["UserName"] == "alice"
    alice_arn = f"arn:aws:iam::{account}:user/alice"

    got = wait_for_report(iam, alice_arn, lambda s: "LastAuthenticated" in s["iam"])
    services = by_ns(got)
    assert list(services) == ["ec2", "iam"]
    assert services["iam"]["LastAuthenticatedEntity"] == alice_arn
    assert services["ec2"]["TotalAuthenticatedEntities"] == 0

    group_arn = f"arn:aws:iam::{account}:group/readers"
    group = wait_for_report(iam, group_arn, lambda s: "LastAuthenticated" in s["iam"])
    listed = iam.get_service_last_accessed_details_with_entities(
        JobId=group["JobId"], ServiceNamespace="iam"
    )["EntityDetailsList"]
    assert [(e["EntityInfo"]["Arn"], e["EntityInfo"]["Type"]) for e in listed] == [
        (alice_arn, "USER")
    ]

    # The aws CLI reads the same report.
    cli = broker.aws(
        ["iam", "get-service-last-accessed-details", "--job-id", group["JobId"]],
        broker.root_creds(),
        check=True,
    )
    doc = json.loads(cli.stdout)
    assert doc["JobStatus"] == "COMPLETED"
    assert [s["ServiceNamespace"] for s in doc["ServicesLastAccessed"]] == ["ec2", "iam"]


def test_pending_uses_are_flushed_on_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = BrokerProcess(data, env={"BROKER_TRACKING_FLUSH_SECONDS": "3600"}).start()
    try:
        account = broker.account_id()
        iam = broker.client("iam", broker.root_creds())
        bob = new_user(iam, "bob", ["iam:ListUsers"])
        broker.client("iam", bob).list_users()
    finally:
        assert broker.stop() == 0
    again = BrokerProcess(data).start()
    try:
        iam = again.client("iam", again.root_creds())
        job = iam.generate_service_last_accessed_details(Arn=f"arn:aws:iam::{account}:user/bob")
        got = iam.get_service_last_accessed_details(JobId=job["JobId"])
        [entry] = got["ServicesLastAccessed"]
        assert entry["ServiceNamespace"] == "iam"
        assert entry["LastAuthenticatedEntity"] == f"arn:aws:iam::{account}:user/bob"
    finally:
        again.stop()
