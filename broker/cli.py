"""CLI: ``broker serve | check-config | account | keys | audit | policy | credential-process``.

Every admin subcommand takes the same ``--config/--data-dir/--store/--redis-url`` flags as
``serve`` and prints JSON on stdout; errors go to stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from broker.config import BrokerConfig, ConfigError, load_config
from broker.delivery_cli import add_credential_process_arguments

if TYPE_CHECKING:
    from broker.service.keys import KeyInfo

POLICY_TYPES = (
    "IDENTITY_POLICY",
    "RESOURCE_POLICY",
    "SERVICE_CONTROL_POLICY",
    "RESOURCE_CONTROL_POLICY",
)
"""``broker policy validate --type`` values (Access Analyzer's ``PolicyType``)."""


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--data-dir", help="data directory ([store] data_dir)")
    parser.add_argument("--store", choices=("sqlite", "redis"), help="[store] backend")
    parser.add_argument("--redis-url", help="[store] redis_url, e.g. redis://127.0.0.1:6379/0")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="broker", description="IAM + STS credential broker")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API listener")
    _store_flags(serve)
    serve.add_argument("--host", help="[server] host")
    serve.add_argument("--port", type=int, help="[server] port")
    serve.add_argument("--workers", type=int, help="[server] workers (processes)")

    check = sub.add_parser("check-config", help="load and validate the configuration")
    _store_flags(check)

    account = sub.add_parser("account", help="manage accounts")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    create = account_sub.add_parser("create", help="create an account and its root access key")
    _store_flags(create)
    create.add_argument("--account-id", help="12-digit id (default: generated)")
    listing = account_sub.add_parser("list", help="list account ids")
    _store_flags(listing)

    sessions = sub.add_parser("sessions", help="issued temporary-credential sessions")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True)
    s_list = sessions_sub.add_parser("list", help="list live sessions")
    _store_flags(s_list)
    s_list.add_argument("--account", help="account id (default: every account)")
    s_list.add_argument("--role", help="only sessions of this role ARN")
    s_revoke = sessions_sub.add_parser("revoke", help="revoke a session or a role's sessions")
    _store_flags(s_revoke)
    target = s_revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--session", help="session id to revoke")
    target.add_argument("--role", help="role ARN whose sessions to revoke")
    s_revoke.add_argument(
        "--issued-before", help="with --role: revoke sessions issued before this ISO 8601 time"
    )

    keys = sub.add_parser("keys", help="key material")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("generate-master", help="print a fresh master key (base64)")
    rotate = keys_sub.add_parser("rotate", help="make new active token and signing keys")
    _store_flags(rotate)
    key_list = keys_sub.add_parser("list", help="list the keyring (never key material)")
    _store_flags(key_list)
    retire = keys_sub.add_parser("retire", help="stop a token or signing key verifying now")
    _store_flags(retire)
    retire.add_argument("kid", help="id of the key to retire (see `broker keys list`)")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    tail = audit_sub.add_parser("tail", help="print the last audit events (JSON lines)")
    _store_flags(tail)
    tail.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only events whose field KEY (dotted for nested fields) equals VALUE; repeatable",
    )
    tail.add_argument("-n", type=int, default=20, help="how many events (default 20)")

    policy = sub.add_parser("policy", help="policy checks and account findings")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    p_validate = policy_sub.add_parser(
        "validate",
        help="check a policy document like Access Analyzer's ValidatePolicy "
        "(exit 1 on ERROR or SECURITY_WARNING findings)",
    )
    p_validate.add_argument("file", help="the policy document ('-' reads stdin)")
    p_validate.add_argument(
        "--type",
        dest="policy_type",
        default="IDENTITY_POLICY",
        choices=POLICY_TYPES,
        help="policy type (default IDENTITY_POLICY)",
    )
    p_validate.add_argument(
        "--resource-type",
        help="with RESOURCE_POLICY: validatePolicyResourceType, "
        "e.g. AWS::IAM::AssumeRolePolicyDocument for a role trust policy",
    )
    p_findings = policy_sub.add_parser(
        "findings", help="an account's unused-access and credential-hygiene findings"
    )
    _store_flags(p_findings)
    p_findings.add_argument("--account", required=True, help="12-digit account id")
    p_findings.add_argument(
        "--unused-days", type=int, default=90, help="unused threshold in days (default 90)"
    )

    process = sub.add_parser(
        "credential-process", help="print role credentials for an SDK's credential_process"
    )
    add_credential_process_arguments(process)
    return parser


