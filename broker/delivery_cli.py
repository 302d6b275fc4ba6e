"""Delivery, client side: ``broker credential-process``, credentials for SDK profiles.

An SDK profile with ``credential_process = broker credential-process --role-arn ARN ...`` runs
this command whenever it needs credentials (spec/aws-wire.md section 6.3). The command calls the
broker's STS with botocore, the same way an SDK would:

* ``AssumeRole``, signed with the credentials of ``--source-profile`` (read by botocore from its
  usual config and credentials files, section 6.5) or, without it, of botocore's default chain;
  with ``--external-id`` and ``--mfa-serial``/``--token-code`` passed through;
* ``AssumeRoleWithWebIdentity``, unsigned, with the token read from
  ``--web-identity-token-file`` (section 6.4).

It prints the JSON Version 1 document that botocore's ``ProcessProvider`` and the other SDKs
parse (``Version``, ``AccessKeyId``, ``SecretAccessKey``, ``SessionToken``, ``Expiration``,
plus ``AccountId``) and nothing else on standard output. Standard input and output belong to
the SDK, so an MFA code that was not given with ``--token-code`` is asked for on ``/dev/tty``.

The document is cached (spec/security.md C9 and E8) in
``$XDG_CACHE_HOME/broker/credential-process/`` (``~/.cache/...`` without it), in a file named by
the SHA-256 of the arguments, mode 0600 in a 0700 directory, written atomically. It is reused
until :data:`REFRESH_BEFORE_SECONDS` before its ``Expiration``, so SDKs that re-run the command
on every refresh make no STS call while it lasts, and an MFA code is asked for once per session.

A failure prints one line without secrets on standard error, nothing on standard output, and
exits non-zero (:data:`EXIT_FAILURE`, or :data:`EXIT_USAGE` for bad arguments).

This module is neither core nor service: it is a client of the broker, and the only broker
module that uses botocore (imported when the command runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import stat
import sys
import tempfile
import termios
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NotRequired, TypedDict

from broker.clock import Clock, SystemClock, iso8601

REFRESH_BEFORE_SECONDS = 300
"""Cached credentials are reused until this many seconds before their ``Expiration``."""

DEFAULT_DURATION_SECONDS = 3600
"""``--duration`` when not given (STS's own default)."""

STS_ATTEMPTS = 3
"""Attempts per STS call (botocore's standard retry mode)."""

STS_CONNECT_TIMEOUT_SECONDS = 5
STS_READ_TIMEOUT_SECONDS = 30
FALLBACK_REGION = "us-east-1"
"""Region to sign with when neither the profile nor the environment names one (STS is global)."""

MAX_NESTING = 4
"""How deep credential processes may run each other (a source profile that is itself a
``credential_process`` profile); past it the command fails instead of recursing for ever."""

NESTING_ENV = "_BROKER_CREDENTIAL_PROCESS_DEPTH"
CACHE_SUBDIR = ("broker", "credential-process")
TTY_PATH = "/dev/tty"
EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "broker credential-process"

# Variables that change what the same arguments resolve to: they are part of the cache key.
_KEYED_ENV = (
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
)


class CredentialProcessError(Exception):
    """Raised when credentials cannot be produced; the message is the line printed."""

    exit_code = EXIT_FAILURE


class UsageError(CredentialProcessError):
    """Raised when the arguments are inconsistent."""

    exit_code = EXIT_USAGE


class ProcessCredentials(TypedDict):
    """The JSON Version 1 document of ``credential_process`` (spec/aws-wire.md 6.3)."""

    Version: int
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str
    AccountId: NotRequired[str]


@dataclass(frozen=True, slots=True)
class ProcessRequest:
    """What the command was asked for (its arguments, checked)."""

    role_arn: str
    source_profile: str | None = None
    web_identity_token_file: str | None = None
    session_name: str | None = None
    duration: int = DEFAULT_DURATION_SECONDS
    external_id: str | None = None
    mfa_serial: str | None = None
    token_code: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None


Prompt = Callable[[str], str]
"""Asks the person at the terminal one question; returns the answer without its newline."""


# -- arguments ----------------------------------------------------------------------------------


def add_credential_process_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``credential-process`` options to ``parser``.

    Required and exclusive options are checked by :func:`parse_process_request`, so that every
    mistake is reported on one line.
    """
    parser.add_argument("--role-arn", help="ARN of the role to assume (required)")
    parser.add_argument("--source-profile", help="profile whose credentials sign AssumeRole")
    parser.add_argument(
        "--web-identity-token-file", help="OIDC token file: use AssumeRoleWithWebIdentity"
    )
    parser.add_argument("--session-name", help="RoleSessionName (default: generated)")
    parser.add_argument("--duration", help=f"DurationSeconds (default {DEFAULT_DURATION_SECONDS})")
    parser.add_argument("--external-id", help="ExternalId for the role's trust policy")
    parser.add_argument("--mfa-serial", help="MFA device serial number or ARN")
    parser.add_argument("--token-code", help="MFA code (default: asked for on /dev/tty)")
    parser.add_argument("--endpoint-url", help="the broker's STS endpoint URL")


def parse_process_request(args: argparse.Namespace) -> ProcessRequest:
    """Check the parsed arguments and return them as a :class:`ProcessRequest`.

    Raises :class:`UsageError` for a missing ``--role-arn``, both credential sources at once,
    a non-integer ``--duration``, MFA or external id options with a web identity, or a
    ``--token-code`` without ``--mfa-serial``.
    """

    def text(name: str) -> str | None:
        value = getattr(args, name, None)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"--{name.replace('_', '-')} must not be empty")
        return value.strip()

    role_arn = text("role_arn")
    if role_arn is None:
        raise UsageError("--role-arn is required")
    source_profile = text("source_profile")
    token_file = text("web_identity_token_file")
    if source_profile is not None and token_file is not None:
        raise UsageError("give --source-profile or --web-identity-token-file, not both")
    duration = DEFAULT_DURATION_SECONDS
    raw_duration = text("duration")
    if raw_duration is not None:
        try:
            duration = int(raw_duration)
        except ValueError:
            raise UsageError(
                f"--duration must be a number of seconds, not {raw_duration!r}"
            ) from None
    mfa_serial = text("mfa_serial")
    token_code = text("token_code")
    external_id = text("external_id")
    if token_file is not None and (mfa_serial or token_code or external_id):
        raise UsageError(
            "--mfa-serial, --token-code and --external-id do not apply to a web identity"
        )
    if token_code is not None and mfa_serial is None:
        raise UsageError("--token-code needs --mfa-serial")
    return ProcessRequest(
        role_arn=role_arn,
        source_profile=source_profile,
        web_identity_token_file=token_file,
        session_name=text("session_name"),
        duration=duration,
        external_id=external_id,
        mfa_serial=mfa_serial,
        token_code=token_code,
        endpoint_url=text("endpoint_url"),
    )


# -- cache --------------------------------------------------------------------------------------


def cache_dir(environ: Mapping[str, str]) -> Path:
    """The cache directory: ``$XDG_CACHE_HOME/broker/credential-process`` or ``~/.cache/...``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base directory specification says.
    """
    base = environ.get("XDG_CACHE_HOME", "")
    if not base or not os.path.isabs(base):
        home = environ.get("HOME") or str(Path.home())
        base = os.path.join(home, ".cache")
    return Path(base).joinpath(*CACHE_SUBDIR)


def cache_key(request: ProcessRequest, environ: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the arguments that decide the credentials, and of the environment
    variables that change what those arguments resolve to.

    The MFA code is left out: it changes every 30 seconds while the session it opens does not.
    """
    keyed = asdict(request)
    del keyed["token_code"]
    keyed["environment"] = {name: environ.get(name) for name in _KEYED_ENV}
    blob = json.dumps(keyed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_path(request: ProcessRequest, environ: Mapping[str, str]) -> Path:
    """The cache file of ``request``."""
    return cache_dir(environ) / f"{cache_key(request, environ)}.json"


def parse_expiration(value: str) -> dt.datetime | None:
    """``Expiration`` as an aware UTC datetime, or ``None`` when it is not ISO 8601."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC)


def _document(data: object) -> ProcessCredentials | None:
    """``data`` when it is a complete Version 1 document, else ``None``."""
    if not isinstance(data, dict) or data.get("Version") != 1:
        return None
    keys = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    if not all(isinstance(data.get(k), str) and data[k] for k in keys):
        return None
    doc = ProcessCredentials(
        Version=1,
        AccessKeyId=data["AccessKeyId"],
        SecretAccessKey=data["SecretAccessKey"],
        SessionToken=data["SessionToken"],
        Expiration=data["Expiration"],
    )
    if isinstance(data.get("AccountId"), str):
        doc["AccountId"] = data["AccountId"]
    return doc


def fresh_enough(doc: ProcessCredentials, now: dt.datetime) -> bool:
    """Whether ``doc`` may still be handed out: more than :data:`REFRESH_BEFORE_SECONDS` left."""
    expires = parse_expiration(doc["Expiration"])
    if expires is None:
        return False
    return (expires - now).total_seconds() > REFRESH_BEFORE_SECONDS


def read_cached(path: Path, now: dt.datetime) -> ProcessCredentials | None:
    """The cached document at ``path`` if it is ours, private, complete and fresh enough.

    A file that is missing, a symlink, owned by another user, readable by group or others,
    unparsable or close to expiry counts as absent (it is replaced on the next write).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
        try:
            data = json.loads(handle.read())
        except (ValueError, UnicodeDecodeError):
            return None
    doc = _document(data)
    if doc is None or not fresh_enough(doc, now):
        return None
    return doc


def _private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents); make it and its ``broker`` parent mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in (path.parent, path):
        info = directory.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
            directory.chmod(0o700)


def write_cached(path: Path, doc: ProcessCredentials) -> None:
    """Write ``doc`` to ``path`` atomically (temporary file, then rename), mode 0600."""
    _private_dir(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# -- MFA prompt ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_echo(fd: int) -> Iterator[None]:
    """Turn terminal echo off on ``fd`` for the block (when it is a terminal)."""
    try:
        before = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    quiet = list(before)
    quiet[3] = quiet[3] & ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, before)


def prompt_tty(question: str, tty_path: str = TTY_PATH) -> str:
    """Ask ``question`` on the controlling terminal and read one line from it (no echo).

    Never falls back to standard input or output: those carry the SDK's conversation with
    this process. Raises :class:`CredentialProcessError` when there is no terminal.
    """
    try:
        fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise CredentialProcessError(
            f"--mfa-serial needs --token-code or a terminal to ask on ({tty_path}: {exc.strerror})"
        ) from None
    with open(fd, "r+b", buffering=0) as tty, _no_echo(fd):
        tty.write(question.encode("utf-8"))
        line = bytearray()
        while not line.endswith(b"\n"):
            chunk = tty.read(1)
            if not chunk:
                break
            line += chunk
        tty.write(b"\n")
    return line.decode("utf-8", "replace").strip()


# -- STS ----------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _nesting(environ: Mapping[str, str]) -> int:
    try:
        return int(environ.get(NESTING_ENV, "0"))
    except ValueError:
        return 0


def _account_of(arn: str) -> str | None:
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[4].isdigit() else None


def _document_from(response: Mapping[str, Any]) -> ProcessCredentials:
    """The Version 1 document of an AssumeRole* response."""
    creds = response["Credentials"]
    expiration = creds["Expiration"]
    if isinstance(expiration, dt.datetime):
        expires = iso8601(expiration)
    else:
        parsed = parse_expiration(str(expiration))
        if parsed is None:
            raise CredentialProcessError("the broker answered an unreadable Expiration")
        expires = iso8601(parsed)
    doc = ProcessCredentials(
        Version=1,
        AccessKeyId=str(creds["AccessKeyId"]),
        SecretAccessKey=str(creds["SecretAccessKey"]),
        SessionToken=str(creds["SessionToken"]),
        Expiration=expires,
    )
    account = _account_of(str(response.get("AssumedRoleUser", {}).get("Arn", "")))
    if account is not None:
        doc["AccountId"] = account
    return doc


def fetch_credentials(
    request: ProcessRequest,
    now: dt.datetime,
    *,
    prompt: Prompt = prompt_tty,
) -> ProcessCredentials:
    """Call the broker's STS for ``request`` and return the Version 1 document.

    Raises :class:`CredentialProcessError` with a one-line reason (the AWS error code and
    message for an STS refusal; botocore's reason for a configuration or network problem).
    """
    try:
        import botocore.config
        import botocore.exceptions
        import botocore.session
        from botocore import UNSIGNED
    except ImportError:
        raise CredentialProcessError("botocore is not installed (pip install botocore)") from None

    session_name = request.session_name or f"credential-process-{int(now.timestamp())}"
    try:
        session = botocore.session.Session(profile=request.source_profile)
        region = session.get_config_variable("region") or FALLBACK_REGION
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": STS_ATTEMPTS},
            connect_timeout=STS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=STS_READ_TIMEOUT_SECONDS,
        )
        if request.web_identity_token_file is not None:
            token = _read_token(request.web_identity_token_file)
            sts = session.create_client(
                "sts",
                region_name=region,
                endpoint_url=request.endpoint_url,
                config=config.merge(botocore.config.Config(signature_version=UNSIGNED)),
            )
            response = sts.assume_role_with_web_identity(
                RoleArn=request.role_arn,
                RoleSessionName=session_name,
                WebIdentityToken=token,
                DurationSeconds=request.duration,
            )
        else:
            if session.get_credentials() is None:
                where = (
                    f"profile {request.source_profile!r}"
                    if request.source_profile
                    else "the default credential chain"
                )
                raise CredentialProcessError(f"no credentials found in {where}")
            params: dict[str, object] = {
                "RoleArn": request.role_arn,
                "RoleSessionName": session_name,
                "DurationSeconds": request.duration,
            }
            if request.external_id is not None:
                params["ExternalId"] = request.external_id
            if request.mfa_serial is not None:
                code = request.token_code
                if code is None:
                    code = prompt(f"Enter MFA code for {request.mfa_serial}: ")
                params["SerialNumber"] = request.mfa_serial
                params["TokenCode"] = code
            sts = session.create_client(
                "sts", region_name=region, endpoint_url=request.endpoint_url, config=config
            )
            response = sts.assume_role(**params)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        raise CredentialProcessError(_one_line(f"{code}: {message}")) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialProcessError(_one_line(str(exc))) from None
    return _document_from(response)


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CredentialProcessError(
            f"cannot read web identity token file {path}: {reason}"
        ) from None
    if not token:
        raise CredentialProcessError(f"web identity token file {path} is empty")
    return token


