"""Errors: the one table of AWS error codes the broker answers with.

Every failure a client can see is a ``BrokerError``. Each class carries the AWS error
``code``, the HTTP ``status`` and the ``fault`` ("Sender" for client mistakes, "Receiver"
for server faults); ``broker.api.query`` only renders them. This module imports nothing
from ``broker``.

::

    BrokerError
    ├── ValidationError (ValidationError 400)
    │   ├── InvalidInputError (InvalidInput 400)
    │   ├── MissingParameterError (MissingParameter 400)
    │   ├── InvalidParameterValueError (InvalidParameterValue 400)
    │   ├── InvalidActionError (InvalidAction 400)
    │   ├── MissingActionError (MissingAction 400)
    │   ├── MalformedQueryStringError (MalformedQueryString 400)
    │   └── RequestTooLargeError (RequestEntityTooLarge 413)
    ├── MalformedPolicyError (MalformedPolicyDocument 400; .findings)
    ├── PackedPolicyTooLargeError (PackedPolicyTooLarge 400)
    ├── InvalidAuthorizationMessageError (InvalidAuthorizationMessageException 400)
    ├── AuthError
    │   ├── MissingAuthenticationTokenError (MissingAuthenticationToken 403)
    │   ├── IncompleteSignatureError (IncompleteSignature 400)
    │   ├── InvalidClientTokenIdError (InvalidClientTokenId 403)
    │   ├── SignatureDoesNotMatchError (SignatureDoesNotMatch 403)
    │   ├── ContentSha256MismatchError (XAmzContentSHA256Mismatch 400)
    │   ├── ExpiredTokenError (ExpiredToken 403)
    │   └── RequestExpiredError (RequestExpired 400)
    ├── AccessDeniedError (AccessDenied 403)
    ├── ThrottledError (Throttling 400)
    ├── WebIdentityError
    │   ├── InvalidIdentityTokenError (InvalidIdentityToken 400)
    │   ├── ExpiredIdentityTokenError (ExpiredTokenException 400)
    │   ├── IdpRejectedClaimError (IDPRejectedClaim 403)
    │   └── IdpCommunicationError (IDPCommunicationError 400)
    ├── EntityError
    │   ├── NoSuchEntityError (NoSuchEntity 404)
    │   ├── EntityAlreadyExistsError (EntityAlreadyExists 409)
    │   ├── LimitExceededError (LimitExceeded 409)
    │   ├── DeleteConflictError (DeleteConflict 409)
    │   └── ConcurrentModificationError (ConcurrentModification 409)
    ├── OutboundFederationDisabledError (OutboundWebIdentityFederationDisabledException 403)
    ├── SessionDurationEscalationError (SessionDurationEscalationException 403)
    ├── JwtPayloadSizeExceededError (JWTPayloadSizeExceededException 400)
    ├── FeatureEnabledError (FeatureEnabled 409)   FeatureDisabledError (FeatureDisabled 404)
    ├── InvalidAuthenticationCodeError (InvalidAuthenticationCode 403)
    ├── PasswordPolicyViolationError (PasswordPolicyViolation 400)
    ├── InvalidUserTypeError (InvalidUserType 400)
    ├── EntityTemporarilyUnmodifiableError (EntityTemporarilyUnmodifiable 409)
    ├── CredentialReportNotPresentError (ReportNotPresent 410)
    ├── CredentialReportExpiredError (ReportExpired 410)
    ├── CredentialReportNotReadyError (ReportInProgress 404)
    ├── UnavailableError (ServiceUnavailable 503)
    └── InternalFailureError (InternalFailure 500)
        └── KeyringMismatchError (a stored key cannot be opened with this master key)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BrokerError(Exception):
    """Base of every error a client can see."""

    code = "InternalFailure"
    status = 500
    fault = "Receiver"
    default_message = "An internal error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)


# -- request shape -----------------------------------------------------------------------


class ValidationError(BrokerError):
    """Raised when a parameter breaks a model constraint (length, pattern, range, enum)."""

    code = "ValidationError"
    status = 400
    fault = "Sender"
    default_message = "The request is invalid."


class InvalidInputError(ValidationError):
    """Raised when IAM's own semantic checks reject a value (bad ARN, path, tag set)."""

    code = "InvalidInput"


class MissingParameterError(ValidationError):
    """Raised when a required parameter is absent and the action reports it this way."""

    code = "MissingParameter"


class InvalidParameterValueError(ValidationError):
    """Raised when a parameter value is unusable (outside validation-message style)."""

    code = "InvalidParameterValue"


class InvalidActionError(ValidationError):
    """Raised when ``Action`` names no operation of the service, or ``Version`` is wrong."""

    code = "InvalidAction"


class MissingActionError(ValidationError):
    """Raised when the request carries no ``Action`` parameter."""

    code = "MissingAction"
    default_message = "Missing Action"


