"""Legacy completion prompts: plain, fill-in-the-middle, and with repository context."""

from __future__ import annotations

from coderapi.backends.coder.completion_flow import completion_prompt
from coderapi.backends.coder.families import FAMILIES

QWEN_FIM = FAMILIES["qwen2.5-coder"].fim
from coderapi.protocol.completions import CompletionRequest


def request(**body) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "p", **body})


def test_plain_prompt_is_sent_as_is():
    assert completion_prompt(request(), "def f():\n", QWEN_FIM) == "def f():\n"


def test_suffix_makes_a_fim_prompt():
    assert completion_prompt(request(suffix="\nprint(f())\n"), "def f():\n", QWEN_FIM) == (
        "<|fim_prefix|>def f():\n<|fim_suffix|>\nprint(f())\n<|fim_middle|>"
    )


def test_repo_context_comes_first_in_qwen_repo_format():
    context = {"name": "shop", "path": "shop/cart.py",
               "files": [{"path": "shop/prices.py", "content": "VAT = 0.2"}, {"path": "README.md", "content": "# Shop"}]}
    assert completion_prompt(request(suffix="\n", repo_context=context), "def total():\n", QWEN_FIM) == (
        "<|repo_name|>shop\n<|file_sep|>shop/prices.py\nVAT = 0.2\n<|file_sep|>README.md\n# Shop\n"
        "<|file_sep|>shop/cart.py\n<|fim_prefix|>def total():\n<|fim_suffix|>\n<|fim_middle|>"
    )


def test_repo_context_without_suffix_continues_the_current_file():
    context = {"name": "r", "files": [{"path": "a.py", "content": "A = 1"}]}
    assert completion_prompt(request(repo_context=context), "import a\n", QWEN_FIM) == (
        "<|repo_name|>r\n<|file_sep|>a.py\nA = 1\n<|file_sep|>import a\n"
    )
