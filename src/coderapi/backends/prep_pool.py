"""The threads that prepare inference requests, so their CPU work never runs on the event loop.

Preparing a request (checking tool and response_format schemas, building grammars, rendering the
chat template, tokenizing prompts, converting logit_bias) is plain CPU work whose cost grows with
the request. It runs on a `FairPool` of its own (fair_pool.py: bounded, fair between users, a
share per user). The protocol caps (`coderapi.protocol.limits`), the body size limit and the
context (a prompt is tokenized only until it is found too long: `engines.token_limit`) bound the
work of each request.
"""

from __future__ import annotations

from coderapi.backends.fair_pool import FairPool


class PrepPool(FairPool):
    def __init__(self, threads: int, max_queued: int, max_queued_per_owner: int = 0) -> None:
        super().__init__(
            threads, max_queued, max_queued_per_owner, thread_name="coderapi-prepare", work="requests are being prepared"
        )
