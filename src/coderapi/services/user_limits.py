"""Per-user rate-limit overrides (users.rpm_limit / users.tpm_limit), run in a worker thread.

None means "the configured default" (settings.default_rpm / default_tpm)."""

from __future__ import annotations

from coderapi import crud
from coderapi.errors import InvalidRequest, NotFound
from coderapi.services.account_types import UserInfo
from coderapi.store.database import Database

MAX_LIMIT = 1_000_000_000


def check_limit(value, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"{param} must be a whole number from 1 to {MAX_LIMIT:,}, or empty", param=param)
    return value


def set_user_limits(db: Database, user_id: int, rpm_limit: int | None, tpm_limit: int | None) -> UserInfo:
    rpm, tpm = check_limit(rpm_limit, "rpm_limit"), check_limit(tpm_limit, "tpm_limit")
    with db.session() as session:
        user = crud.users.get(session, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}")
        return UserInfo.from_row(crud.rows.update(session, user, rpm_limit=rpm, tpm_limit=tpm))
