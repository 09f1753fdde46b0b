"""Changes to one row the caller has loaded (a key, a user): the services validate the values,
this writes them."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

Row = TypeVar("Row")


def update(session: Session, row: Row, **values) -> Row:
    """Set the given columns of `row` and write them now (so a constraint fails here, not later)."""
    for column, value in values.items():
        setattr(row, column, value)
    session.flush()
    return row