def _config(args: argparse.Namespace) -> BrokerConfig:
    overrides: dict[str, dict[str, Any]] = {
        "store": {
            "data_dir": getattr(args, "data_dir", None),
            "backend": getattr(args, "store", None),
            "redis_url": getattr(args, "redis_url", None),
        },
        "server": {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "workers": getattr(args, "workers", None),
        },
    }
    return load_config(getattr(args, "config", None), overrides=overrides)


def _print(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


async def _account_create(cfg: BrokerConfig, account_id: str | None) -> dict[str, str]:
    from broker.app import bootstrap, build_runtime
    from broker.core.ids import is_account_id, new_account_id

    if account_id is not None and not is_account_id(account_id):
        raise ConfigError([f"--account-id must be 12 digits, not {account_id!r}"])
    account = account_id or new_account_id()
    rt = await build_runtime(cfg)
    try:
        await bootstrap(rt)
        key = await rt.accounts.create_account(account)
        return {
            "AccountId": account,
            "AccessKeyId": key.access_key_id,
            "SecretAccessKey": key.secret_access_key,
        }
    finally:
        await rt.close()


async def _sessions(cfg: BrokerConfig, args: argparse.Namespace) -> object:
    from broker.app import build_runtime
    from broker.core.arn import parse_arn
    from broker.service.sessions import parse_time

    rt = await build_runtime(cfg)
    try:
        accounts = await rt.accounts.list_accounts()
        if args.sessions_command == "list":
            wanted = [args.account] if args.account else accounts
            out = []
            for account in wanted:
                out += await rt.sessions.list_sessions(account, args.role)
            return out
        if args.session:
            account, _ = await rt.sessions.find_session(accounts, args.session)
            doc = await rt.sessions.revoke_session(account, args.session)
            return {"Revoked": doc["sid"], "AccessKeyId": doc["akid"], "Arn": doc["arn"]}
        if parse_arn(args.role) is None:
            raise ConfigError([f"--role must be a role ARN, not {args.role!r}"])
        before = parse_time(args.issued_before) if args.issued_before else None
        cutoff = await rt.sessions.revoke_role_sessions(args.role, before)
        return {"RoleArn": args.role, "IssuedBefore": cutoff}
    finally:
        await rt.close()


async def _account_list(cfg: BrokerConfig) -> list[str]:
    from broker.app import build_runtime

    rt = await build_runtime(cfg)
    try:
        return await rt.accounts.list_accounts()
    finally:
        await rt.close()


def _key_json(info: KeyInfo) -> dict[str, object]:
    """One key as ``broker keys`` prints it: metadata only, never material."""
    from broker.clock import iso8601

    def when(epoch: int | None) -> str | None:
        return None if epoch is None else iso8601(dt.datetime.fromtimestamp(epoch, dt.UTC))

    return {
        "kid": info.kid,
        "kind": info.kind,
        "alg": info.alg,
        "created": when(info.created_at),
        "rotated_out_at": when(info.rotated_out_at),
        "retired": info.retired,
        "active": info.active,
        "verifies": info.verifies,
    }


async def _keys(cfg: BrokerConfig, command: str, kid: str | None) -> object:
    """``broker keys rotate | list | retire KID``."""
    from broker.app import build_runtime

    rt = await build_runtime(cfg)
    try:
        if command == "rotate":
            return [_key_json(i) for i in await rt.keys.rotate()]
        if command == "retire":
            assert kid is not None
            return _key_json(await rt.keys.retire(kid))
        return [_key_json(i) for i in await rt.keys.list_keys()]
    finally:
        await rt.close()


def _audit_tail(cfg: BrokerConfig, filters: Sequence[str], count: int) -> int:
    """Print the last ``count`` events of the audit file(s) that match every filter."""
    from collections import deque

    from broker.audit import audit_files, default_path, event_matches, read_events

    wanted: dict[str, str] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError([f"--filter must be KEY=VALUE, not {item!r}"])
        wanted[key] = value
    paths = audit_files(default_path(cfg.audit.path, cfg.data_dir), cfg.audit.backups)
    events = (e for e in read_events(paths) if event_matches(e, wanted))
    for event in deque(events, maxlen=max(0, count)):
        sys.stdout.write(json.dumps(event) + "\n")
    return 0


def _policy_validate(args: argparse.Namespace) -> int:
    """``broker policy validate FILE``: print the findings; 1 when any blocks, 2 on bad input."""
    from broker.core.policy.findings import (
        RESOURCE_TYPES,
        PolicyType,
        has_blocking,
        validate_policy,
    )

    ptype = PolicyType(args.policy_type)
    if args.resource_type is not None and (
        ptype is not PolicyType.RESOURCE_POLICY or args.resource_type not in RESOURCE_TYPES
    ):
        kinds = ", ".join(RESOURCE_TYPES)
        raise ConfigError([f"--resource-type needs --type RESOURCE_POLICY and one of: {kinds}"])
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {args.file}: {exc}"]) from None
    findings = validate_policy(text, ptype, args.resource_type)
    _print({"findings": [f.to_json() for f in findings]})
    return 1 if has_blocking(findings) else 0


async def _policy_findings(cfg: BrokerConfig, account: str, unused_days: int) -> object:
    """``broker policy findings --account ID``: the account's findings."""
    from broker.app import build_runtime
    from broker.core.ids import is_account_id
    from broker.service.findings import AccountFindings

    if not is_account_id(account):
        raise ConfigError([f"--account must be 12 digits, not {account!r}"])
    if unused_days < 1:
        raise ConfigError([f"--unused-days must be at least 1, not {unused_days}"])
    rt = await build_runtime(cfg)
    try:
        return await AccountFindings(rt.store, rt.clock).account_findings(account, unused_days)
    finally:
        await rt.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``broker`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "credential-process":  # a client: no broker config, no log lines
        from broker.delivery_cli import credential_process

        return credential_process(args)
    from broker.app import StartupError, configure_logging

    configure_logging()
    try:
        if args.command == "keys" and args.keys_command == "generate-master":
            from broker.core.keyring import generate_master_key

            sys.stdout.write(generate_master_key() + "\n")
            return 0
        if args.command == "policy" and args.policy_command == "validate":
            return _policy_validate(args)
        cfg = _config(args)
        if args.command == "policy":
            from broker.errors import BrokerError
            from broker.store.base import StoreError

            try:
                _print(asyncio.run(_policy_findings(cfg, args.account, args.unused_days)))
            except BrokerError as exc:
                sys.stderr.write(f"broker: {exc.code}: {exc.message}\n")
                return 1
            except StoreError as exc:
                sys.stderr.write(f"broker: the {cfg.store.backend} store failed: {exc}\n")
                return 1
            return 0
        if args.command == "check-config":
            _print({"ok": True, "source": cfg.source, "store": cfg.store.backend})
            return 0
        if args.command == "serve":
            from broker.app import serve

            return serve(cfg)
        if args.command == "account" and args.account_command == "create":
            from broker.errors import BrokerError

            try:
                _print(asyncio.run(_account_create(cfg, args.account_id)))
            except BrokerError as exc:
                sys.stderr.write(f"broker: {exc.code}: {exc.message}\n")
                return 1
            return 0
        if args.command == "sessions":
            from broker.errors import BrokerError

            try:
                _print(asyncio.run(_sessions(cfg, args)))
            except BrokerError as exc:
                sys.stderr.write(f"broker: {exc.code}: {exc.message}\n")
                return 1
            return 0
        if args.command == "keys":
            from broker.errors import BrokerError
            from broker.store.base import StoreError

            try:
                _print(asyncio.run(_keys(cfg, args.keys_command, getattr(args, "kid", None))))
            except BrokerError as exc:
                sys.stderr.write(f"broker: {exc.code}: {exc.message}\n")
                return 1
            except StoreError as exc:
                sys.stderr.write(f"broker: the {cfg.store.backend} store failed: {exc}\n")
                return 1
            return 0
        if args.command == "audit":
            return _audit_tail(cfg, args.filter, args.n)
        if args.command == "account" and args.account_command == "list":
            _print(asyncio.run(_account_list(cfg)))
            return 0
    except ConfigError as exc:
        sys.stderr.write(f"broker: {exc}\n")
        return 2
    except StartupError as exc:
        sys.stderr.write(f"broker: {exc}\n")
        return 1
    return 2  # pragma: no cover - argparse rejects other commands
