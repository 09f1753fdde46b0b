"""The store tier: crud and services on a real SQLite file (tests/unit does no I/O).

`db` is the one database fixture of the tier: a fresh file, migrated to head, disposed after."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from coderapi.store.database import Database


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "nested" / "dir" / "store.db"  # a parent that does not exist yet: Database creates it


@pytest.fixture
def db(db_path) -> Iterator[Database]:
    database = Database(f"sqlite:///{db_path}")
    database.upgrade()
    yield database
    database.dispose()
