"""Server events -> the engine contract's TokenEvents: one event per generated token, in order.

Text is decoded here, from the token ids, with the family tokenizer and a UTF-8-safe stream, so
it is the same text the in-process engine would give (control tokens add no text). Where the
server reports several tokens in one event without all their ids (llama-server holds back a token
that ends inside a UTF-8 character; a server that ignores `return_tokens_as_token_ids`), the ids
are filled in by tokenizing the event's text locally, the text is the server's, and the count is
the server's: usage stays exact even where those few ids are a best guess.

The sequence's end is decided here as the in-process engine decides it, as soon as the token
arrives: an end-of-generation token (unless `ignore_eos`) or one of `stop_token_ids` ends it with
"stop", `max_tokens` or a full context with "length". The server's own end is taken when it comes
first; a server that ends with "stop" without sending the end token (coderapi leaves it out)
gets one end-of-sequence event, so the end token is counted as the in-process engine counts it.
"""

from __future__ import annotations

from coderapi.engines.base import SamplingParams, TokenEvent, TopLogprob
from coderapi.engines.llama_cpp.detok import Utf8Stream
from coderapi.engines.remote.dialects import ServerTokens, TokenLogprob
from coderapi.engines.remote.tokenizer import FamilyTokenizer


class TokenAssembler:
    def __init__(self, tokenizer: FamilyTokenizer, prompt_tokens: int, params: SamplingParams, context_length: int) -> None:
        self._tok = tokenizer
        self._params = params
        self._room = min(params.max_tokens, context_length - prompt_tokens)
        self._stream = Utf8Stream()
        self.count = 0  # tokens given out so far
        self.finished = False
        self.cached = 0
        self._last_id = tokenizer.eos_id  # stands in for ids a server reported only by count

    def events(self, tokens: ServerTokens) -> list[TokenEvent]:
        if tokens.cached is not None:
            self.cached = tokens.cached
        ids, logprobs, server_text = self._ids(tokens)
        events: list[TokenEvent] = []
        for position, token_id in enumerate(ids):
            last = position == len(ids) - 1
            text = (server_text if last else "") if server_text is not None else self._stream.push(self._tok.piece(token_id))
            events.append(self._event(token_id, text, logprobs[position], tokens.finish if last else None))
            if self.finished:
                return events
        if not ids and tokens.finish is not None and not self.finished:
            self.finished = True
            if tokens.finish == "stop":  # the end token the server did not send
                self.count += 1
                events.append(TokenEvent(self._tok.eos_id, self._stream.flush(), finish_reason="stop", cached_prompt_tokens=self.cached))
        return events

    def _ids(self, tokens: ServerTokens) -> tuple[list[int], list[TokenLogprob | None], str | None]:
        """The ids this event stands for, their logprobs, and the text to give out (None: decode the ids)."""
        ids = tokens.ids
        given = list(tokens.logprobs or ())
        if ids is None:
            ids = self._tok.tokenize(tokens.text) if tokens.text else []
            return ids, [None] * len(ids), tokens.text
        missing = tokens.predicted - self.count - len(ids) if tokens.predicted is not None else 0
        logprobs = given[: len(ids)] + [None] * (len(ids) - len(given))
        if missing <= 0:
            return ids, logprobs, None
        # Tokens the server reported only by count: their ids from the text, as well as it goes.
        guess = self._tok.tokenize(tokens.text)[: -len(ids) or None] if tokens.text else []
        guess = (guess + [ids[0] if ids else self._last_id] * missing)[:missing]
        return guess + ids, [None] * missing + logprobs, self._stream.flush() + tokens.text

    def _event(self, token_id: int, text: str, logprob: TokenLogprob | None, server_finish: str | None) -> TokenEvent:
        self.count += 1
        self._last_id = token_id
        params = self._params
        finish = None
        if token_id in params.stop_token_ids or (not params.ignore_eos and self._tok.is_eog(token_id)):
            finish, text = "stop", self._stream.flush()  # the end token adds no text
        else:
            finish = "length" if self.count >= self._room else server_finish
            if finish is not None:
                text += self._stream.flush()
        self.finished = finish is not None
        value, top = (None, None)
        if logprob is not None and params.logprobs is not None:
            value = logprob.logprob
            top = [TopLogprob(t.token_id, self._tok.token_text(t.token_id), t.logprob) for t in logprob.top[: params.logprobs]]
        return TokenEvent(token_id, text, value, top, finish, self.cached)