class MalformedQueryStringError(ValidationError):
    """Raised when the form body or query string cannot be decoded."""

    code = "MalformedQueryString"


class RequestTooLargeError(ValidationError):
    """Raised when the request body is larger than ``[security] max_body_bytes``."""

    code = "RequestEntityTooLarge"
    status = 413
    default_message = "Request body is too large."


# -- policies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a policy document: a catalogue code, where, and what."""

    code: str
    path: str
    detail: str


class MalformedPolicyError(BrokerError):
    """Raised when a policy document fails parsing or validation; ``findings`` says why."""

    code = "MalformedPolicyDocument"
    status = 400
    fault = "Sender"
    default_message = "The policy document is malformed."

    def __init__(self, message: str | None = None, findings: Sequence[Finding] = ()) -> None:
        self.findings = tuple(findings)
        if message is None and self.findings:
            message = self.findings[0].detail
        super().__init__(message)


class InvalidAuthorizationMessageError(BrokerError):
    """Raised when DecodeAuthorizationMessage gets a message it did not issue (or tampered)."""

    code = "InvalidAuthorizationMessageException"
    status = 400
    fault = "Sender"
    default_message = "The message is invalid or was not issued for this account."


class PackedPolicyTooLargeError(BrokerError):
    """Raised when a session policy does not fit in the session token."""

    code = "PackedPolicyTooLarge"
    status = 400
    fault = "Sender"


# -- authentication ----------------------------------------------------------------------


class AuthError(BrokerError):
    """Base of the errors that reject a request's credentials or signature."""

    status = 403
    fault = "Sender"


class MissingAuthenticationTokenError(AuthError):
    """Raised when a signed action arrives with no signature at all."""

    code = "MissingAuthenticationToken"
    default_message = "Request is missing Authentication Token"


class IncompleteSignatureError(AuthError):
    """Raised when the Authorization header or presigned parameters are malformed."""

    code = "IncompleteSignature"
    status = 400
    default_message = "The request signature does not conform to AWS standards."


class InvalidClientTokenIdError(AuthError):
    """Raised when the access key id or the session token is unknown, inactive or garbled."""

    code = "InvalidClientTokenId"
    default_message = "The security token included in the request is invalid."


class SignatureDoesNotMatchError(AuthError):
    """Raised when the signature is wrong, or the request date is outside the clock window."""

    code = "SignatureDoesNotMatch"
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details."
    )


class ContentSha256MismatchError(AuthError):
    """Raised when ``x-amz-content-sha256`` does not match the body received."""

    code = "XAmzContentSHA256Mismatch"
    status = 400
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class ExpiredTokenError(AuthError):
    """Raised when temporary credentials are used after their expiry."""

    code = "ExpiredToken"
    default_message = "The security token included in the request is expired"


class RequestExpiredError(AuthError):
    """Raised when a presigned URL is used after ``X-Amz-Date + X-Amz-Expires``."""

    code = "RequestExpired"
    status = 400
    default_message = "Request has expired."


# -- authorization and throttling ---------------------------------------------------------


class AccessDeniedError(BrokerError):
    """Raised when policy evaluation does not allow the action."""

    code = "AccessDenied"
    status = 403
    fault = "Sender"
    default_message = "Access denied"


class ThrottledError(BrokerError):
    """Raised when a rate limit rejects the request before any work is done."""

    code = "Throttling"
    status = 400
    fault = "Sender"
    default_message = "Rate exceeded"


# -- web identity (AssumeRoleWithWebIdentity) ---------------------------------------------


class WebIdentityError(BrokerError):
    """Base of the errors that reject a web identity token or its identity provider."""

    status = 400
    fault = "Sender"


class InvalidIdentityTokenError(WebIdentityError):
    """Raised when a web identity token is malformed, badly signed or not meant for us."""

    code = "InvalidIdentityToken"
    default_message = "The web identity token that was passed could not be validated."


class ExpiredIdentityTokenError(WebIdentityError):
    """Raised when a web identity token's ``exp`` has passed (beyond the leeway)."""

    code = "ExpiredTokenException"
    default_message = "Token expired: the web identity token that was passed is expired."


class IdpRejectedClaimError(WebIdentityError):
    """Raised when a verified token carries a claim STS cannot accept (subject, tags...)."""

    code = "IDPRejectedClaim"
    status = 403
    default_message = "The web identity token carries a claim that was rejected."


class IdpCommunicationError(WebIdentityError):
    """Raised when the provider's discovery document or keys cannot be fetched or trusted."""

    code = "IDPCommunicationError"
    default_message = (
        "The request could not be fulfilled because the identity provider (IDP) that was asked "
        "to verify the incoming identity token could not be reached."
    )


# -- entities ----------------------------------------------------------------------------


