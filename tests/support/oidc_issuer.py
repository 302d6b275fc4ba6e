"""Test support: ``OidcIssuer``, a fake OpenID Connect provider on loopback.

The issuer serves ``/.well-known/openid-configuration`` and a JWKS with aiohttp's
``web.AppRunner`` on its own event loop in a background thread, so synchronous e2e tests and
asynchronous in-process tests can both use it. It signs tokens with RS256, ES256 and EdDSA keys
(pyjwt + cryptography), rotates keys, counts the requests it serves per path, can misbehave on
demand (wrong ``issuer``, huge or slow answers, error statuses, redirects) and can be stopped and
started again on the same port. With ``tls=True`` it serves HTTPS with a freshly generated
self-signed certificate whose IAM thumbprint is :attr:`OidcIssuer.thumbprint`.

:func:`sign_raw` builds tokens from raw header and payload text, for tests that need shapes no
JWT library would produce (duplicate members, odd headers).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gc
import hashlib
import hmac
import ipaddress
import json
import ssl
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from jwt.algorithms import get_default_algorithms

START_TIMEOUT_SECONDS = 10.0
JWKS_PATH = "/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
MOVED_PATH = "/moved"
"""Answers with a redirect to :attr:`OidcIssuer.moved_to` (default: the JWKS)."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64url(data: bytes) -> str:
    """Base64url without padding (JOSE's encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_private_key(alg: str) -> PrivateKey:
    """A fresh private key for ``alg`` (RS*/PS*: RSA-2048, ES256/384/512, EdDSA: Ed25519)."""
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves: dict[str, ec.EllipticCurve] = {
        "ES256": ec.SECP256R1(),
        "ES384": ec.SECP384R1(),
        "ES512": ec.SECP521R1(),
    }
    if alg in curves:
        return ec.generate_private_key(curves[alg])
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for {alg}")


def public_jwk(key: PrivateKey, alg: str, kid: str | None) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid``, ``use: sig`` and ``alg``."""
    algorithm = get_default_algorithms()[alg]
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    jwk["use"] = "sig"
    jwk["alg"] = alg
    return jwk


