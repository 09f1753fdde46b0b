"""The unit tier does no I/O: a test that opens SQLite here fails, naming the tier it belongs to."""

from __future__ import annotations

import sqlite3
import sqlite3.dbapi2

import pytest


def _refuse(*_args, **_kwargs):
    raise AssertionError("tests/unit opens no database: put this test in tests/store (its `db` fixture)")


@pytest.fixture(autouse=True)
def no_sqlite(monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", _refuse)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", _refuse)
