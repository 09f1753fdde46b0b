"""The cost hold alone, at c=1: what `LedgerWriter.reserve` (with the previous request's settlement
in the same transaction, as a client sending one request after another gets) costs, in-process,
on a SQLite file. Less noisy than bench/gateway_profile.py --c1 on a loaded machine.

    .venv/bin/python bench/ledger_c1.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from coderapi.services.accounts import AccountService, UsageRecord
from coderapi.services.ledger_writer import LedgerWriter
from coderapi.services.reservations import CostReservations
from coderapi.services.spending import PeriodSpend
from coderapi.store.database import Database


async def run(requests: int, data: Path) -> list[float]:
    db = Database(f"sqlite:///{data / 'ledger.db'}")
    db.upgrade()
    accounts = AccountService(db, starting_credit=1_000_000)
    user = await accounts.signups.create_user("bench@example.com", "correct horse")
    _, secret = await accounts.keys.create_key(user.id)
    principal = await accounts.keys.authenticate_key(secret)
    writer = LedgerWriter(CostReservations(db, PeriodSpend(db), ttl_seconds=600))
    times, previous = [], None
    for i in range(requests):
        if previous is not None:  # the previous request's settlement shares this hold's transaction
            writer.settle(UsageRecord(f"r{i - 1}", principal.user_id, principal.key_id, principal.key_prefix,
                                      "m", "chat.completions", cost=Decimal("0.0001")), previous)
        start = time.perf_counter()
        previous = await writer.reserve(principal, f"r{i}", Decimal("0.001"), confirm_key=True)
        times.append(time.perf_counter() - start)
    await writer.close()
    db.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ledger-c1-") as data:
        times = asyncio.run(run(args.requests, Path(data)))[100:]  # the first ones warm caches up
    times.sort()
    print(f"hold at c=1: p50 {statistics.median(times) * 1000:.2f} ms, "
          f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms ({len(times)} holds)")


if __name__ == "__main__":
    main()