def sign_raw(
    header: str | Mapping[str, Any], payload: str | Mapping[str, Any], key: Any, alg: str
) -> str:
    """Sign ``header``/``payload`` (JSON text kept byte for byte, or objects) with ``key``."""
    head = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{b64url(head.encode())}.{b64url(body.encode())}"
    algorithm = get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input.encode("ascii"), algorithm.prepare_key(key))
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class SigningKey:
    """One key of the issuer: its id, algorithm and private half."""

    kid: str
    alg: str
    private: PrivateKey = field(repr=False)
    published: bool = True

    @property
    def jwk(self) -> dict[str, Any]:
        """The public JWK served in the JWKS."""
        return public_jwk(self.private, self.alg, self.kid)


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, str]:
    """Write a self-signed certificate for ``host``; return (cert path, key path, thumbprint)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker test issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "issuer-cert.pem"
    key_path = directory / "issuer-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return cert_path, key_path, hashlib.sha1(der, usedforsecurity=False).hexdigest()


class OidcIssuer:
    """A fake OIDC provider: discovery, JWKS and token minting, on 127.0.0.1.

    ``path`` is appended to ``http(s)://127.0.0.1:PORT`` to form the issuer (``/org/app``
    shapes a GitHub-like or EKS-like issuer). ``algorithms`` lists the keys made at start
    (one per entry, each with its own ``kid``).
    """

    def __init__(
        self,
        *,
        path: str = "",
        tls: bool = False,
        algorithms: tuple[str, ...] = ("RS256",),
        cache_control: str | None = None,
    ) -> None:
        self.path = path
        self.tls = tls
        self.cache_control = cache_control
        self.port = 0
        self.hits: Counter[str] = Counter()
        self.keys: list[SigningKey] = []
        # Misbehaviour switches (read by the server thread on every request).
        self.discovery_issuer: str | None = None
        self.status: int | None = None
        self.jwks_body: bytes | None = None
        self.delay: float = 0.0
        self.jwks_redirect: str | None = None
        self.jwks_uri: str | None = None
        self.moved_to: str | None = None
        self.chunked = False
        self.thumbprint = ""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="oidc-issuer-")
        self._ssl: ssl.SSLContext | None = None
        if tls:
            cert, key, self.thumbprint = self_signed_certificate(Path(self._tmp.name))
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(cert, key)
            self.cert_path = cert
        for alg in algorithms:
            self.add_key(alg)

    # -- identity -----------------------------------------------------------------------------

    @property
    def base(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The issuer URL (what ``iss`` carries and what IAM registers)."""
        return self.base + self.path

    @property
    def provider_id(self) -> str:
        """``127.0.0.1:PORT/path``: the condition-key prefix of this issuer's tokens."""
        return self.url.split("://", 1)[1]

    def provider_arn(self, account: str) -> str:
        """The IAM OIDC provider ARN of this issuer in ``account``."""
        return f"arn:aws:iam::{account}:oidc-provider/{self.provider_id}"

    @property
    def jwks_hits(self) -> int:
        """How many JWKS requests the issuer has served."""
        with self._lock:
            return self.hits[self.path + JWKS_PATH]

    # -- keys ---------------------------------------------------------------------------------

    def add_key(
        self, alg: str = "RS256", kid: str | None = None, *, published: bool = True
    ) -> SigningKey:
        """Make a key (published in the JWKS unless ``published`` is false)."""
        key = SigningKey(
            kid or f"{alg.lower()}-{uuid.uuid4().hex[:12]}", alg, new_private_key(alg), published
        )
        with self._lock:
            self.keys.append(key)
        return key

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """Publish a new key and withdraw every other one (their private halves stay)."""
        fresh = SigningKey(f"{alg.lower()}-{uuid.uuid4().hex[:12]}", alg, new_private_key(alg))
        with self._lock:
            for key in self.keys:
                key.published = False
            self.keys.append(fresh)
        return fresh

    def key(self, alg: str | None = None) -> SigningKey:
        """The newest published key (of ``alg`` when given)."""
        with self._lock:
            for key in reversed(self.keys):
                if key.published and (alg is None or key.alg == alg):
                    return key
        raise LookupError(f"no published {alg or ''} key")

    def jwks(self) -> dict[str, Any]:
        """The JWKS document as served."""
        with self._lock:
            return {"keys": [k.jwk for k in self.keys if k.published]}

    # -- tokens -------------------------------------------------------------------------------

    def claims(
        self,
        sub: str,
        aud: str | list[str],
        *,
        lifetime: int = 3600,
        iat: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Standard claims for a token of this issuer (``extra`` adds or replaces)."""
        now = int(time.time() if iat is None else iat)
        out: dict[str, Any] = {
            "iss": self.url,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        out.update(extra)
        return out

    def token(
        self,
        sub: str = "alice",
        aud: str | list[str] = "sts.amazonaws.com",
        *,
        key: SigningKey | None = None,
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        lifetime: int = 3600,
        iat: float | None = None,
        more: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """A signed token; ``drop`` removes claims, ``headers`` adds header parameters.

        ``more`` and ``extra`` add or replace claims (``more`` for names that are not
        identifiers, such as ``https://aws.amazon.com/tags``).
        """
        signer = key or self.key(alg)
        payload = self.claims(sub, aud, lifetime=lifetime, iat=iat, **extra)
        payload.update(more or {})
        for name in drop:
            payload.pop(name, None)
        head: dict[str, Any] = {"kid": signer.kid}
        head.update(headers or {})
        return jwt.encode(payload, signer.private, algorithm=signer.alg, headers=head)

    # -- server -------------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "issuer": self.discovery_issuer if self.discovery_issuer is not None else self.url,
                "jwks_uri": self.jwks_uri or (self.url + JWKS_PATH),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        if self.jwks_redirect is not None:
            raise web.HTTPFound(self.jwks_redirect)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        if self.chunked:
            body = (
                self.jwks_body if self.jwks_body is not None else json.dumps(self.jwks()).encode()
            )
            stream = web.StreamResponse(headers=headers)
            stream.content_type = "application/json"
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            for start in range(0, len(body), 8192):
                await stream.write(body[start : start + 8192])
            await stream.write_eof()
            return stream
        if self.jwks_body is not None:
            return web.Response(
                body=self.jwks_body, content_type="application/json", headers=headers
            )
        return web.json_response(self.jwks(), headers=headers)

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self.moved_to or (self.url + JWKS_PATH))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.hits[request.path] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return web.Response(status=self.status, text="unavailable")
        result: web.StreamResponse = await handler(request)
        return result

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(self.path + DISCOVERY_PATH, self._discovery)
        app.router.add_get(self.path + JWKS_PATH, self._jwks)
        app.router.add_get(self.path + MOVED_PATH, self._moved)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self._ssl)
        await site.start()
        self._runner = runner
        if not self.port:
            self.port = int(runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _run(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(START_TIMEOUT_SECONDS)

    def start(self) -> OidcIssuer:
        """Serve (again, on the same port once it has one)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="oidc-issuer", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        self._run(self._start())
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused); :meth:`start` serves again."""
        if self._loop is not None and self._runner is not None:
            self._run(self._stop())

    def close(self) -> None:
        """Stop serving and end the background thread."""
        self.stop()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_SECONDS)
            self._loop.close()
            self._loop = self._thread = None
        # A TLS handshake the client aborts can leave the server's socket to the garbage
        # collector; reclaim it here rather than in whichever test happens to run next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        self._tmp.cleanup()

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def trust_policy(
    provider_arn: str,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
    actions: str | list[str] = "sts:AssumeRoleWithWebIdentity",
) -> str:
    """A role trust policy that trusts ``provider_arn`` for web identity under ``conditions``."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": actions,
    }
    if conditions:
        statement["Condition"] = conditions
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# -- forged and malformed tokens (spec/security.md section A) --------------------------------


