"""Blocking parts of creating users, checking passwords, approvals and invites (run them in a
worker thread). No argon2 here: `AccountService` hashes in its own pool and hands the results in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from coderapi import crud
from coderapi.crud import invites as crud_invites
from coderapi.errors import Conflict, InvalidRequest, NotFound
from coderapi.services.account_types import UserInfo
from coderapi.services.user_ops import insert_user
from coderapi.store.database import Database

INVITE_PREFIX = "inv-"
_INVITE_BYTES = 18
_MAX_INVITE_LENGTH = 128


@dataclass(frozen=True)
class InviteInfo:
    id: int
    created_at: datetime
    used_at: datetime | None
    used_by: int | None  # the user who signed up with it


def invite_digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


def insert_new_user(
    db: Database,
    email: str,
    password_hash: str,
    role: str,
    credit: Decimal,
    now: datetime,
    *,
    pending: bool = False,
    invite_code: str | None = None,
) -> UserInfo:
    """Insert the user (an email already taken: Conflict). With `invite_code`, the invite is
    used up in the same transaction: an unknown or used code (InvalidRequest, param
    invite_code) leaves no user behind."""
    duplicate = Conflict(f"A user with email {email} already exists", param="email")
    bad_invite = InvalidRequest("This invite code is not valid, or it was used already.", param="invite_code")
    if invite_code is not None and not 0 < len(invite_code.strip()) <= _MAX_INVITE_LENGTH:
        raise bad_invite
    try:
        with db.session() as session:
            if crud.users.get_by_email(session, email) is not None:
                raise duplicate
            user = insert_user(session, email, password_hash, role, credit, pending=pending)
            if invite_code is not None and not crud_invites.consume(
                session, code_sha256=invite_digest(invite_code), user_id=user.id, now=now
            ):
                raise bad_invite  # rolls the user back
            return UserInfo.from_row(user)
    except IntegrityError:
        raise duplicate from None


def password_record(db: Database, email: str | None) -> tuple[str | None, UserInfo | None]:
    """The stored hash and the user, or (None, None) for an unknown email."""
    if not email:
        return None, None
    with db.session() as session:
        user = crud.users.get_by_email(session, email)
        return (user.password_hash, UserInfo.from_row(user)) if user is not None else (None, None)


def set_password_hash(db: Database, user_id: int, password_hash: str) -> None:
    with db.session() as session:
        user = crud.users.get(session, user_id)
        if user is not None:
            user.password_hash = password_hash


def approve_user(db: Database, user_id: int) -> UserInfo:
    with db.session() as session:
        user = crud.users.get(session, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}")
        user.pending_approval = False
        user.disabled = False
        session.flush()
        return UserInfo.from_row(user)


def create_invite(db: Database, created_by: int | None, now: datetime) -> tuple[InviteInfo, str]:
    """A new single-use code, returned once; only its sha256 is kept."""
    code = INVITE_PREFIX + secrets.token_urlsafe(_INVITE_BYTES)
    with db.session() as session:
        row = crud_invites.insert(session, code_sha256=invite_digest(code), created_by=created_by, now=now)
        return InviteInfo(row.id, row.created_at, row.used_at, row.used_by), code


def list_invites(db: Database) -> list[InviteInfo]:
    with db.session() as session:
        return [InviteInfo(r.id, r.created_at, r.used_at, r.used_by) for r in crud_invites.list_all(session)]


def revoke_invite(db: Database, invite_id: int) -> None:
    with db.session() as session:
        if not crud_invites.delete_unused(session, invite_id):
            raise NotFound(f"No unused invite with id {invite_id}")
