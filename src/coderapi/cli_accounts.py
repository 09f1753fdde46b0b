"""Operator commands for users, keys and credit: `coderapi users|keys|credits ...`.

Each command opens the database that `coderapi serve` would use (--database-url, else the
--config file's database_url, else CODERAPI_DATABASE_URL, else SQLite in the data dir), brings its
schema up to date, and does one thing. Failures print one line to stderr and exit with status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from coderapi.cli_settings import ConfigFile, describe_invalid_settings
from coderapi.config import Settings
from coderapi.datadir import prepare_data_dir
from coderapi.errors import CoderapiError
from coderapi.services.accounts import AccountService
from coderapi.store.database import Database

T = TypeVar("T")

users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Manage users' USD credit.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: the --config file's database_url, else CODERAPI_DATABASE_URL, "
        "else SQLite in the data dir).",
        show_default=False,
    ),
]
KeyArg = Annotated[str, typer.Argument(help="The key's 8-character prefix, or the whole key.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _run(
    database_url: str | None, config: Path | None, action: Callable[[AccountService], Awaitable[T]]
) -> T:
    """Open the database, migrate it, run `action` with the account services (its `keys`, `users`
    and `signups`), and turn errors into exit 1."""
    db = None
    try:
        settings = Settings.load(config, database_url=database_url)  # flag > config file > env
        if not settings.database_url:
            prepare_data_dir(settings.data_dir)  # the default SQLite file lives there (mode 0700)
        db = Database(settings.resolved_database_url)
        db.upgrade()
        service = AccountService(db, starting_credit=settings.starting_credit)
        return asyncio.run(action(service))
    except CoderapiError as exc:
        raise _fail(exc.message) from None
    except json.JSONDecodeError as exc:
        raise _fail(f"{config} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        raise _fail(describe_invalid_settings(exc)) from None
    except ArgumentError:  # its message would repeat the URL, password included
        raise _fail("cannot use database URL: not a valid SQLAlchemy URL") from None
    except ImportError as exc:
        raise _fail(f"cannot use database URL: driver {exc.name!r} is not installed") from None
    except SQLAlchemyError as exc:
        raise _fail(f"database error: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}") from None
    finally:
        if db is not None:
            db.dispose()


def _read_password() -> str:
    """From a hidden prompt (typed twice) on a terminal, else the first line of stdin. Never from
    argv: the command line of a process is visible to every user of the machine (ps, /proc)."""
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


def _shown(text: str) -> Text:
    """Stored text (an email, a key name) as the terminal should see it: every character that is
    not printable (ESC and other controls, bidi overrides, zero-width and line-break characters)
    written as an escape like \\x1b or \\u202e, never sent raw; as a Text, so "[...]" is not markup.
    Rows stored before names and emails were checked may hold any of them."""
    return Text("".join(char if char == " " or char.isprintable() else ascii(char)[1:-1] for char in text))


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "never"


# users -------------------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email (their login).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create a user. The password is asked for on the terminal (hidden, twice), or read as one
    line of stdin: `printf '%s\\n' "$PASSWORD" | coderapi users create EMAIL`."""
    secret = _read_password()
    role = "admin" if admin else "user"
    user = _run(database_url, config, lambda s: s.signups.create_user(email, secret, role=role))
    typer.echo(f"Created {user.role} {user.email} (id {user.id}, balance ${user.balance:.2f}).")


@users_app.command("list")
def users_list(database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """List users."""
    users = _run(database_url, config, lambda s: s.users.list_users())
    table = Table("id", "email", "role", "state", "balance (USD)", "created")
    for u in users:
        state = "disabled" if u.disabled else "active"
        table.add_row(str(u.id), _shown(u.email), u.role, state, f"{u.balance:.6f}", _when(u.created_at))
    Console().print(table)


# keys --------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    email: Annotated[str, typer.Argument(help="Email of the key's owner.")],
    name: Annotated[str | None, typer.Option(help="A name to tell the key apart.")] = None,
    management: Annotated[
        bool, typer.Option("--management", help="A management key (keys, usage, billing).")
    ] = False,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key. Its secret is printed once, alone on the last line of output."""

    async def action(service: AccountService):
        user = await service.users.get_user_by_email(email)
        return await service.keys.create_key(
            user.id, name=name, kind="management" if management else "inference"
        )

    info, secret = _run(database_url, config, action)
    typer.echo(f"Created {info.kind} key {info.prefix} for {email}. It is shown only this once:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    email: Annotated[str, typer.Argument(help="Email of the keys' owner.")],
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """List a user's API keys."""

    async def action(service: AccountService):
        return await service.keys.list_keys((await service.users.get_user_by_email(email)).id)

    keys = _run(database_url, config, action)
    table = Table(title=_shown(f"Keys of {email}"))
    table.add_column("prefix", no_wrap=True)
    for heading in ("name", "kind", "state", "created", "last used"):
        table.add_column(heading)
    for k in keys:
        state = "disabled" if k.disabled else "active"
        table.add_row(k.prefix, _shown(k.name or ""), k.kind, state, _when(k.created_at), _when(k.last_used_at))
    Console().print(table)


def _set_disabled(key: str, disabled: bool, database_url: str | None, config: Path | None) -> None:
    async def action(service: AccountService):
        info = await service.keys.resolve_key(key)
        return await service.keys.set_key_disabled(info.user_id, info.prefix, disabled)

    info = _run(database_url, config, action)
    typer.echo(f"Key {info.prefix} {'disabled' if info.disabled else 'enabled'}.")


@keys_app.command("disable")
def keys_disable(key: KeyArg, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Disable an API key (requests with it answer 403)."""
    _set_disabled(key, True, database_url, config)


@keys_app.command("enable")
def keys_enable(key: KeyArg, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Enable a disabled API key."""
    _set_disabled(key, False, database_url, config)


@keys_app.command("delete")
def keys_delete(key: KeyArg, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Delete an API key (its usage history is kept)."""

    async def action(service: AccountService):
        info = await service.keys.resolve_key(key)
        await service.keys.delete_key(info.user_id, info.prefix)
        return info

    info = _run(database_url, config, action)
    typer.echo(f"Key {info.prefix} deleted.")


# credits -----------------------------------------------------------------------------------


@credits_app.callback()
def credits_group() -> None:
    """Manage users' USD credit."""  # a callback keeps `grant` a subcommand when it is the only one


@credits_app.command("grant")
def credits_grant(
    email: Annotated[str, typer.Argument(help="Email of the user to credit.")],
    amount: Annotated[
        str, typer.Argument(help="USD to add; to take some back, give a negative amount after `--`.")
    ],
    reason: Annotated[str, typer.Option(help="Why, for the ledger.")] = "operator grant",
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Add USD credit to a user's balance."""

    async def action(service: AccountService):
        user = await service.users.get_user_by_email(email)
        return await service.users.grant_credit(user.id, amount, reason, granted_by="cli")

    balance = _run(database_url, config, action)
    typer.echo(f"Granted ${amount} to {email}; balance is now ${balance:.6f}.")
