"""Server events -> the engine contract's TokenEvents: one event per generated token, in order.

Text is decoded here, from the token ids, with the family tokenizer and a UTF-8-safe stream, so
it is the same text the in-process engine would give (control tokens add no text). A server that
sends text without ids (one that ignores `return_tokens_as_token_ids`) has its text tokenized and
decoded here the same way. Where llama-server reports tokens only by count (it holds back a token
that ends inside a UTF-8 character), their ids are filled in by tokenizing the event's text
locally, the text is the server's, and the count is the server's: usage stays exact even where
those few ids are a best guess.

Nothing from the server is trusted: an id outside the vocabulary (llama.cpp would abort the
process) or a count past what the request may produce is a ProtocolError, raised before any of the
event's tokens is counted; a cached-prompt count outside [0, prompt length] is ignored.

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
from coderapi.engines.remote.errors import ProtocolError
from coderapi.engines.remote.tokenizer import FamilyTokenizer


class TokenAssembler:
    def __init__(self, tokenizer: FamilyTokenizer, prompt_tokens: int, params: SamplingParams, context_length: int) -> None:
        self._tok = tokenizer
        self._params = params
        self._prompt_tokens = prompt_tokens
        self._room = min(params.max_tokens, context_length - prompt_tokens)
        self._vocab_size = tokenizer.vocab_size
        self._stream = Utf8Stream()
        self.count = 0  # tokens given out so far
        self.finished = False
        self.cached = 0
        self._last_id = tokenizer.eos_id  # stands in for ids a server reported only by count

    def events(self, tokens: ServerTokens) -> list[TokenEvent]:
        """The TokenEvents of one server event; ProtocolError (before any of them is counted) for
        an id outside the vocabulary or more tokens than the request may produce."""
        self._take_cached(tokens.cached)
        ids, logprobs, server_text = self._ids(tokens)
        events: list[TokenEvent] = []
        for position, token_id in enumerate(ids):
            last = position == len(ids) - 1
            text = None if server_text is None else (server_text if last else "")
            events.append(self._event(token_id, text, logprobs[position], tokens.finish if last else None))
            if self.finished:
                return events
        if not ids and tokens.finish is not None and not self.finished:
            self.finished = True
            if tokens.finish == "stop":  # the end token the server did not send
                self.count += 1
                events.append(TokenEvent(self._tok.eos_id, self._stream.flush(), finish_reason="stop", cached_prompt_tokens=self.cached))
        return events

    def _take_cached(self, cached: int | None) -> None:
        # a count of prompt tokens: one past the prompt would reach the usage row and the bill
        if cached is not None and 0 <= cached <= self._prompt_tokens:
            self.cached = cached

    def _ids(self, tokens: ServerTokens) -> tuple[list[int], list[TokenLogprob | None], str | None]:
        """The ids this event stands for, their logprobs, and the server's text for the last of
        them (None: decode each id locally)."""
        if tokens.ids is None:
            # Text without ids: tokenized and decoded here, so an end token in it ends the
            # sequence as it would in-process, and control tokens add no text.
            ids = self._tok.tokenize(tokens.text) if tokens.text else []
            return ids, [None] * len(ids), None
        ids = tokens.ids[: max(self._room - self.count, 0)]  # the rest would come after the sequence's end
        self._check_ids(ids)
        logprobs = self._logprobs(tokens.logprobs, len(ids))
        missing = self._missing(tokens.predicted, len(ids))
        if missing == 0:
            return ids, logprobs, None
        guess = self._guess(tokens.text, ids, missing)
        return guess + ids, [None] * missing + logprobs, self._stream.flush() + tokens.text

    def _guess(self, text: str, ids: list[int], missing: int) -> list[int]:
        """Ids for the tokens the server reported only by count: from the text, as well as it goes
        (its local tokens but the server's own at its end; an end token has no text)."""
        local = self._tok.tokenize(text) if text else []
        if ids and local[-len(ids):] == ids:
            local = local[: -len(ids)]
        return (local + [ids[0] if ids else self._last_id] * missing)[:missing]

    def _missing(self, predicted: int | None, sent: int) -> int:
        """How many tokens the server counted but sent no id for. Its count is bounded by what it
        was asked for: a larger one is refused before anything is built from it."""
        if predicted is None:
            return 0
        if predicted > self._room:
            raise ProtocolError(f"tokens_predicted {predicted} where at most {self._room} tokens may be generated")
        return max(predicted - self.count - sent, 0)

    def _logprobs(self, given: list[TokenLogprob] | None, n: int) -> list[TokenLogprob | None]:
        given = list(given or ())[:n]
        for entry in given:
            self._check_ids([t.token_id for t in entry.top])
        return given + [None] * (n - len(given))

    def _check_ids(self, ids: list[int]) -> None:
        # An id outside the vocabulary would make llama.cpp abort the whole process (std::out_of_range).
        for token_id in ids:
            if not 0 <= token_id < self._vocab_size:
                raise ProtocolError(f"token id {token_id} outside the vocabulary of {self._vocab_size}")

    def _event(
        self, token_id: int, given_text: str | None, logprob: TokenLogprob | None, server_finish: str | None
    ) -> TokenEvent:
        """`given_text`: the server's text for this token (None: decode it here)."""
        self.count += 1
        self._last_id = token_id
        params = self._params
        ends = token_id in params.stop_token_ids or (not params.ignore_eos and self._tok.is_eog(token_id))
        finish = "stop" if ends else ("length" if self.count >= self._room else server_finish)
        if given_text is not None:
            text = given_text  # kept even on an end token: it is the text of the tokens before it
        else:
            text = "" if ends else self._stream.push(self._tok.piece(token_id))  # the end token adds no text
        if finish is not None:
            text += self._stream.flush()
        self.finished = finish is not None
        value, top = (None, None)
        if logprob is not None and params.logprobs is not None:
            value = logprob.logprob
            top = [TopLogprob(t.token_id, self._tok.token_text(t.token_id), t.logprob) for t in logprob.top[: params.logprobs]]
        return TokenEvent(token_id, text, value, top, finish, self.cached)
