"""API test harness: the query-protocol listener in-process on a ``MemoryStore``.

Each test gets a fresh runtime (its own store, keyring and caches), one account created through
``AccountService.create_account`` and an aiohttp ``TestClient`` bound to the API application.
Requests are signed with botocore's own ``SigV4Auth`` against the test server's URL, so the
signed ``Host`` is what the server sees. Replies are parsed with ``xml.etree.ElementTree``.

Every HTTP response the application sends is recorded; a test in this folder fails when any of
them has a status of 500 or more (client mistakes are never server faults).
"""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.handlers import json_decode_policies
from botocore.parsers import QueryParser
from botocore.session import get_session
from yarl import URL

from broker.app import Runtime, build_runtime, make_app
from broker.config import load_config
from broker.store.memory import MemoryStore

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_VERSION = "2010-05-08"
STS_VERSION = "2011-06-15"
REGION = "us-east-1"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
TRUST_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)

# Statuses of every response of the running test (reset by the autouse fixture below).
_STATUSES: list[tuple[int, str]] = []


def allow(actions: str | list[str], resources: str | list[str] = "*") -> str:
    """Return an identity policy document with one Allow statement."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}],
        }
    )


def deny(actions: str | list[str], resources: str | list[str] = "*") -> str:
    """Return an identity policy document with one Deny statement."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": actions, "Resource": resources}],
        }
    )


ENCODED_SUFFIX = " Encoded authorization failure message: "


def q(name: str, ns: str = IAM_NS) -> str:
    """Return the namespace-qualified tag ``name`` for ElementTree lookups."""
    return f"{{{ns}}}{name}"


def tag_params(
    tags: Mapping[str, str] | list[tuple[str, str]], member: str = "Tags"
) -> dict[str, str]:
    """Encode tags as ``Tags.member.N.Key`` / ``Tags.member.N.Value`` pairs."""
    items = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
    out: dict[str, str] = {}
    for i, (key, value) in enumerate(items, start=1):
        out[f"{member}.member.{i}.Key"] = key
        out[f"{member}.member.{i}.Value"] = value
    return out


def to_form(values: Mapping[str, str | int | bool]) -> dict[str, str]:
    """Encode scalar members as the query protocol does (``bool`` as ``true``/``false``)."""
    return {
        key: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for key, value in values.items()
    }


def list_params(name: str, values: list[str]) -> dict[str, str]:
    """Encode a list as ``Name.member.N`` pairs."""
    return {f"{name}.member.{i}": v for i, v in enumerate(values, start=1)}


@dataclass(frozen=True, slots=True)
class Creds:
    """A long-term access key pair."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(slots=True)
class Reply:
    """One HTTP reply of the API listener, with its XML parsed (namespace-aware)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    action: str
    ns: str
    root: ET.Element | None

    @property
    def raw_text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """True for a 2xx reply."""
        return 200 <= self.status < 300

    @property
    def error(self) -> ET.Element | None:
        """The ``<ErrorResponse><Error>`` element, if this is an error document."""
        if self.root is None or self.root.tag != q("ErrorResponse", self.ns):
            return None
        return self.root.find(q("Error", self.ns))

    @property
    def code(self) -> str | None:
        """The error code, or ``None`` for a success document."""
        err = self.error
        return None if err is None else err.findtext(q("Code", self.ns))

    @property
    def message(self) -> str | None:
        """The error message, or ``None`` for a success document."""
        err = self.error
        return None if err is None else err.findtext(q("Message", self.ns))

    @property
    def fault(self) -> str | None:
        """The error ``Type`` (``Sender``/``Receiver``), or ``None``."""
        err = self.error
        return None if err is None else err.findtext(q("Type", self.ns))

    @property
    def request_id(self) -> str | None:
        """The RequestId inside the body (success or error shape)."""
        if self.root is None:
            return None
        if self.error is not None:
            return self.root.findtext(q("RequestId", self.ns))
        return self.root.findtext(f"{q('ResponseMetadata', self.ns)}/{q('RequestId', self.ns)}")

    @property
    def result(self) -> ET.Element:
        """The ``<{Action}Result>`` element; fails the test when the call did not succeed."""
        assert self.ok, f"{self.action} failed: {self.status} {self.code}: {self.message}"
        assert self.root is not None
        assert self.root.tag == q(f"{self.action}Response", self.ns), self.root.tag
        found = self.root.find(q(f"{self.action}Result", self.ns))
        assert found is not None, f"no <{self.action}Result> in {self.body!r}"
        return found

    def text(self, path: str) -> str | None:
        """Text at a slash-separated path of plain names below the result element."""
        return self.result.findtext(_qualify(path, self.ns))

    def find(self, path: str) -> ET.Element | None:
        """Element at a slash-separated path below the result element."""
        return self.result.find(_qualify(path, self.ns))

    def members(self, path: str) -> list[ET.Element]:
        """The ``<member>`` children of the list at ``path`` (which must be present)."""
        node = self.find(path)
        assert node is not None, f"list {path} missing from {self.body!r}"
        return node.findall(q("member", self.ns))

    def member_texts(self, path: str, child: str | None = None) -> list[str]:
        """Texts of the members of list ``path`` (or of their ``child`` element)."""
        out = []
        for m in self.members(path):
            text = m.text if child is None else m.findtext(_qualify(child, self.ns))
            out.append(text or "")
        return out

    def expect(self, status: int, code: str, message: str | None = None) -> Reply:
        """Assert this is the error ``code`` with ``status`` (and ``message`` if given)."""
        assert (self.status, self.code) == (status, code), (
            f"{self.action}: expected {status} {code}, got {self.status} {self.code}: "
            f"{self.message}"
        )
        if message is not None:
            got = self.message or ""
            if code == "AccessDenied" and ENCODED_SUFFIX in got:
                # Denials end with an encoded authorization failure message (STS decodes it).
                got = got.split(ENCODED_SUFFIX, 1)[0]
            assert got == message
        return self