@dataclass(frozen=True)
class Attack:
    """A token that must be refused with ``code`` (HTTP ``status``)."""

    name: str
    token: str = field(repr=False)
    code: str = "InvalidIdentityToken"
    status: int = 400


def _hs256(header: Mapping[str, Any], payload: Mapping[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"n": value}
    return value


def attack_tokens(
    issuer: OidcIssuer, other: OidcIssuer, attacker_url: str, aud: str = "sts.amazonaws.com"
) -> list[Attack]:
    """Forged, malformed and misdirected tokens aimed at a role trusting ``issuer`` for ``aud``.

    ``other`` is a second issuer, registered in the role's account but not trusted by the role
    (its keys must never verify ``issuer``'s tokens);
    ``attacker_url`` is a server that counts hits (``jku``/``x5u`` must never reach it).
    """
    good = issuer.key("RS256")
    kid = good.kid
    claims = issuer.claims("alice", aud)
    public = good.private.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    modulus = public.public_numbers().n.to_bytes(256, "big")
    stranger = new_private_key("RS256")
    stranger_jwk = public_jwk(stranger, "RS256", None)
    now = int(time.time())

    def signed(payload: Mapping[str, Any], **header: Any) -> str:
        head = {"alg": "RS256", "kid": kid, **header}
        return sign_raw(head, payload, good.private, "RS256")

    def with_claims(**changes: Any) -> str:
        payload = {**claims, **changes}
        return signed({k: v for k, v in payload.items() if v is not None})

    def unsigned(alg: str, signature: str) -> str:
        head = b64url(json.dumps({"alg": alg, "kid": kid}).encode())
        return f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"

    attacks = [
        Attack(f"alg {alg!r} unsigned", unsigned(alg, "")) for alg in ("none", "None", "NONE", "")
    ]
    attacks += [
        Attack(f"alg {alg!r} with a signature", unsigned(alg, "c2lnbmF0dXJl"))
        for alg in ("none", "None", "")
    ]
    jwk_json = json.dumps(good.jwk).encode()
    for label, secret in (("PEM", pem), ("DER", der), ("JWK JSON", jwk_json), ("modulus", modulus)):
        attacks.append(
            Attack(
                f"HS256 keyed with the public key ({label})",
                _hs256({"alg": "HS256", "kid": kid}, claims, secret),
            )
        )
    attacks += [
        Attack(
            "valid signature, key not in the JWKS, published kid",
            sign_raw({"alg": "RS256", "kid": kid}, claims, stranger, "RS256"),
        ),
        Attack(
            "valid signature, key not in the JWKS, unknown kid",
            sign_raw({"alg": "RS256", "kid": "stranger"}, claims, stranger, "RS256"),
        ),
        Attack(
            "kid of another issuer's key",
            sign_raw(
                {"alg": "RS256", "kid": other.key("RS256").kid},
                claims,
                other.key("RS256").private,
                "RS256",
            ),
        ),
        # ``other`` is registered too, but the role does not trust it.
        Attack("another issuer's own token", other.token("alice", aud), "AccessDenied", 403),
        Attack(
            "embedded jwk header",
            sign_raw({"alg": "RS256", "jwk": stranger_jwk}, claims, stranger, "RS256"),
        ),
        Attack(
            "embedded jwk header with a published kid",
            sign_raw({"alg": "RS256", "kid": kid, "jwk": stranger_jwk}, claims, stranger, "RS256"),
        ),
        Attack(
            "jku header",
            sign_raw(
                {"alg": "RS256", "kid": "attacker", "jku": attacker_url + "/jwks.json"},
                claims,
                stranger,
                "RS256",
            ),
        ),
        Attack(
            "x5u header",
            sign_raw(
                {"alg": "RS256", "kid": "attacker", "x5u": attacker_url + "/cert.pem"},
                claims,
                stranger,
                "RS256",
            ),
        ),
        Attack(
            "x5c header",
            sign_raw(
                {"alg": "RS256", "kid": "attacker", "x5c": ["MIIB"]}, claims, stranger, "RS256"
            ),
        ),
    ]
    for wrong in (
        issuer.url + "/",
        issuer.url + ".evil",
        issuer.url + "/other",
        issuer.url.replace("http://", "https://", 1),
        issuer.url.upper(),
        issuer.url.rsplit(":", 1)[0],
        "",
    ):
        attacks.append(Attack(f"iss {wrong!r}", with_claims(iss=wrong)))
    attacks += [
        Attack("iss missing", signed({k: v for k, v in claims.items() if k != "iss"})),
        Attack("iss not a string", with_claims(iss=["x"])),
        Attack("aud missing", signed({k: v for k, v in claims.items() if k != "aud"})),
        Attack("aud not registered", with_claims(aud="someone-else")),
        Attack("aud list without our client id", with_claims(aud=["a", "b"])),
        Attack("aud empty list", with_claims(aud=[])),
        Attack("aud a number", with_claims(aud=7)),
        Attack(
            "azp not registered with several audiences",
            with_claims(aud=[aud, "other"], azp="intruder"),
        ),
        Attack("sub missing", signed({k: v for k, v in claims.items() if k != "sub"})),
        Attack("sub not a string", with_claims(sub=42)),
        Attack(
            "exp past",
            with_claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600),
            "ExpiredTokenException",
        ),
        Attack("exp missing", signed({k: v for k, v in claims.items() if k != "exp"})),
        Attack("exp a string", with_claims(exp=str(now + 3600))),
        Attack("exp a boolean", with_claims(exp=True)),
        Attack("exp past year 9999", with_claims(exp=1e20)),
        Attack("iat missing", signed({k: v for k, v in claims.items() if k != "iat"})),
        Attack("nbf an hour ahead", with_claims(nbf=now + 3600, exp=now + 7200)),
        Attack("iat an hour ahead", with_claims(iat=now + 3600, nbf=None, exp=now + 7200)),
        Attack("lifetime over a day", with_claims(iat=now, exp=now + 86400 + 3600)),
        Attack("crit b64", signed(claims, crit=["b64"], b64=False)),
        Attack("crit custom", signed(claims, crit=["exp"])),
        Attack("crit empty", signed(claims, crit=[])),
        Attack("cty JWT", signed(claims, cty="JWT")),
        Attack("kid too long", signed(claims, kid="k" * 257)),
        Attack("kid with a control character", signed(claims, kid="a\nb")),
        Attack("kid not a string", signed(claims, kid=7)),
        Attack("header over 8 KiB", signed(claims, pad="x" * 9000)),
        Attack("claims nested too deeply", with_claims(deep=_nested(40))),
        Attack(
            "duplicate sub",
            sign_raw(
                json.dumps({"alg": "RS256", "kid": kid}),
                json.dumps(claims)[:-1] + ', "sub": "admin"}',
                good.private,
                "RS256",
            ),
        ),
        Attack(
            "duplicate header alg",
            sign_raw(
                '{"alg": "RS256", "kid": "' + kid + '", "alg": "RS256"}',
                claims,
                good.private,
                "RS256",
            ),
        ),
        Attack("garbage", "not-a-token-at-all"),
        Attack("garbage base64", "!!!!.@@@@.####"),
        Attack("two segments", with_claims().rsplit(".", 1)[0]),
        Attack("five segments (JWE)", ".".join(["eyJhbGciOiJSU0EtT0FFUCJ9"] + ["QUJD"] * 4)),
        Attack(
            "payload not JSON", b64url(b'{"alg":"RS256"}') + "." + b64url(b"not json") + ".QUJD"
        ),
        Attack(
            "payload a JSON array",
            sign_raw({"alg": "RS256", "kid": kid}, "[1, 2]", good.private, "RS256"),
        ),
        Attack("oversized token", "a" * 20001, "ValidationError"),
        Attack("token too short", "a.b", "ValidationError"),
    ]
    # ECDSA: DER-encoded and zero signatures never verify (A18).
    ec_key = (
        issuer.key("ES256") if any(k.alg == "ES256" and k.published for k in issuer.keys) else None
    )
    if ec_key is not None:
        head = {"alg": "ES256", "kid": ec_key.kid}
        valid = sign_raw(head, claims, ec_key.private, "ES256")
        signing_input, raw_sig = valid.rsplit(".", 1)
        raw = base64.urlsafe_b64decode(raw_sig + "==")
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        attacks += [
            Attack(
                "ES256 with a DER signature",
                f"{signing_input}.{b64url(encode_dss_signature(r, s))}",
            ),
            Attack("ES256 with r = s = 0", f"{signing_input}.{b64url(bytes(64))}"),
            Attack("ES256 signature one byte short", f"{signing_input}.{b64url(raw[:-1])}"),
            Attack(
                "RS256 header on an EC key id",
                sign_raw({"alg": "RS256", "kid": ec_key.kid}, claims, good.private, "RS256"),
            ),
        ]
    attacks.append(
        Attack(
            "RS384 under an RS256 key",
            sign_raw({"alg": "RS384", "kid": kid}, claims, good.private, "RS384"),
        )
    )
    return attacks
