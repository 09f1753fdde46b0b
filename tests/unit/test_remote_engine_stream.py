"""The remote engine's wire handling without a server: request bodies per dialect, and server
events -> one TokenEvent per token (gaps filled, the end decided as the in-process engine does)."""

from __future__ import annotations

from coderapi.engines.base import SamplingParams
from coderapi.engines.remote.assembler import TokenAssembler
from coderapi.engines.remote.dialects import LlamaServerDialect, OpenAICompletionsDialect, ServerTokens

EOS = 300  # the stub's end-of-generation token
PAD = 301  # another end token (think <|fim_pad|>)
SPECIAL = 302  # a special token that is not an end one (think <|fim_prefix|>)


class ByteTokenizer:
    """Token i < 256 is byte i; the rest are control tokens with no text ("<eos>" in text is EOS)."""

    eos_id = EOS
    vocab_size = 303

    def piece(self, token_id: int) -> bytes:
        assert 0 <= token_id < self.vocab_size, "llama.cpp would abort the process here"
        return bytes([token_id]) if token_id < 256 else b""

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        *parts, last = text.split("<eos>")
        return [token for part in parts for token in [*part.encode(), EOS]] + list(last.encode())

    def token_text(self, token_id: int) -> str:
        return self.piece(token_id).decode("utf-8", "replace") or f"<{token_id}>"

    def is_eog(self, token_id: int) -> bool:
        return token_id in (EOS, PAD)


def assemble(messages: list[ServerTokens], **params) -> list:
    params.setdefault("max_tokens", 50)
    assembler = TokenAssembler(ByteTokenizer(), 10, SamplingParams(**params), 4096)
    events = []
    for message in messages:
        events += assembler.events(message)
        if assembler.finished:
            break
    return events


def test_one_event_per_token_and_utf8_safe_text():
    text = "é!".encode()
    events = assemble([ServerTokens([b], predicted=i + 1) for i, b in enumerate(text)] + [ServerTokens([EOS], predicted=4)])
    assert [e.token_id for e in events] == [*text, EOS]
    assert [e.text for e in events] == ["", "é", "!", ""]
    assert [e.finish_reason for e in events] == [None, None, None, "stop"]


def test_tokens_llama_server_sent_only_by_count_are_filled_in():
    # llama-server sends no event for a token ending inside a character: the next one's count jumps
    events = assemble([ServerTokens([ord("a")], "a", predicted=1), ServerTokens([0xAC], "€", predicted=4),
                       ServerTokens([EOS], "", predicted=5)])
    assert len(events) == 5 and "".join(e.text for e in events) == "a€"
    assert [e.token_id for e in events] == [ord("a"), *"€".encode(), EOS]  # the guesses are the bytes here
    assert events[-1].finish_reason == "stop"


def test_a_last_token_never_sent_is_still_counted_with_the_length_finish():
    events = assemble([ServerTokens([ord("a")], "a", predicted=1), ServerTokens([], predicted=2, finish="length")])
    assert len(events) == 2 and events[-1].finish_reason == "length"


def test_max_tokens_and_stop_token_ids_end_the_sequence_at_once():
    messages = [ServerTokens([ord("a") + i], predicted=i + 1) for i in range(10)]
    assert [e.finish_reason for e in assemble(messages, max_tokens=3)] == [None, None, "length"]
    stopped = assemble([ServerTokens([ord("a")]), ServerTokens([SPECIAL]), ServerTokens([ord("b")])],
                       stop_token_ids=frozenset({SPECIAL}))
    assert [(e.token_id, e.finish_reason) for e in stopped] == [(ord("a"), None), (SPECIAL, "stop")]
    assert assemble([ServerTokens([PAD])])[0].finish_reason == "stop"
    assert assemble([ServerTokens([EOS]), ServerTokens([ord("c")])], ignore_eos=True, max_tokens=2)[-1].token_id == ord("c")


def test_a_server_that_ends_with_stop_but_sends_no_end_token_gets_one():
    events = assemble([ServerTokens([ord("a")], "a"), ServerTokens([], "", finish="stop")])
    assert [(e.token_id, e.finish_reason) for e in events] == [(ord("a"), None), (EOS, "stop")]


def test_without_ids_the_text_is_tokenized_locally():
    events = assemble([ServerTokens(None, "hi"), ServerTokens(None, "!", finish="length")])
    assert [e.token_id for e in events] == [ord("h"), ord("i"), ord("!")]
    assert "".join(e.text for e in events) == "hi!" and events[-1].finish_reason == "length"


def test_logprobs_keep_k_alternatives_with_local_text():
    data = {"tokens": [ord("a")], "content": "a", "tokens_predicted": 1, "completion_probabilities": [
        {"id": 97, "logprob": -0.1, "top_logprobs": [{"id": 97, "logprob": -0.1}, {"id": 98, "logprob": -2.0}]}]}
    [event] = assemble([LlamaServerDialect().parse(data)], logprobs=1)
    assert event.logprob == -0.1 and [(t.token_id, t.text) for t in event.top_logprobs] == [(97, "a")]


def test_llama_server_body_and_events():
    params = SamplingParams(max_tokens=7, temperature=0.0, top_k=0, logit_bias={5: -100.0}, grammar='root ::= "a"',
                            logprobs=0, seed=3)
    body = LlamaServerDialect().body([1, 2], params, None)
    assert body["prompt"] == [1, 2] and body["n_predict"] == 7 and body["return_tokens"] and body["stream"]
    assert body["logit_bias"] == [[5, -100.0]] and body["grammar"] == 'root ::= "a"' and body["n_probs"] == 1
    assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["seed"] == 3 and body["cache_prompt"]
    final = LlamaServerDialect().parse({"stop": True, "stop_type": "limit", "tokens_predicted": 7, "timings": {"cache_n": 4}})
    assert final.finish == "length" and final.predicted == 7 and final.cached == 4
    assert LlamaServerDialect().parse({"stop": True, "stop_type": "eos"}).finish == "stop"


def test_openai_completions_body_and_token_id_names():
    params = SamplingParams(max_tokens=7, top_k=0, min_p=0.0, grammar='root ::= "a"', stop_token_ids=frozenset({9}))
    body = OpenAICompletionsDialect().body([1, 2], params, "served")
    assert body["model"] == "served" and body["prompt"] == [1, 2] and body["max_tokens"] == 7
    assert body["structured_outputs"] == {"grammar": 'root ::= "a"'} and body["return_tokens_as_token_ids"]
    assert body["logprobs"] == 0 and body["top_k"] == -1 and "min_p" not in body and body["stop_token_ids"] == [9]
    chunk = {"choices": [{"index": 0, "text": "ab", "finish_reason": None, "logprobs": {
        "tokens": ["token_id:97", "token_id:98"], "token_logprobs": [-0.5, -0.25],
        "top_logprobs": [{"token_id:97": -0.5}, {"token_id:98": -0.25, "token_id:99": -3.0}]}}]}
    parsed = OpenAICompletionsDialect().parse(chunk)
    assert parsed.ids == [97, 98] and [lp.logprob for lp in parsed.logprobs] == [-0.5, -0.25]
    assert [t.token_id for t in parsed.logprobs[1].top] == [98, 99]
    assert OpenAICompletionsDialect().parse({"choices": [], "usage": {"prompt_tokens": 3}}) is None
    plain = {"choices": [{"index": 0, "text": "x", "logprobs": {"tokens": ["x"]}, "finish_reason": None}]}
    assert OpenAICompletionsDialect().parse(plain).ids is None