async def _chunks(payload: bytes, size: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def _qualify(path: str, ns: str) -> str:
    return "/".join(q(part, ns) for part in path.split("/"))


def decode_document(text: str | None) -> Any:
    """Decode a URL-encoded JSON policy document as IAM returns it."""
    assert text is not None
    return json.loads(urllib.parse.unquote(text))


_SERVICE_MODELS: dict[str, Any] = {}


def service_model(service: str) -> Any:
    """botocore's model of ``service`` (loaded once per test session)."""
    if service not in _SERVICE_MODELS:
        _SERVICE_MODELS[service] = get_session().get_service_model(service)
    return _SERVICE_MODELS[service]


def boto_parse(reply: Reply, service: str = "iam") -> dict[str, Any]:
    """Parse ``reply`` exactly as boto3 would (QueryParser, then IAM's policy decoding)."""
    operation = service_model(service).operation_model(reply.action)
    response = {"body": reply.body, "headers": dict(reply.headers), "status_code": reply.status}
    parsed: dict[str, Any] = QueryParser().parse(response, operation.output_shape)
    if service == "iam" and reply.ok:
        json_decode_policies(parsed, operation)
    return parsed


class Api:
    """A signed-request client of the in-process API listener for one account."""

    def __init__(self, rt: Runtime, client: TestClient[web.Request, web.Application]) -> None:
        self.rt = rt
        self.client = client
        self.root: Creds = Creds("", "")
        self.account_id = ""

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:PORT``)."""
        return str(self.client.make_url("")).rstrip("/")

    def sign_headers(
        self,
        method: str,
        url: str,
        body: bytes,
        creds: Creds,
        service: str,
        headers: Mapping[str, str],
    ) -> dict[str, str]:
        """Return ``headers`` plus the SigV4 headers botocore adds for this request."""
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        credentials = Credentials(creds.access_key_id, creds.secret_access_key)
        SigV4Auth(credentials, service, REGION).add_auth(request)
        return {k: str(v) for k, v in request.headers.items()}

    async def send(
        self,
        action: str,
        *,
        method: str = "POST",
        body: bytes | None = None,
        query: str = "",
        creds: Creds | None = None,
        service: str = "iam",
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        stream: bool = False,
    ) -> Reply:
        """Send one raw request (body and query string as given) and parse the reply.

        ``stream`` sends the body chunked, without a ``Content-Length``.
        """
        url = self.url + "/" + (f"?{query}" if query else "")
        payload = body if body is not None else b""
        hdrs: dict[str, str] = dict(headers or {})
        if method == "POST" and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = FORM_TYPE
        if sign:
            hdrs = self.sign_headers(method, url, payload, creds or self.root, service, hdrs)
        target = URL("/" + (f"?{query}" if query else ""), encoded=True)
        data: bytes | io.BytesIO | AsyncIterator[bytes] | None = payload or None
        if stream and payload:
            data = _chunks(payload)
        elif len(payload) > 65536:  # aiohttp warns about large raw bytes bodies
            data = io.BytesIO(payload)
        resp = await self.client.request(method, target, data=data, headers=hdrs)
        raw = await resp.read()
        root: ET.Element | None = None
        if raw.startswith(b"<?xml") or raw.startswith(b"<"):
            root = ET.fromstring(raw)  # noqa: S314 - the document comes from the server under test
        ns = STS_NS if service == "sts" else IAM_NS
        if root is not None and root.tag.startswith("{"):
            ns = root.tag[1:].split("}", 1)[0]
        return Reply(resp.status, dict(resp.headers), raw, action, ns, root)

    async def call(
        self,
        action: str,
        creds: Creds | None = None,
        params: Mapping[str, str] | None = None,
        **kw: str | int | bool,
    ) -> Reply:
        """Call IAM ``action`` signed with ``creds`` (root by default).

        ``params`` carries members whose names are not identifiers (``Tags.member.1.Key``);
        keyword arguments are converted (``bool`` to ``true``/``false``).
        """
        return await self._call("iam", IAM_VERSION, action, creds, params, kw)

    async def sts(self, action: str, creds: Creds | None = None, **kw: str | int | bool) -> Reply:
        """Call STS ``action`` signed with ``creds`` (root by default)."""
        return await self._call("sts", STS_VERSION, action, creds, None, kw)

    async def sts_ok(
        self, action: str, creds: Creds | None = None, **kw: str | int | bool
    ) -> Reply:
        """Like :meth:`sts`, asserting success."""
        reply = await self.sts(action, creds, **kw)
        assert reply.ok, f"{action} failed: {reply.status} {reply.code}: {reply.message}"
        return reply

    async def _call(
        self,
        service: str,
        version: str,
        action: str,
        creds: Creds | None,
        params: Mapping[str, str] | None,
        kw: Mapping[str, str | int | bool],
    ) -> Reply:
        form: dict[str, str] = {"Action": action, "Version": version}
        form.update(params or {})
        form.update(to_form(kw))
        body = urllib.parse.urlencode(form).encode("utf-8")
        return await self.send(action, body=body, creds=creds, service=service)

    async def ok(
        self,
        action: str,
        creds: Creds | None = None,
        params: Mapping[str, str] | None = None,
        **kw: str | int | bool,
    ) -> Reply:
        """Like :meth:`call`, asserting success."""
        reply = await self.call(action, creds, params, **kw)
        assert reply.ok, f"{action} failed: {reply.status} {reply.code}: {reply.message}"
        return reply

    async def new_user(
        self, name: str, *, policy: str | None = None, path: str = "/"
    ) -> tuple[Creds, str]:
        """Create user ``name`` with an access key (and an inline policy); return (creds, ARN)."""
        created = await self.ok("CreateUser", UserName=name, Path=path)
        arn = created.text("User/Arn")
        assert arn is not None
        if policy is not None:
            await self.ok("PutUserPolicy", UserName=name, PolicyName="p", PolicyDocument=policy)
        key = await self.ok("CreateAccessKey", UserName=name)
        akid = key.text("AccessKey/AccessKeyId")
        secret = key.text("AccessKey/SecretAccessKey")
        assert akid is not None and secret is not None
        return Creds(akid, secret), arn

    async def new_account(self) -> tuple[str, Creds]:
        """Create another account on the same broker; return (account id, root creds)."""
        key = await self.rt.accounts.create_account()
        creds = Creds(key.access_key_id, key.secret_access_key)
        account = (await self.sts("GetCallerIdentity", creds)).text("Account")
        assert account is not None
        return account, creds


def _master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def api_factory() -> AsyncIterator[ApiFactory]:
    """Build APIs on fresh in-memory runtimes; extra ``BROKER_*`` variables tune the config."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def build(**env: str) -> Api:
        cfg = load_config(environ={"BROKER_MASTER_KEY": _master_key(), **env})
        rt = await build_runtime(cfg, store=MemoryStore())
        key = await rt.accounts.create_account()
        app = make_app(rt)

        async def record(request: web.Request, response: web.StreamResponse) -> None:
            _STATUSES.append((response.status, request.method))

        app.on_response_prepare.append(record)
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        api = Api(rt, client)
        api.root = Creds(key.access_key_id, key.secret_access_key)
        ident = await api.sts("GetCallerIdentity")
        api.account_id = ident.text("Account") or ""
        return api

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    """An API on a fresh in-memory runtime with one account; ``api.root`` is its root key."""
    return await api_factory()


@pytest.fixture(autouse=True)
def no_server_errors() -> Iterator[None]:
    """Fail the test if any response of the API listener had a 5xx status."""
    _STATUSES.clear()
    yield
    bad = [s for s in _STATUSES if s[0] >= 500]
    _STATUSES.clear()
    if bad:
        pytest.fail(f"the API answered with a server error: {bad}")
