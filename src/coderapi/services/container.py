"""Everything one app needs, built by create_app from its settings (nothing at import time)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from coderapi.backends.fair_pool import FairPool
from coderapi.backends.prep_pool import PrepPool
from coderapi.backends.stats import engine_stats
from coderapi.config import Settings
from coderapi.limits import RateLimits, build_limiter
from coderapi.services.accounts import AccountService, KeyService, SignupService, UserService
from coderapi.services.admission import Admission
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.billing import Billing
from coderapi.services.inference import InferenceService
from coderapi.services.lifecycle import Lifecycle
from coderapi.services.credit_leases import CreditLeases
from coderapi.services.ledger_writer import LedgerWriter
from coderapi.services.metering import Metering
from coderapi.services.metrics import ServingMetrics
from coderapi.services.passwords import PasswordPool
from coderapi.services.registry import ModelRegistry, ServedModel
from coderapi.services.reservations import CostReservations
from coderapi.services.row_budget import EmptyRowBudget
from coderapi.services.spending import PeriodSpend
from coderapi.services.tokenizer import TokenizerService
from coderapi.services.usage_journal import UsageJournal
from coderapi.services.usage_reports import UsageReports
from coderapi.store.database import Database

log = logging.getLogger("coderapi")


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyService  # API keys: create, authenticate, list, update, delete
    users: UserService  # users, their rate-limit overrides, balances and credit
    signups: SignupService  # sign-up, sign-in, approvals, invites, the first admin
    registry: ModelRegistry
    metrics: ServingMetrics
    metering: Metering
    inference: InferenceService
    limits: RateLimits
    reports: UsageReports  # usage totals and series, logs, charges (API and dashboard)
    billing: Billing
    prep: PrepPool  # threads that prepare inference requests off the event loop
    tokenizer: TokenizerService
    ledger: LedgerWriter  # holds and usage rows, group-committed; usage journaled until committed
    leases: CreditLeases  # keys' credit held in slices, spent in memory (see services.credit_leases)

    @classmethod
    def build(cls, settings: Settings, served: list[ServedModel]) -> "Services":
        db = Database(settings.resolved_database_url, timeout_seconds=settings.database_timeout_seconds)
        report_pool = FairPool(
            settings.report_threads, settings.report_queue, settings.report_queue_per_user,
            thread_name="coderapi-reports", work="usage reports are being computed",
        )
        accounts = AccountService(
            db, starting_credit=settings.starting_credit, max_keys_per_user=settings.max_keys_per_user,
            passwords=PasswordPool(settings.password_hash_workers, settings.password_hash_max_waiting),
            key_cache_size=settings.key_cache_size, report_pool=report_pool,
        )
        registry = ModelRegistry(served)
        prep = PrepPool(settings.prepare_threads, settings.prepare_queue, settings.prepare_queue_per_user)
        for model in served:
            attach = getattr(model.backend, "attach_prep_pool", None)  # Coder backends prepare requests
            if attach is not None:
                attach(prep)
        metrics = ServingMetrics(lambda: services.engine_stats())
        reservations = CostReservations(db, PeriodSpend(db), ttl_seconds=settings.reservation_ttl_seconds)
        ledger = LedgerWriter(reservations, UsageJournal(Path(settings.data_dir) / "usage-journal"))
        leases = CreditLeases(
            ledger, lease_requests=settings.credit_lease_requests,
            lease_seconds=settings.effective_credit_lease_seconds,
        )
        metering = Metering(leases, metrics, EmptyRowBudget(settings.empty_usage_rows_per_user_minute))
        limits = RateLimits(
            build_limiter(settings.redis_url, settings.redis_failure_mode), default_rpm=settings.default_rpm, default_tpm=settings.default_tpm,
            default_user_rpm=settings.default_user_rpm, default_user_tpm=settings.default_user_tpm,
        )
        in_flight = InFlightLimits(settings.max_concurrent_requests_per_key, settings.max_concurrent_requests_per_user)
        admission = Admission(limits, reservations, in_flight, leases, accounts.keys.key_cache)
        inference = InferenceService(Lifecycle(registry, metering, admission))
        services = cls(
            settings, db, accounts.keys, accounts.users, accounts.signups, registry, metrics, metering, inference,
            limits=limits, reports=UsageReports(db, metering.settled, report_pool), billing=Billing(accounts.users, settings.models, metering.settled),
            prep=prep, tokenizer=TokenizerService(registry, limits, metering, in_flight), ledger=ledger, leases=leases,
        )
        return services

    async def start_models(self) -> None:
        for model in self.registry.models:
            try:
                await model.backend.start()
            except Exception:
                log.exception("model %s failed to start", model.spec.id)
                raise

    async def end_inflight(self) -> None:
        """Stop the models: requests still generating end with ModelNotReady (shutting down)."""
        await asyncio.gather(*(m.backend.close() for m in self.registry.models), return_exceptions=True)

    async def close(self) -> None:
        await self.metering.drain()
        await self.leases.close()  # given back before the ledger's last batch
        await self.ledger.close()
        await self.limits.close()
        await asyncio.gather(*(m.backend.close() for m in self.registry.models), return_exceptions=True)
        self.prep.close()
        self.reports.close()
        self.signups.passwords.close()
        self.db.dispose()

    def engine_stats(self):
        for model in self.registry.models:
            stats = engine_stats(model.backend)
            if stats is not None:
                yield model.spec.id, stats