# -- the command --------------------------------------------------------------------------------


def credential_process(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    prompt: Prompt = prompt_tty,
) -> int:
    """Run ``broker credential-process``: print the cached or a new Version 1 document.

    Returns the exit status: 0 with the document on ``stdout``; otherwise one line on
    ``stderr`` and nothing on ``stdout``. A cache that cannot be written does not fail the
    command (the credentials are still good), it only costs an STS call next time.
    """
    env = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    now = (clock or SystemClock()).now()
    try:
        request = parse_process_request(args)
        depth = _nesting(env)
        if depth >= MAX_NESTING:
            raise CredentialProcessError(
                f"credential processes nested {depth} deep: does a source profile run itself?"
            )
        path = cache_path(request, env)
        doc = read_cached(path, now)
        if doc is None:
            # Children that botocore starts for the source profile see how deep they are.
            saved = os.environ.get(NESTING_ENV)
            os.environ[NESTING_ENV] = str(depth + 1)
            try:
                doc = fetch_credentials(request, now, prompt=prompt)
            finally:
                if saved is None:
                    os.environ.pop(NESTING_ENV, None)
                else:
                    os.environ[NESTING_ENV] = saved
            try:
                write_cached(path, doc)
            except OSError as exc:
                err.write(f"{PROG}: warning: cannot cache credentials in {path.parent}: "
                          f"{exc.strerror}\n")  # fmt: skip
    except CredentialProcessError as exc:
        err.write(f"{PROG}: {_one_line(str(exc))}\n")
        return exc.exit_code
    out.write(json.dumps(doc) + "\n")
    out.flush()
    return 0
