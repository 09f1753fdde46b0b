"""Caps on the size of one request, checked while the body is parsed (400 invalid_request_error
naming the parameter), so no request can ask the server for unbounded work.

OpenAI's published limits where it has them: 128 tools, function names `^[a-zA-Z0-9_-]{1,64}$`,
4 stop sequences, 300 logit_bias entries, n <= 128, best_of <= 20, 2048 prompt items. Where OpenAI
publishes none, the cap is far above any honest request on a code model (whose context is at
most a few ten thousand tokens) and small enough that the work it allows stays short.

These are protocol constants, not settings: a client can rely on them wherever coderapi runs.
The body size (`max_request_body_bytes`) is the configurable bound on everything else.
"""

from __future__ import annotations

MAX_TOOLS = 128  # OpenAI: "tools: maximum 128"
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's function name rule
MAX_MESSAGES = 2048  # OpenAI publishes none for chat; 2048 is its cap on input arrays
MAX_STOP_SEQUENCES = 4  # OpenAI: "up to 4 sequences"
MAX_STOP_CHARS = 512  # per stop string; the stop matcher holds back this much text per choice
MAX_LOGIT_BIAS = 300  # OpenAI: at most 300 logit_bias entries
MAX_N = 128  # OpenAI: n <= 128 (chat and legacy completions)
MAX_BEST_OF = 20  # OpenAI: best_of <= 20
MAX_PROMPT_ITEMS = 2048  # OpenAI: a prompt array holds at most 2048 items
MAX_COMPLETION_CHOICES = 128  # /v1/completions: prompts x max(n, best_of) <= 128, as n alone
MAX_REPO_FILES = 1024  # repo_context.files (extension)
MAX_DETOKENIZE_TOKENS = 262_144  # /detokenize: more ids than any served context holds
