"""Legacy completions, fill-in-the-middle and the tokenizer routes on the real 0.5B."""

from __future__ import annotations

import ast

import openai
import pytest
import requests

from tests.api.conftest import ALIAS_ID

pytestmark = pytest.mark.model


def sdk(platform):
    """The SDK with room for a slow, shared CPU (the api tier's client gives up after 30 s)."""
    return platform.client().with_options(timeout=300)

PREFIX = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
SUFFIX = "\n\n\nprint(fibonacci(10))\n"
SPECIALS = ("<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|file_sep|>",
            "<|repo_name|>", "<|im_end|>", "<|im_start|>")


def complete(platform, prompt="def add(a, b):\n", **extra):
    extra.setdefault("max_tokens", 12)
    extra.setdefault("temperature", 0)
    return sdk(platform).completions.create(model=ALIAS_ID, prompt=prompt, **extra)


def test_fim_fills_the_middle_and_the_file_parses(real_platform):
    # 96: the 0.5B sometimes adds an example-usage line before its end token
    done = complete(real_platform, PREFIX, suffix=SUFFIX, max_tokens=96)
    middle = done.choices[0].text
    assert done.object == "text_completion" and done.choices[0].finish_reason == "stop", middle
    assert not any(s in middle for s in SPECIALS)
    assert "return" in middle and middle.strip()
    ast.parse(PREFIX + middle + SUFFIX)  # the filled file is valid Python
    assert done.usage.prompt_tokens > 20 and done.usage.completion_tokens > 0


def test_fim_streamed_matches_and_uses_repo_context(real_platform):
    whole = complete(real_platform, PREFIX, suffix=SUFFIX, max_tokens=48).choices[0].text
    chunks = list(complete(real_platform, PREFIX, suffix=SUFFIX, max_tokens=48, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    context = {"name": "shop", "path": "shop/cart.py", "files": [
        {"path": "shop/prices.py", "content": "VAT_RATE = 0.2\n\ndef with_vat(amount):\n    return amount * (1 + VAT_RATE)\n"}]}
    done = complete(real_platform, "from shop.prices import with_vat\n\ndef total(items):\n    return ",
                    suffix="\n", max_tokens=24, extra_body={"repo_context": context})
    text = done.choices[0].text
    assert "with_vat" in text and not any(s in text for s in SPECIALS), text


def test_prompt_list_n_and_indexes(real_platform):
    done = complete(real_platform, ["def add(a, b):\n", "def sub(a, b):\n"], n=2, max_tokens=6)
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    assert done.choices[0].text == done.choices[1].text and done.choices[0].text != done.choices[2].text


def test_stop_echo_logprobs_and_stream(real_platform):
    prompt = "# numbers from 1 to 9\nnumbers = [1, 2, 3,"
    baseline = complete(real_platform, prompt, max_tokens=16).choices[0].text
    assert " 6," in baseline, baseline
    stopped = complete(real_platform, prompt, max_tokens=16, stop=[" 6,"])
    assert stopped.choices[0].text == baseline[: baseline.index(" 6,")] and stopped.choices[0].finish_reason == "stop"
    echoed = complete(real_platform, prompt, max_tokens=4, echo=True, logprobs=2)
    choice = echoed.choices[0]
    assert choice.text == prompt + baseline[: len(choice.text) - len(prompt)]
    assert "".join(choice.logprobs.tokens) == choice.text[len(prompt):]
    assert choice.logprobs.text_offset[0] == len(prompt) and all(lp <= 0 for lp in choice.logprobs.token_logprobs)
    assert all(len(top) == 2 for top in choice.logprobs.top_logprobs)
    chunks = list(complete(real_platform, prompt, max_tokens=16, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == baseline


def test_seed_reproduces_a_sample(real_platform):
    def sample(seed):
        return complete(real_platform, "Once upon a time", temperature=1.2, max_tokens=12, seed=seed).choices[0].text

    assert sample(11) == sample(11)


def test_fim_refuses_echo_and_several_prompts(real_platform):
    with pytest.raises(openai.BadRequestError) as caught:
        complete(real_platform, PREFIX, suffix=SUFFIX, echo=True)
    assert caught.value.body["param"] == "echo"
    with pytest.raises(openai.BadRequestError) as caught:
        complete(real_platform, [PREFIX, PREFIX], suffix=SUFFIX)
    assert caught.value.body["param"] == "prompt"


def _post(platform, path: str, body: dict) -> requests.Response:
    return requests.post(platform.base + path, json=body, headers={"Authorization": f"Bearer {platform.key}"})


def test_tokenize_and_detokenize_round_trip(real_platform):
    text = "def héllo():\n    return '✓'<|im_end|>"
    tokenized = _post(real_platform, "/tokenize", {"prompt": text}).json()
    assert tokenized["count"] == len(tokenized["tokens"]) and tokenized["max_model_len"] == 4096
    assert tokenized["tokens"][-1] == 151645  # special-token markup is the special token
    assert _post(real_platform, "/detokenize", {"tokens": tokenized["tokens"]}).json()["prompt"] == text
    bad = _post(real_platform, "/detokenize", {"tokens": [10**7]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    chat = _post(real_platform, "/tokenize", {"messages": [{"role": "user", "content": "hi"}]}).json()
    usage = sdk(real_platform).chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=1).usage
    assert chat["count"] == usage.prompt_tokens
