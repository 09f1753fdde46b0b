"""A fresh PostgreSQL schema per test, on the server `.ci/run` starts (CODERAPI_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from tests.conftest import require_or_skip


@dataclass(frozen=True)
class Schema:
    name: str
    url: URL  # the server's URL with this schema as search_path

    @property
    def dsn(self) -> str:
        return self.url.render_as_string(hide_password=False)


@contextmanager
def fresh_schema(prefix: str = "coderapi_test") -> Iterator[Schema]:
    """Creates a schema of its own and drops it (with everything in it) afterwards."""
    server = os.environ.get("CODERAPI_TEST_POSTGRES_URL")
    require_or_skip(bool(server), "set CODERAPI_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield Schema(name, make_url(server).update_query_dict({"options": f"-csearch_path={name}"}))
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()
