"""One sampled row of a decode step as the `TokenEvent` its request's stream receives.

Called by the worker thread only, right after llama_decode: it reads the step's logits through
the context, and advances the sequence's own state (tokens generated, text decoded so far,
draft cursors), which only the worker touches.
"""

from __future__ import annotations

from coderapi.engines.base import TokenEvent

from .drafting import Drafter
from .model import LlamaContext, LlamaModel
from .sampling import compute_logprobs
from .sequences import Sequence


def count_drafts(drafter: Drafter, event: TokenEvent) -> None:
    """Stamp the draft totals so far on `event` (a step's last event carries the step's totals)."""
    event.accepted_prediction_tokens = drafter.prediction_stats.accepted
    event.rejected_prediction_tokens = drafter.prediction_stats.rejected
    event.accepted_ngram_tokens = drafter.context_stats.accepted
    event.rejected_ngram_tokens = drafter.context_stats.rejected


def sample_row(
    model: LlamaModel, ctx: LlamaContext, seq: Sequence, index: int, n_ctx_per_seq: int
) -> tuple[int, TokenEvent]:
    """Sample one token from batch row `index`: the token and its event (finish_reason set if it ends)."""
    req = seq.req
    params = req.params
    token = seq.sampler.sample(ctx.ptr, index)
    seq.n_generated += 1
    if seq.drafter is not None:
        seq.drafter.observe(token)
    logprob = top = None
    if params.logprobs is not None:
        lp = compute_logprobs(ctx.logits_row(index), model.n_vocab, token, params.logprobs, model)
        logprob, top = lp.logprob, lp.top
    finish = None
    if token in params.stop_token_ids or (not params.ignore_eos and model.is_eog(token)):
        finish = "stop"  # the end token counts as a completion token but is not emitted as text
        text = seq.stream.flush()
    else:
        text = seq.stream.push(model.piece(token))
        total = len(req.prompt) + seq.n_generated
        if seq.n_generated >= params.max_tokens or total >= n_ctx_per_seq:
            finish = "length"
            text += seq.stream.flush()
    queued = seq.queue_seconds if seq.n_generated == 1 else None
    event = TokenEvent(token, text, logprob, top, finish, seq.cached, queued)
    if seq.drafter is not None:
        count_drafts(seq.drafter, event)
    return token, event
