"""Access commands: API tokens, web users' passwords, and the audit trail (query, verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from features.core import cli
from features.core.errors import InputError
from features.core.settings import AUDIT_DB, SERVICE_DB, settings
from serving.access.audit import AuditLog, open_audit, parse_head, read_heads
from serving.access.audit_keys import KeyRing
from serving.access.passwords import CODE_HOURS, Passwords
from serving.access.tokens import DEFAULT_EXPIRY_DAYS, TokenStore
from serving.cli.service import ServiceDbOpt
from serving.storage.web_records import WebStore

tokens_app = typer.Typer(help="Access tokens for the API.", no_args_is_help=True)


users_app = typer.Typer(
    help="Web sign-in for people: one-time codes to set a password, and removal.",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="The audit trail of API calls: query it, or verify its hash chain.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")


def _existing_log(audit_db: Path | None) -> AuditLog:
    path = cli.in_home(audit_db, AUDIT_DB)
    if not settings().database_url and not path.exists():
        raise InputError(f"{path}: no audit log yet (see --audit-db, or SUNSHINE_HOME)")
    return open_audit(path)


@tokens_app.command("create")
@cli.user_errors
def tokens_create(
    user: Annotated[str, typer.Option(help="who the token is for")],
    role: Annotated[str, typer.Option(help="caseworker, analyst or admin")],
    districts: Annotated[
        list[str] | None, typer.Option("--districts", help="a caseworker's districts, repeatable")
    ] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="extra scope: youth")] = None,
    expires: Annotated[int, typer.Option(help="days until it expires")] = DEFAULT_EXPIRY_DAYS,
) -> None:
    """Create an API token; it is printed once and only its hash is stored."""
    tokens = TokenStore.load()
    token = tokens.create(user, role, districts, scope, expires)
    tokens.save()
    entry = tokens.entries[-1]
    cli.err_console.print(
        f"token {entry.id} for {user} ({role}), valid until {entry.expires}, saved as a hash in "
        f"{tokens.where}"
    )
    print(token)


@tokens_app.command("list")
@cli.user_errors
def tokens_list(
    audit_db: cli.AuditDbOpt = None,
    fmt: cli.FormatOpt = "table",
) -> None:
    """Every token: id, user, role, districts, scope, created, expires, status, last used.
    Never the secret."""
    path = cli.in_home(audit_db, AUDIT_DB)
    used = open_audit(path).last_used() if settings().database_url or path.exists() else {}
    tokens = TokenStore.load()
    cli.show_frame(pd.DataFrame(tokens.listing(used)), fmt, f"tokens in {tokens.where}")


@tokens_app.command("revoke")
@cli.user_errors
def tokens_revoke(
    token_id: Annotated[
        str | None, typer.Option("--id", help="the token's id (tokens list)")
    ] = None,
    user: Annotated[str | None, typer.Option(help="revoke every token of this user")] = None,
) -> None:
    """Revoke a token, or all of a user's; a running server refuses it within seconds."""
    tokens = TokenStore.load()
    revoked = tokens.revoke(token_id, user)
    tokens.save()
    for e in revoked:
        cli.console.print(f"revoked token {e.id} of {e.user} ({e.role})")


def _passwords(service_db: Path | None) -> Passwords:
    return Passwords(WebStore(cli.in_home(service_db, SERVICE_DB)).engine)


@users_app.command("invite")
@cli.user_errors
def users_invite(
    user: Annotated[str, typer.Option(help="the user name, as their token names it")],
    hours: Annotated[int, typer.Option(min=1, max=168, help="hours the code stays valid")] = (
        CODE_HOURS
    ),
    service_db: ServiceDbOpt = None,
) -> None:
    """Issue a one-time code with which the user sets (or resets) their web password at
    /app/setup. The code is printed once; only its hash is stored, and an earlier code of
    the user stops working. The user signs in as the role and districts of their token."""
    who = TokenStore.load().for_user(user)
    if who is None:
        raise InputError(
            f"{user} has no valid token: create one first (sunshine tokens create --user {user})"
        )
    code = _passwords(service_db).issue_code(user, hours)
    cli.err_console.print(
        f"one-time code for {user} ({who.role}), valid for {hours} hours: they open "
        "/app/setup, enter their user name, this code and a new password"
    )
    print(code)


@users_app.command("remove")
@cli.user_errors
def users_remove(
    user: Annotated[str, typer.Option(help="the user name")],
    service_db: ServiceDbOpt = None,
) -> None:
    """Forget a user's password and codes: they sign in again only through a new code.
    (Revoking their tokens closes every door at once.)"""
    passwords = _passwords(service_db)
    if not passwords.has_password(user):
        raise InputError(f"{user} has no password")
    passwords.remove(user)
    cli.console.print(f"removed the password of {user}")


