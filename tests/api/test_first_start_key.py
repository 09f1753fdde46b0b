"""The first-start admin key is printed once: alone on stdout, by the start that created it, and
never again (not on a restart, not by a second gateway on the same database), never logged."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

from coderapi import console
from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from coderapi.store.database import Database

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir, seen: list) -> None:
    """One gateway's start-up and shut-down, announcing as `coderapi serve` does."""
    settings = Settings(data_dir=data_dir, models=[ModelSpec(id="m", backend="fake")], bootstrap_admin=True)

    def announce(services, secret):
        seen.append(secret)
        console.announce(services, secret)

    app = create_app(settings, announce=announce)

    async def run():
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(run())


def test_the_first_start_prints_the_key_once_and_restarts_never(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    seen: list = []
    _start(tmp_path, seen)
    first = capsys.readouterr()
    secret = seen[0]
    assert secret and secret.startswith("cdr-")
    assert (first.out + first.err).count(secret) == 1
    assert secret in first.out.splitlines()  # alone on its line, for scripts to read
    _start(tmp_path, seen)
    again = capsys.readouterr()
    assert seen[1] is None and "First start" not in again.out + again.err
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_of_gateways_starting_together_on_one_database_only_one_prints_a_key(tmp_path):
    # Migrated first: concurrent Alembic runs on one SQLite file are not what this is about
    # (PostgreSQL replicas take a lock for it).
    Database(f"sqlite:///{tmp_path / 'coderapi.db'}").upgrade()
    code = f"from tests.api.test_first_start_key import _start; _start({str(tmp_path)!r}, [])"
    gateways = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [gateway.communicate(timeout=120) for gateway in gateways]
    assert [gateway.returncode for gateway in gateways] == [0, 0, 0], outputs
    printed = [line for out, _ in outputs for line in out.splitlines() if line.startswith("cdr-")]
    assert len(printed) == 1
    assert sum(printed[0] in out + err for out, err in outputs) == 1
