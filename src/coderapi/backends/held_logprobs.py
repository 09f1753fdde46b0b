"""How many logprob entries an answer may hold in memory before it is sent.

A non-streamed answer keeps every token's entry (the token and each of its `top_logprobs`
alternatives) until the whole answer is written, and a stream with tools keeps those of a possible
call until the call is read; a pass-through replica's whole answer is parsed in one go on the event
loop (backends/upstream). Each entry costs about 700 bytes held (measured: n=16, max_tokens
16,000, top_logprobs 20 on a fast engine took the gateway from 145 MB to 3.7 GB), so the worst
case, choices × max_tokens × (1 + top_logprobs), is refused up front past the model's
`max_answer_logprobs`: such an answer can still be streamed. A plain stream sends each entry with
its text and holds none.
"""

from __future__ import annotations

from coderapi.errors import InvalidRequest


def check_held_logprobs(
    *, choices: int, budget: int, top: int | None, limit: int, param: str, streamed: bool
) -> None:
    """`top`: alternatives per token (None: no logprobs asked); `budget`: tokens per choice."""
    if top is None:
        return
    worst = choices * budget * (1 + top)
    if worst <= limit:
        return
    remedy = (
        "a streamed answer with tools holds a possible call's logprobs until the call is read: lower"
        if streamed
        else "an answer that is not streamed is held whole until it is sent: stream it (stream: true), or lower"
    )
    raise InvalidRequest(
        f"This answer could hold {worst} logprob entries ({choices} choices × {budget} tokens × "
        f"{1 + top} entries a token), more than the {limit} this model allows; {remedy} "
        "max_tokens, n or the number of top logprobs.",
        param=param,
        code="logprobs_too_large",
    )