class EntityError(BrokerError):
    """Base of the IAM entity-state errors."""

    status = 409
    fault = "Sender"


class NoSuchEntityError(EntityError):
    """Raised when a named user, group, role, policy, key or profile does not exist."""

    code = "NoSuchEntity"
    status = 404


class EntityAlreadyExistsError(EntityError):
    """Raised when creating an entity whose name (case-insensitively) is taken."""

    code = "EntityAlreadyExists"


class LimitExceededError(EntityError):
    """Raised when a change would exceed an IAM quota."""

    code = "LimitExceeded"


class DeleteConflictError(EntityError):
    """Raised when deleting an entity that still has attachments, keys or members."""

    code = "DeleteConflict"


class ConcurrentModificationError(EntityError):
    """Raised when retries inside the broker could not settle a write race (rare)."""

    code = "ConcurrentModification"


# -- STS identity tokens and MFA ---------------------------------------------------------


class OutboundFederationDisabledError(BrokerError):
    """Raised when GetWebIdentityToken is called in an account that has not enabled it."""

    code = "OutboundWebIdentityFederationDisabledException"
    status = 403
    fault = "Sender"
    default_message = "Outbound web identity federation is not enabled for this account."


class SessionDurationEscalationError(BrokerError):
    """Raised when a session's JWT would outlive the session that asked for it."""

    code = "SessionDurationEscalationException"
    status = 403
    fault = "Sender"
    default_message = (
        "The requested token duration would extend the session beyond its original expiration time."
    )


class JwtPayloadSizeExceededError(BrokerError):
    """Raised when the JWT's payload would exceed :data:`MAX_JWT_PAYLOAD_BYTES`."""

    code = "JWTPayloadSizeExceededException"
    status = 400
    fault = "Sender"
    default_message = "The requested token payload size exceeds the maximum allowed size."


class FeatureEnabledError(BrokerError):
    """Raised when enabling outbound federation in an account where it is already on."""

    code = "FeatureEnabled"
    status = 409
    fault = "Sender"
    default_message = "Outbound web identity federation is already enabled for this account."


class FeatureDisabledError(BrokerError):
    """Raised when disabling, or asking about, outbound federation while it is off."""

    code = "FeatureDisabled"
    status = 404
    fault = "Sender"
    default_message = "Outbound web identity federation is not enabled for this account."


class InvalidAuthenticationCodeError(BrokerError):
    """Raised when the two codes of EnableMFADevice / ResyncMFADevice do not prove the seed."""

    code = "InvalidAuthenticationCode"
    status = 403
    fault = "Sender"
    default_message = "Authentication code for device is not valid."


class PasswordPolicyViolationError(BrokerError):
    """Raised when a new console password breaks the account password policy."""

    code = "PasswordPolicyViolation"
    status = 400
    fault = "Sender"
    default_message = "Password does not conform to the account password policy."


class InvalidUserTypeError(BrokerError):
    """Raised when ChangePassword is called by anything but an IAM user."""

    code = "InvalidUserType"
    status = 400
    fault = "Sender"
    default_message = "Only IAM users can change their own password."


class EntityTemporarilyUnmodifiableError(BrokerError):
    """Raised when a password cannot be changed now (expired under HardExpiry)."""

    code = "EntityTemporarilyUnmodifiable"
    status = 409
    fault = "Sender"
    default_message = "The entity cannot be modified at this time."


class CredentialReportNotPresentError(BrokerError):
    """Raised by GetCredentialReport when no credential report was ever generated."""

    code = "ReportNotPresent"
    status = 410
    fault = "Sender"
    default_message = (
        "The credential report does not exist. Use GenerateCredentialReport to generate one."
    )


class CredentialReportExpiredError(BrokerError):
    """Raised by GetCredentialReport when the last report is older than four hours."""

    code = "ReportExpired"
    status = 410
    fault = "Sender"
    default_message = (
        "The credential report has expired. Use GenerateCredentialReport to generate a new one."
    )


class CredentialReportNotReadyError(BrokerError):
    """Raised by GetCredentialReport while the credential report is being generated."""

    code = "ReportInProgress"
    status = 404
    fault = "Sender"
    default_message = "The credential report is still being generated."


# -- server side -------------------------------------------------------------------------


class UnavailableError(BrokerError):
    """Raised when the store cannot be reached; the client should retry later."""

    code = "ServiceUnavailable"
    status = 503
    fault = "Receiver"
    default_message = "Service is unavailable. Please retry later."


class InternalFailureError(BrokerError):
    """Raised (or substituted) for an unexpected server fault; details go to the log only."""

    code = "InternalFailure"
    status = 500
    fault = "Receiver"


class KeyringMismatchError(InternalFailureError):
    """Raised when an active stored key cannot be opened with this node's master key."""

    default_message = (
        "The keyring in the store was sealed under another master key; "
        "every node must use the same master key."
    )
