"""Unit tests: broker.core.sigv4 against the AWS SigV4 test-suite vectors.

One test per case folder under ``shared/testdata/sigv4`` (see its README). Every case is run,
including the four that botocore's own runner skips: a from-scratch parser reads their
request lines without trouble.

Cases with special handling (no case is excluded):

* ``get-vanilla-with-session-token``: the ``.req`` lacks the token header, which the signer
  adds; it is taken from the ``.creq``. Its ``.sreq`` carries a stale signature (that of
  ``get-vanilla``), so it must be *rejected*; the request with the ``.authz`` value must verify.
* ``post-sts-token/post-sts-header-after``: the token header is added after signing and is
  not signed; verification accepts it unsigned (spec B3).

The vector folder is found through ``BROKER_SHARED_DIR`` (the ``shared`` folder), or beside the
repository, or inside it. A missing folder fails the run.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from broker.core import sigv4
from broker.errors import SignatureDoesNotMatchError

ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SERVICE = "service"
REGION = "us-east-1"
VECTOR_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
EXPECTED_CASE_COUNT = 34
STALE_SREQ_CASES = frozenset({"get-vanilla-with-session-token"})


def _candidate_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    repo = here.parents[2]
    candidates = []
    override = os.environ.get("BROKER_SHARED_DIR")
    if override:
        candidates.append(Path(override) / "testdata" / "sigv4")
    candidates.append(repo.parent / "shared" / "testdata" / "sigv4")
    candidates.append(repo / "shared" / "testdata" / "sigv4")
    return candidates


def _vector_dir() -> Path | None:
    for candidate in _candidate_dirs():
        if candidate.is_dir():
            return candidate
    return None


VECTOR_DIR = _vector_dir()


def _cases() -> list[Path]:
    if VECTOR_DIR is None:
        return []
    return sorted(req.parent for req in VECTOR_DIR.rglob("*.req") if req.stem == req.parent.name)


CASES = _cases()


def _case_id(case: Path) -> str:
    assert VECTOR_DIR is not None
    return case.relative_to(VECTOR_DIR).as_posix()


def _read(case: Path, ext: str) -> str:
    return (case / f"{case.name}.{ext}").read_bytes().decode("utf-8").replace("\r", "")


def parse_http_request(text: str) -> sigv4.SignedRequest:
    """Parse a raw test-suite request the way an HTTP server would hand it over."""
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    request_line = lines[0]
    method, _, rest = request_line.partition(" ")
    target = rest.rsplit(" ", 1)[0]  # the path may itself contain spaces (get-space)
    path, _, raw_query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # obsolete line folding: continue the previous value
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        assert colon, f"bad header line {line!r}"
        headers.append((name, value.strip()))
    query = tuple(parse_qsl(raw_query, keep_blank_values=True))
    return sigv4.SignedRequest(
        method=method,
        path=path,
        query=query,
        headers=tuple(headers),
        body=body.encode("utf-8") if sep else b"",
    )


def _creq_header(creq: str, name: str) -> str | None:
    for line in creq.split("\n"):
        key, colon, value = line.partition(":")
        if colon and key == name:
            return value
    return None


def _unsigned_request(case: Path) -> sigv4.SignedRequest:
    req = parse_http_request(_read(case, "req"))
    token = _creq_header(_read(case, "creq"), "x-amz-security-token")
    names = {name.lower() for name, _ in req.headers}
    if token is not None and "x-amz-security-token" not in names:
        req = replace(req, headers=(*req.headers, ("X-Amz-Security-Token", token)))
    return req


def _auth_for(req: sigv4.SignedRequest) -> sigv4.SigV4Auth:
    """Build the signing parameters independently of the expected files."""
    signed = tuple(sorted({name.lower() for name, _ in req.headers}))
    token = next((v for n, v in req.headers if n.lower() == "x-amz-security-token"), None)
    return sigv4.SigV4Auth(
        access_key_id=ACCESS_KEY_ID,
        date=VECTOR_TIME.strftime("%Y%m%d"),
        region=REGION,
        service=SERVICE,
        signed_headers=signed,
        signature="",
        amz_date=VECTOR_TIME,
        presigned=False,
        expires=None,
        security_token=token,
    )


def test_vector_folder_is_present() -> None:
    assert VECTOR_DIR is not None, f"SigV4 vectors not found; tried {_candidate_dirs()}"
    assert len(CASES) == EXPECTED_CASE_COUNT


@pytest.mark.parametrize(
    "case", CASES or [pytest.param(None, id="vector-folder-missing")], ids=_case_id
)
def test_vector(case: Path | None) -> None:
    assert case is not None, f"SigV4 vectors not found; tried {_candidate_dirs()}"
    req = _unsigned_request(case)
    auth = _auth_for(req)

    canonical = sigv4.canonical_request(req, auth)
    assert canonical == _read(case, "creq")
    to_sign = sigv4.string_to_sign(auth, canonical)
    assert to_sign == _read(case, "sts")
    signature = sigv4.compute_signature(req, auth, SECRET)
    authorization = (
        f"{sigv4.ALGORITHM} Credential={ACCESS_KEY_ID}/{auth.date}/{REGION}/{SERVICE}/"
        f"aws4_request, SignedHeaders={';'.join(auth.signed_headers)}, Signature={signature}"
    )
    assert authorization == _read(case, "authz")

    signed_req = parse_http_request(_read(case, "sreq"))
    parsed = sigv4.parse_auth(signed_req)
    assert parsed is not None
    assert parsed.access_key_id == ACCESS_KEY_ID
    assert parsed.amz_date == VECTOR_TIME
    services = frozenset({SERVICE})
    if case.name in STALE_SREQ_CASES:
        with pytest.raises(SignatureDoesNotMatchError):
            sigv4.verify_request(signed_req, parsed, SECRET, now=VECTOR_TIME, services=services)
        headers = tuple(
            (n, _read(case, "authz") if n.lower() == "authorization" else v)
            for n, v in signed_req.headers
        )
        signed_req = replace(signed_req, headers=headers)
        parsed = sigv4.parse_auth(signed_req)
        assert parsed is not None
    sigv4.verify_request(signed_req, parsed, SECRET, now=VECTOR_TIME, services=services)
    # The same signed request fails with any other secret.
    with pytest.raises(SignatureDoesNotMatchError):
        sigv4.verify_request(
            signed_req, parsed, SECRET[:-1] + "X", now=VECTOR_TIME, services=services
        )
