"""AssumeRoleWithWebIdentity end to end: real broker processes, real clients, real issuers.

The broker runs with ``BROKER_FEDERATION_ALLOW_HTTP_ISSUERS=true`` and every issuer listens on
``http(s)://127.0.0.1:PORT``: the Python test issuer (pyjwt keys, ``tests.support.oidc_issuer``)
and a Node.js issuer built on the ``jose`` library (``tests/support/node_issuer.mjs``, with
``jose`` installed from the npm registry into a temporary directory). Covered:

* boto3's ``assume_role_with_web_identity`` with tokens of both issuers, accepted for the right
  subject and audience and refused otherwise (with boto3's modelled exception classes);
* botocore's own web-identity credential provider (``AWS_WEB_IDENTITY_TOKEN_FILE`` ...) in a
  fresh Python process and in the ``aws`` CLI, including a token file rewritten for another
  subject;
* GitHub-Actions-shaped and Kubernetes-service-account-shaped tokens under the trust
  conditions those platforms document;
* an HTTPS issuer with a self-signed certificate trusted through its thumbprint;
* fault behaviour: keys served from cache (then stale) while the issuer is down, key rotation
  picked up on first use, and a flood of unknown ``kid``s causing a bounded number of fetches.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.broker_proc import REGION, REPO, BrokerProcess, Creds, HttpReply
from tests.support.oidc_issuer import OidcIssuer, sign_raw, trust_policy

AUD = "sts.amazonaws.com"
SUPPORT = Path(__file__).resolve().parents[1] / "support"
LAB_ENV = {"BROKER_FEDERATION_ALLOW_HTTP_ISSUERS": "true"}


class Federation:
    """A broker plus helpers: OIDC providers, roles, and AssumeRoleWithWebIdentity calls."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.root = broker.root_creds()
        self.account = broker.account_id()
        self.iam = broker.client("iam", self.root)
        # The action is unsigned; the client's credentials are never used for it.
        self.sts = broker.client("sts", self.root)

    def provider(
        self, url: str, client_ids: tuple[str, ...] = (AUD,), thumbprints: tuple[str, ...] = ()
    ) -> str:
        kwargs: dict[str, Any] = {"Url": url, "ClientIDList": list(client_ids)}
        if thumbprints:
            kwargs["ThumbprintList"] = list(thumbprints)
        arn: str = self.iam.create_open_id_connect_provider(**kwargs)["OpenIDConnectProviderArn"]
        return arn

    def role(self, trust: str, name: str | None = None) -> str:
        name = name or f"web-{uuid.uuid4().hex[:10]}"
        arn: str = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"][
            "Arn"
        ]
        return arn

    def assume(self, role_arn: str, token: str, session: str = "web") -> dict[str, Any]:
        result: dict[str, Any] = self.sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName=session, WebIdentityToken=token
        )
        return result

    def refused(self, role_arn: str, token: str, session: str = "web") -> ClientError:
        with pytest.raises(ClientError) as info:
            self.assume(role_arn, token, session)
        return info.value

    def raw(self, role_arn: str, token: str, session: str = "web") -> HttpReply:
        body = urllib.parse.urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": "2011-06-15",
                "RoleArn": role_arn,
                "RoleSessionName": session,
                "WebIdentityToken": token,
            }
        ).encode()
        return self.broker.request(
            "POST", "/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )


def code_of(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    broker = BrokerProcess(tmp_path_factory.mktemp("federation") / "data", env=LAB_ENV).start()
    try:
        yield Federation(broker)
    finally:
        broker.stop()


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(algorithms=("RS256", "ES256", "EdDSA")) as server:
        yield server


# -- the Python issuer with boto3 -----------------------------------------------------------------


def test_python_issuer_tokens_through_boto3(fed: Federation, issuer: OidcIssuer) -> None:
    arn = fed.provider(issuer.url)
    role = fed.role(
        trust_policy(
            arn,
            {
                "StringEquals": {
                    f"{issuer.provider_id}:sub": "alice",
                    f"{issuer.provider_id}:aud": AUD,
                }
            },
        )
    )
    for alg in ("RS256", "ES256", "EdDSA"):
        out = fed.assume(role, issuer.token("alice", alg=alg), session=f"alice-{alg}")
        assert out["SubjectFromWebIdentityToken"] == "alice"
        assert out["Audience"] == AUD
        assert out["Provider"] == issuer.url
        assert out["AssumedRoleUser"]["Arn"].endswith(
            f":assumed-role/{role.split('/')[-1]}/alice-{alg}"
        )
        c = out["Credentials"]
        session = fed.broker.client(
            "sts", Creds(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        )
        assert session.get_caller_identity()["Arn"] == out["AssumedRoleUser"]["Arn"]
    assert code_of(fed.refused(role, issuer.token("bob"))) == "AccessDenied"
    with pytest.raises(fed.sts.exceptions.InvalidIdentityTokenException):
        fed.assume(role, issuer.token("alice", aud="someone-else"))
    with pytest.raises(fed.sts.exceptions.ExpiredTokenException):
        fed.assume(role, issuer.token("alice", iat=time.time() - 7200, lifetime=3600))


# -- the Node.js jose issuer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def jose_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``jose`` installed from the npm registry and the issuer script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "JOSE (Node.js) ISSUER TESTS NOT RUN: `node` and `npm` are not on PATH "
            "(install Node.js >= 20 and npm to run them)"
        )
    where = tmp_path_factory.mktemp("jose")
    (where / "package.json").write_text(
        json.dumps({"name": "broker-jose-issuer", "private": True, "type": "module"})
    )
    out = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "jose@6"],
        cwd=where, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"npm install jose failed:\n{out.stderr}"
    shutil.copy(SUPPORT / "node_issuer.mjs", where / "node_issuer.mjs")
    return where


class NodeIssuer:
    """``node node_issuer.mjs`` as a subprocess: its issuer URL, tokens and JWKS counter."""

    def __init__(self, where: Path, path: str) -> None:
        node = shutil.which("node")
        assert node is not None
        self.proc = subprocess.Popen(
            [node, "node_issuer.mjs", "--path", path],
            cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        if not ready:
            self.stop()
            raise RuntimeError("the jose issuer did not start")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the jose issuer failed: {err}")
        info = json.loads(line)
        self.url: str = info["issuer"]
        self.provider_id = self.url.split("://", 1)[1]

    def _get(self, path: str, query: list[tuple[str, str]] | None = None) -> bytes:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback issuer
            body: bytes = resp.read()
            return body

    def token(self, sub: str, aud: str = AUD, alg: str = "RS256", **claims: Any) -> str:
        query = [("sub", sub), ("aud", aud), ("alg", alg)]
        if claims:
            query.append(("claims", json.dumps(claims)))
        return self._get("/token", query).decode()

    @property
    def jwks_hits(self) -> int:
        return int(json.loads(self._get("/stats"))["jwks"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def node_issuer(jose_dir: Path) -> Iterator[NodeIssuer]:
    server = NodeIssuer(jose_dir, "/jose")
    try:
        yield server
    finally:
        server.stop()


def test_jose_issuer_tokens_through_boto3(fed: Federation, node_issuer: NodeIssuer) -> None:
    arn = fed.provider(node_issuer.url)
    pid = node_issuer.provider_id
    role = fed.role(trust_policy(arn, {"StringEquals": {f"{pid}:sub": "alice", f"{pid}:aud": AUD}}))
    for alg in ("RS256", "ES256", "EdDSA"):
        out = fed.assume(role, node_issuer.token("alice", alg=alg), session=f"jose-{alg}")
        assert out["SubjectFromWebIdentityToken"] == "alice"
        assert out["Provider"] == node_issuer.url
    assert node_issuer.jwks_hits == 1
    assert code_of(fed.refused(role, node_issuer.token("bob"))) == "AccessDenied"
    with pytest.raises(fed.sts.exceptions.InvalidIdentityTokenException):
        fed.assume(role, node_issuer.token("alice", aud="not-registered"))


# -- botocore's own provider and the aws CLI ----------------------------------------------------


def _workload_env(fed: Federation, token_file: Path, role: str, session: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    env.update(
        {
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ROLE_ARN": role,
            "AWS_ROLE_SESSION_NAME": session,
            "AWS_ENDPOINT_URL_STS": fed.broker.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


_WHOAMI = "import boto3, json; print(json.dumps(boto3.client('sts').get_caller_identity()))"


def _python_whoami(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WHOAMI], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def _cli_whoami(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    aws = Path(sys.executable).parent / "aws"
    return subprocess.run(
        [str(aws) if aws.exists() else "aws", "sts", "get-caller-identity", "--output", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_botocore_web_identity_provider_and_cli(
    fed: Federation, issuer: OidcIssuer, tmp_path: Path
) -> None:
    arn = fed.provider(issuer.url)
    pid = issuer.provider_id
    # Either subject may come in, but only under its own session name.
    role = fed.role(
        trust_policy(
            arn,
            {
                "StringEquals": {
                    f"{pid}:aud": AUD,
                    f"{pid}:sub": ["alice", "bob"],
                    "sts:RoleSessionName": "${" + pid + ":sub}",
                }
            },
        )
    )
    role_name = role.split("/")[-1]
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token("alice"))
    env = _workload_env(fed, token_file, role, "alice")
    expected = f"arn:aws:sts::{fed.account}:assumed-role/{role_name}/alice"
    py = _python_whoami(env)
    assert py.returncode == 0, py.stderr
    assert json.loads(py.stdout)["Arn"] == expected
    cli = _cli_whoami(env)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["Arn"] == expected

    # The token file now holds bob's token: a new process gets bob's session.
    token_file.write_text(issuer.token("bob"))
    env = _workload_env(fed, token_file, role, "bob")
    expected = f"arn:aws:sts::{fed.account}:assumed-role/{role_name}/bob"
    py = _python_whoami(env)
    assert py.returncode == 0, py.stderr
    assert json.loads(py.stdout)["Arn"] == expected
    cli = _cli_whoami(env)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["Arn"] == expected

    # bob's token cannot be passed off as alice's session.
    env = _workload_env(fed, token_file, role, "alice")
    py = _python_whoami(env)
    assert py.returncode != 0 and "AccessDenied" in py.stderr
    cli = _cli_whoami(env)
    assert cli.returncode != 0 and "AccessDenied" in cli.stderr


# -- platform-shaped tokens ---------------------------------------------------------------------


def test_github_actions_shaped_token(fed: Federation) -> None:
    with OidcIssuer(path="/token.actions.githubusercontent.com") as gh:
        arn = fed.provider(gh.url)
        pid = gh.provider_id
        main_only = fed.role(
            trust_policy(
                arn,
                {
                    "StringEquals": {f"{pid}:aud": AUD},
                    "StringLike": {f"{pid}:sub": "repo:octo-org/octo-app:ref:refs/heads/main"},
                },
            )
        )
        any_ref = fed.role(
            trust_policy(
                arn,
                {
                    "StringEquals": {f"{pid}:aud": AUD},
                    "StringLike": {f"{pid}:sub": "repo:octo-org/octo-app:*"},
                },
            )
        )

        def token(sub: str, aud: str = AUD, ref: str = "refs/heads/main") -> str:
            return gh.token(
                sub,
                aud,
                repository="octo-org/octo-app",
                repository_owner="octo-org",
                ref=ref,
                sha="d6fe4d8a1d7c3b3a0b2c1e4f5a6b7c8d9e0f1a2b",
                event_name="push",
                workflow="deploy",
                job_workflow_ref="octo-org/octo-app/.github/workflows/deploy.yml@" + ref,
                runner_environment="github-hosted",
                actor="octocat",
            )

        main = "repo:octo-org/octo-app:ref:refs/heads/main"
        assert fed.assume(main_only, token(main), "gha")["SubjectFromWebIdentityToken"] == main
        assert fed.assume(any_ref, token(main), "gha")
        pull = "repo:octo-org/octo-app:pull_request"
        assert (
            code_of(fed.refused(main_only, token(pull, ref="refs/pull/7/merge"))) == "AccessDenied"
        )
        assert fed.assume(any_ref, token(pull, ref="refs/pull/7/merge"), "gha-pr")
        fork = "repo:evil-org/octo-app:ref:refs/heads/main"
        assert code_of(fed.refused(any_ref, token(fork))) == "AccessDenied"
        with pytest.raises(fed.sts.exceptions.InvalidIdentityTokenException):
            fed.assume(any_ref, token(main, aud="https://github.com/octo-org"))


def test_kubernetes_service_account_shaped_token(fed: Federation) -> None:
    with OidcIssuer(path="/id/EXAMPLED539D4633E53DE1B71EXAMPLE", algorithms=("RS256",)) as eks:
        arn = fed.provider(eks.url, client_ids=(AUD, "prod-cluster"))
        pid = eks.provider_id
        irsa = fed.role(
            trust_policy(
                arn,
                {
                    "StringEquals": {
                        f"{pid}:sub": "system:serviceaccount:prod:app",
                        f"{pid}:aud": AUD,
                    }
                },
            )
        )
        custom = fed.role(
            trust_policy(
                arn,
                {
                    "StringEquals": {f"{pid}:aud": "prod-cluster"},
                    "StringLike": {f"{pid}:sub": "system:serviceaccount:prod:*"},
                },
            )
        )

        def token(namespace: str, account: str, aud: str) -> str:
            return eks.token(
                f"system:serviceaccount:{namespace}:{account}",
                aud,
                more={
                    "kubernetes.io": {
                        "namespace": namespace,
                        "pod": {"name": f"{account}-7d9f8", "uid": str(uuid.uuid4())},
                        "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
                    }
                },
            )

        out = fed.assume(irsa, token("prod", "app", AUD), "pod")
        assert out["SubjectFromWebIdentityToken"] == "system:serviceaccount:prod:app"
        assert code_of(fed.refused(irsa, token("dev", "app", AUD))) == "AccessDenied"
        assert code_of(fed.refused(irsa, token("prod", "app", "prod-cluster"))) == "AccessDenied"
        assert fed.assume(custom, token("prod", "worker", "prod-cluster"), "pod")
        assert code_of(fed.refused(custom, token("prod", "worker", AUD))) == "AccessDenied"
        assert code_of(fed.refused(custom, token("kube-system", "admin", "prod-cluster"))) == (
            "AccessDenied"
        )


# -- TLS -------------------------------------------------------------------------------------------


def test_https_issuer_with_a_self_signed_certificate_trusted_by_thumbprint(fed: Federation) -> None:
    with OidcIssuer(tls=True, algorithms=("ES256",)) as tls:
        arn = fed.provider(tls.url, thumbprints=(tls.thumbprint,))
        role = fed.role(trust_policy(arn))
        out = fed.assume(role, tls.token("alice"))
        assert out["Provider"] == tls.url
    with OidcIssuer(tls=True) as untrusted:
        arn = fed.provider(untrusted.url, thumbprints=("0" * 40,))
        role = fed.role(trust_policy(arn))
        with pytest.raises(fed.sts.exceptions.IDPCommunicationErrorException):
            fed.assume(role, untrusted.token("alice"))
        assert untrusted.jwks_hits == 0


# -- fault behaviour -----------------------------------------------------------------------------


def test_rotated_key_is_picked_up_on_first_use(fed: Federation, issuer: OidcIssuer) -> None:
    role = fed.role(trust_policy(fed.provider(issuer.url)))
    old = issuer.key("RS256")
    assert fed.assume(role, issuer.token(key=old))
    assert issuer.jwks_hits == 1
    fresh = issuer.rotate("ES256")
    assert fed.assume(role, issuer.token(key=fresh))
    assert issuer.jwks_hits == 2
    with pytest.raises(fed.sts.exceptions.InvalidIdentityTokenException):
        fed.assume(role, issuer.token(key=old))


def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_twice(
    fed: Federation, issuer: OidcIssuer
) -> None:
    role = fed.role(trust_policy(fed.provider(issuer.url)))
    assert fed.assume(role, issuer.token())
    stranger = issuer.add_key("RS256", published=False)
    tokens = [
        sign_raw(
            {"alg": "RS256", "kid": uuid.uuid4().hex}, issuer.claims("alice", AUD),
            stranger.private, "RS256",
        )
        for _ in range(100)
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda t: fed.raw(role, t), tokens))
    assert {(r.status, r.error_code()) for r in replies} == {(400, "InvalidIdentityToken")}
    assert issuer.jwks_hits <= 2
    assert fed.assume(role, issuer.token())


def test_keys_outlive_the_issuer_for_the_ttl_then_stale_max(
    tmp_path: Path, issuer: OidcIssuer
) -> None:
    env = {
        **LAB_ENV,
        "BROKER_FEDERATION_JWKS_CACHE_SECONDS": "2",
        "BROKER_FEDERATION_JWKS_STALE_MAX_SECONDS": "6",
    }
    broker = BrokerProcess(tmp_path / "data", env=env).start()
    try:
        fed = Federation(broker)
        role = fed.role(trust_policy(fed.provider(issuer.url)))
        assert fed.assume(role, issuer.token())
        # The broker fetched the keys before this instant: ages below are lower bounds.
        fetched = time.monotonic()
        issuer.stop()
        assert fed.assume(role, issuer.token())  # cached, within the TTL
        time.sleep(max(0.0, fetched + 3 - time.monotonic()))
        assert fed.assume(role, issuer.token())  # past the TTL: the last good keys, stale
        time.sleep(max(0.0, fetched + 6.5 - time.monotonic()))
        with pytest.raises(fed.sts.exceptions.IDPCommunicationErrorException):
            fed.assume(role, issuer.token())  # past jwks_stale_max_seconds
        issuer.start()
        time.sleep(1.2)  # a failed fetch is retried after a second
        assert fed.assume(role, issuer.token())
        assert issuer.jwks_hits == 2
    finally:
        broker.stop()
