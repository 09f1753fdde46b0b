"""Several processes starting together on one new SQLite file migrate it once, without error."""

from __future__ import annotations

import multiprocessing

from coderapi.store.database import Database

PROCESSES = 4


def _migrate(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        Database(url).upgrade()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_starting_together_migrate_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_migrate, args=(url, barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    outcomes = [results.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * PROCESSES, outcomes
    db = Database(url)
    assert db.current_revision() is not None
    db.dispose()
