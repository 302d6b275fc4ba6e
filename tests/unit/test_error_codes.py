"""Error codes (``broker.errors``) against botocore's IAM and STS service models.

Every ``code`` the broker answers with is either an error shape of the ``iam`` or ``sts`` model
(so boto3 raises its modelled exception class) or one of the AWS common errors listed below.
A modelled code must carry the HTTP status the model gives it.
"""

from __future__ import annotations

import inspect
from functools import cache

import botocore.session
import pytest

import broker.errors as errors_module
from broker.errors import BrokerError

SERVICES = ("iam", "sts")

# Errors every AWS query API can return without listing them in its model
# (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html and the IAM page).
COMMON_ERRORS = frozenset(
    {
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "RequestExpired",
        "ValidationError",
        "InvalidAction",
        "MissingAction",
        "MissingParameter",
        "InvalidParameterValue",
        "MalformedQueryString",
        "Throttling",
        "InternalFailure",
        "ServiceUnavailable",
        "XAmzContentSHA256Mismatch",
        "RequestEntityTooLarge",
    }
)


@cache
def modelled_statuses() -> dict[str, frozenset[int | None]]:
    """Error code -> the HTTP statuses the iam/sts models give it (None: not stated)."""
    session = botocore.session.get_session()
    found: dict[str, set[int | None]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        for shape in model.error_shapes:
            code = shape.error_code
            status = shape.metadata.get("error", {}).get("httpStatusCode")
            found.setdefault(str(code), set()).add(None if status is None else int(status))
    return {code: frozenset(statuses) for code, statuses in found.items()}


def error_classes() -> list[type[BrokerError]]:
    """Every ``BrokerError`` class defined in ``broker/errors.py``, the base included."""
    return [
        obj
        for _, obj in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(obj, BrokerError) and obj.__module__ == errors_module.__name__
    ]


def code_problems(cls: type[BrokerError]) -> list[str]:
    """Why ``cls`` breaks the rule (empty when it keeps it)."""
    modelled = modelled_statuses()
    if cls.code in modelled:
        stated = {s for s in modelled[cls.code] if s is not None}
        if stated and cls.status not in stated:
            return [f"{cls.__name__}: {cls.code} is {cls.status}, the model says {sorted(stated)}"]
        return []
    if cls.code in COMMON_ERRORS:
        return []
    return [f"{cls.__name__}: {cls.code!r} is neither modelled by iam/sts nor a common error"]


def test_models_are_loaded() -> None:
    modelled = modelled_statuses()
    # Spot checks that the models are the ones the rule is about.
    assert modelled["NoSuchEntity"] == {404}
    assert modelled["InvalidIdentityToken"] == {400}
    assert modelled["MalformedPolicyDocument"] == {400}
    assert "ExpiredTokenException" in modelled


def test_error_classes_are_found() -> None:
    names = {cls.__name__ for cls in error_classes()}
    assert {"BrokerError", "NoSuchEntityError", "AccessDeniedError", "ValidationError"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_code_is_modelled_or_common(cls: type[BrokerError]) -> None:
    assert code_problems(cls) == []


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_status_and_fault_are_consistent(cls: type[BrokerError]) -> None:
    assert 400 <= cls.status <= 599
    assert cls.fault == ("Receiver" if cls.status >= 500 else "Sender"), cls.__name__


def test_the_check_rejects_an_unknown_code_and_a_wrong_status() -> None:
    class MadeUpError(BrokerError):
        code = "NoSuchThingAnywhere"
        status = 400
        fault = "Sender"

    class WrongStatusError(BrokerError):
        code = "NoSuchEntity"
        status = 400
        fault = "Sender"

    class CommonError(BrokerError):
        code = "Throttling"
        status = 400
        fault = "Sender"

    assert code_problems(MadeUpError) != []
    assert code_problems(WrongStatusError) != []
    assert code_problems(CommonError) == []


def test_modelled_codes_reach_boto3_as_modelled_classes() -> None:
    session = botocore.session.get_session()
    sts = session.create_client(
        "sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    modelled_by_sts = {shape.error_code for shape in session.get_service_model("sts").error_shapes}
    for cls in error_classes():
        if cls.code in modelled_by_sts:
            found = sts.exceptions.from_code(cls.code)
            assert found is not sts.exceptions.ClientError, cls.__name__
