"""In-memory stand-ins for what a request's lifecycle talks to (the ledger writer, the key check
of the reservations, a backend), so its admission and its end are tested without I/O."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable

from coderapi.backends.base import RequestTally
from coderapi.backends.served import ServedModel
from coderapi.config import ModelSpec
from coderapi.limits import MemoryLimiter, RateLimits
from coderapi.protocol.chat import ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, ResponseMessage
from coderapi.protocol.completions import Completion, CompletionChoice
from coderapi.services.account_types import Principal
from coderapi.services.admission import Admission
from coderapi.services.credit_leases import CreditLeases
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.inference import InferenceService
from coderapi.services.key_cache import KeyCache
from coderapi.services.lifecycle import Lifecycle
from coderapi.services.metering import Metering
from coderapi.services.metrics import ServingMetrics
from coderapi.services.registry import ModelRegistry
from coderapi.services.row_budget import EmptyRowBudget

MODEL = "coder-test"
PRINCIPAL = Principal(
    user_id=1, email="a@example.com", role="user", key_id=7, key_prefix="sk-abcde", key_kind="inference",
    scopes=("model:chat",), rpm_limit=None, tpm_limit=None,
)
SPEC = ModelSpec(id=MODEL, backend="fake", price_input_per_million=1.0, price_output_per_million=2.0)


def chat_body(content: str = "hi", *, model: str = MODEL, stream: bool = False, **extra) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, **extra}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


class FakeLedger:
    """LedgerWriter's two calls: a cost hold (`reserve`), and a usage record with the hold to drop (`settle`)."""

    def __init__(self) -> None:
        self.holds: list[str] = []
        self.settled: list[tuple[object, int | None]] = []
        self.refuse: Exception | None = None

    async def reserve(self, principal: Principal, request_id: str, amount, *, confirm_key: bool) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.holds.append(request_id)
        return len(self.holds)

    def settle(self, record, reservation_id: int | None, lease_id: int | None = None) -> None:
        self.settled.append((record, reservation_id))

    def release(self, reservation_id: int) -> None:
        self.settled.append((None, reservation_id))

    async def drain(self) -> None:
        return None


class FakeReservations:
    """CostReservations.confirm_key: the key's verdict for a request refused before its hold."""

    def __init__(self) -> None:
        self.verdict: Exception | None = None
        self.asked = 0

    async def confirm_key(self, principal: Principal) -> Exception | None:
        self.asked += 1
        return self.verdict


class ScriptedBackend:
    """A backend whose answer is `script(tally)`: a whole answer, a stream, or an error it raises."""

    served_model = MODEL

    def __init__(self) -> None:
        self.script: Callable[[RequestTally], object] = answer(2)

    async def chat(self, request, tally: RequestTally):
        tally.count_prompt(3)
        return await self.script(tally)

    async def complete(self, request, tally: RequestTally):
        tally.count_prompt(3)
        result = await self.script(tally)
        if isinstance(result, ChatCompletion):
            return Completion(id="c", created=0, model=MODEL, choices=[CompletionChoice(index=0, text="x", finish_reason="stop")])
        return result


def answer(tokens: int):
    async def run(tally: RequestTally) -> ChatCompletion:
        for _ in range(tokens):
            tally.count_token()
        tally.set_finish_reason("stop")
        message = ResponseMessage(content="x" * tokens)
        return ChatCompletion(
            id="c", created=0, model=MODEL, choices=[ChatChoice(index=0, message=message, finish_reason="stop")],
            usage=tally.usage(),
        )
    return run


def raising(error: BaseException, after_tokens: int = 0):
    async def run(tally: RequestTally):
        for _ in range(after_tokens):
            tally.count_token()
        raise error
    return run


def streaming(tokens: int, fail_with: BaseException | None = None, fail_at: int = 0):
    async def run(tally: RequestTally) -> AsyncIterator[ChatCompletionChunk]:
        async def chunks():
            for i in range(tokens):
                if fail_with is not None and i == fail_at:
                    raise fail_with
                tally.count_token()
                yield ChatCompletionChunk(
                    id="c", created=0, model=MODEL, choices=[ChunkChoice(index=0, delta=Delta(content="x"))]
                )
        return chunks()
    return run


def hanging():
    async def run(tally: RequestTally):
        tally.count_token()
        await asyncio.Event().wait()
    return run


@dataclass
class Rig:
    lifecycle: Lifecycle
    backend: ScriptedBackend
    ledger: FakeLedger
    reservations: FakeReservations
    in_flight: InFlightLimits
    metering: Metering
    metrics: ServingMetrics
    inference: InferenceService

    async def rows(self) -> list:
        await self.metering.drain()
        return [record for record, _ in self.ledger.settled]


def rig(*, per_key: int = 0, per_user: int = 0, rpm: int = 0, tpm: int = 0, empty_rows: int = 0) -> Rig:
    ledger, reservations, backend = FakeLedger(), FakeReservations(), ScriptedBackend()
    limits = RateLimits(MemoryLimiter(), default_rpm=rpm, default_tpm=tpm)
    in_flight = InFlightLimits(per_key, per_user)
    leases = CreditLeases(ledger, lease_requests=0, lease_seconds=30)  # one exact hold per request
    admission = Admission(limits, reservations, in_flight, leases, KeyCache(8))
    metrics = ServingMetrics(lambda: [])
    metering = Metering(leases, metrics, EmptyRowBudget(empty_rows))
    registry = ModelRegistry([ServedModel(SPEC, backend, "scripted")])
    lifecycle = Lifecycle(registry, metering, admission)
    return Rig(lifecycle, backend, ledger, reservations, in_flight, metering, metrics, InferenceService(lifecycle))


def management(principal: Principal = PRINCIPAL) -> Principal:
    return replace(principal, key_kind="management")