@audit_app.callback()
@cli.user_errors
def audit_cmd(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="only this person_id")] = None,
    user: Annotated[str | None, typer.Option(help="only this user")] = None,
    since: Annotated[str | None, typer.Option(help="from this date (YYYY-MM-DD)")] = None,
    limit: Annotated[
        int,
        typer.Option(min=0, help="the latest N requests (0: all); a caseload page is one"),
    ] = 50,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="in the order written (default newest first)")
    ] = False,
    audit_db: cli.AuditDbOpt = None,
    fmt: cli.FormatOpt = "table",
) -> None:
    """Query the audit trail of risk requests, score calls, pages and admin calls, newest
    first. In a table, a request that read many persons (a caseload page, a roster) is one
    line with its count; CSV and JSON give every entry."""
    if ctx.invoked_subcommand is not None:
        return
    day = cli.parse_date(since, "--since") if since else None
    rows = _existing_log(audit_db).query(person, user, day, limit or None, not oldest_first)
    entries = len(rows)
    if fmt == "table":
        rows = one_line_a_request(rows)
    shown = f"audit: {entries:,} entries" + (
        f" of {len(rows):,} requests" if len(rows) != entries else ""
    )
    cli.show_frame(rows, fmt, shown + (f" (the latest {limit})" if limit else ""))


def one_line_a_request(rows: pd.DataFrame) -> pd.DataFrame:
    """One line a request: a request of several entries (a caseload page lists its persons,
    one entry each) shows its first entry, with the count of persons in place of one."""
    if rows.empty or not rows["request_id"].duplicated().any():
        return rows
    grouped = rows.groupby("request_id", sort=False)
    first = grouped.head(1).set_index("request_id")
    counts = grouped["person_id"].nunique()
    many = counts[grouped.size() > 1]
    first.loc[many.index, "person_id"] = [f"({n} persons)" for n in many]
    first.loc[many.index, ["probability", "tier"]] = None
    return first.reset_index()[rows.columns]


@audit_app.command("verify")
@cli.user_errors
def audit_verify(
    audit_db: cli.AuditDbOpt = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="a head kept earlier, ID:SEAL as verify printed it: the chain must still hold it",
        ),
    ] = None,
    heads: Annotated[
        Path | None,
        typer.Option(
            "--heads",
            help="a file of heads kept earlier (the trail's audit-heads.log): each must hold",
        ),
    ] = None,
) -> None:
    """Check the chain: exit 1 naming the first deleted, inserted or altered row, or a head
    kept earlier that the chain no longer holds (a chain cut short, or rewritten whole). On
    success, print the head to keep."""
    log = _existing_log(audit_db)
    # the trail as the operator knows it: its file, or its database (never with a password)
    where = log.url.split("@")[-1] if log.url else str(log.path)
    verdict = log.verify()
    if not verdict.intact:
        _fail(
            f"{where}: the chain breaks at row {verdict.broken_at}: {verdict.reason} "
            f"({verdict.rows:,} entries before it verified)"
        )
    kept = [parse_head(expect_head, "--expect-head")] if expect_head else []
    kept += read_heads(heads) if heads else []
    if kept and (lost := log.missing_heads(kept)):
        _fail(f"{where}: {lost[0]} ({len(lost)} of {len(kept)} kept heads do not hold)")
    head = f"; head {verdict.head[0]}:{verdict.head[1]}" if verdict.head else ""
    also = f"; {len(kept)} kept head(s) hold" if kept else ""
    cli.console.print(
        f"{where}: {verdict.rows:,} entries, {verdict.reason}{also}{head}",
        soft_wrap=True,
        highlight=False,
    )


def _fail(message: str) -> None:
    cli.err_console.print(message, highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(1)


@audit_app.command("rotate-key")
@cli.user_errors
def audit_rotate_key(audit_db: cli.AuditDbOpt = None) -> None:
    """Add a new key to the trail's key ring: rows written from now on are sealed with it,
    in every running writer from its next commit; the old keys stay, to verify older rows."""
    log = _existing_log(audit_db)
    if not log.keys_path.exists():
        raise InputError(f"{log.keys_path}: no key ring yet (the trail's first write makes one)")
    key_id = KeyRing.read(log.keys_path).rotate()
    cli.console.print(f"{log.keys_path}: rows from now on are sealed with key {key_id}")
