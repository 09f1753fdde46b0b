"""/v1/completions takes vLLM's two extension fields, so another coderapi can be a raw-completion
upstream (engines/remote): `structured_outputs.grammar` (a GBNF, through the same guard as every
grammar) and `return_tokens_as_token_ids` (logprob tokens named "token_id:N")."""

from __future__ import annotations

import json

import openai

from tests.api.conftest import ALIAS_ID

TEXT = "héllo"  # é is two bytes: two of the scripted engine's byte tokens, the first with no text


def _ids(names) -> list[int]:
    assert all(n.startswith("token_id:") for n in names), names
    return [int(n[len("token_id:"):]) for n in names]


def test_a_grammar_over_the_limits_is_a_400_naming_structured_outputs_grammar(platform):
    nested = "root ::= " + "(" * 300 + '"a"' + ")" * 300
    with openai.OpenAI(base_url=platform.base + "/v1", api_key=platform.key, max_retries=0) as client:
        try:
            client.completions.create(
                model=ALIAS_ID, prompt="x", max_tokens=4, extra_body={"structured_outputs": {"grammar": nested}}
            )
        except openai.BadRequestError as exc:
            assert exc.body["param"] == "structured_outputs.grammar"
            assert exc.body["type"] == "invalid_request_error"
        else:
            raise AssertionError("a grammar nested 300 deep was accepted")


def test_a_grammar_the_engine_cannot_parse_is_a_400_naming_structured_outputs_grammar(platform):
    """Within the static guard's limits but not GBNF: the engine's own check (verify_grammar, the
    llama.cpp sandbox on the real engines) refuses it before generation, naming the field."""
    with platform.http(platform.key) as http:
        answer = http.post("/v1/completions", json={
            "model": ALIAS_ID, "prompt": "x", "max_tokens": 4, "structured_outputs": {"grammar": 'root ::= "a" | ('},
        })
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "structured_outputs.grammar" and error["type"] == "invalid_request_error"


def test_structured_outputs_other_than_a_grammar_is_a_400(platform):
    with platform.http(platform.key) as http:
        answer = http.post("/v1/completions", json={
            "model": ALIAS_ID, "prompt": "x", "max_tokens": 4, "structured_outputs": {"json": {"type": "object"}},
        })
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "structured_outputs"


def test_a_fine_grammar_is_accepted(platform):
    with platform.http(platform.key) as http:
        answer = http.post("/v1/completions", json={
            "model": ALIAS_ID, "prompt": "repeat: ok", "max_tokens": 4, "structured_outputs": {"grammar": 'root ::= "ok"'},
        })
    assert answer.status_code == 200, answer.text


def test_token_ids_as_names_whole_answer(platform):
    def create(**extra):
        return platform.client().completions.create(
            model=ALIAS_ID, prompt="repeat: " + TEXT, max_tokens=16, logprobs=1, extra_body=extra
        )

    completion, plain = create(return_tokens_as_token_ids=True), create()
    logprobs = completion.choices[0].logprobs
    assert completion.choices[0].text == TEXT
    assert bytes(_ids(logprobs.tokens)) == TEXT.encode()  # the scripted engine's ids are the bytes
    assert all(_ids(top) for top in logprobs.top_logprobs)
    # offsets measure each token's text, not its "token_id:N" name
    assert logprobs.text_offset == plain.choices[0].logprobs.text_offset


def test_token_ids_as_names_streamed_keep_every_token(platform):
    """A token with no text of its own (the first byte of é) still sends its logprob entry."""
    with platform.http(platform.key) as http:
        with http.stream("POST", "/v1/completions", json={
            "model": ALIAS_ID, "prompt": "repeat: " + TEXT, "max_tokens": 16, "logprobs": 0, "stream": True,
            "return_tokens_as_token_ids": True,
        }) as response:
            chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    names = [t for c in chunks for ch in c["choices"] if ch.get("logprobs") for t in ch["logprobs"]["tokens"]]
    assert "".join(ch["text"] for c in chunks for ch in c["choices"]) == TEXT
    assert bytes(_ids(names)) == TEXT.encode()
