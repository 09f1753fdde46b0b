"""Schemathesis fuzzes every operation of /openapi.json against the app on the fake engine:
no answer is a 5xx, and every answer conforms to the document (status code, content type,
headers and body schema, the error bodies included).

Bounded and deterministic: a few derandomized examples per operation and generation mode.
(Schemathesis' own pytest loader, `from_fixture`, does not run under pytest 9.2, so each
operation's hypothesis strategy is driven here directly.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core import NOT_SET
from schemathesis.generation.modes import GenerationMode

from tests.api.conftest import SERVED_ID, Account, Platform, launch, make_account

# Every operation of the document (test_every_documented_operation_is_fuzzed keeps this complete).
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/key"),
    ("PATCH", "/v1/keys/{prefix}"),
    ("PUT", "/v1/keys/{prefix}"),
    ("DELETE", "/v1/keys/{prefix}"),
    ("GET", "/v2/usage"),
    ("GET", "/v2/usage/detail"),
    ("GET", "/v2/logs"),
    ("GET", "/v1/billing/balance"),
]
# Operations whose body is required: schemathesis silently sends none when the body's schema has
# a ref it cannot resolve (it did, for 5 operations, before the $defs moved to components).
REQUIRED_BODIES = [op for op in OPERATIONS if op[0] in ("PATCH", "PUT") or op[1] in (
    "/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize",
)]
# Operations with inputs that negative generation can break (a body, or typed parameters).
NEGATED = [op for op in OPERATIONS if op[0] in ("POST", "PATCH", "PUT") or op[1] in ("/v2/logs", "/v2/usage/detail")]
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# The platform API takes management keys; every other operation an inference key (or none).
MANAGEMENT_PREFIXES = ("/v1/keys", "/v1/billing", "/v2/")
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 8}
EXAMPLES_PER_OTHER_CALLER = 2  # the same operation with the wrong kind of key, an unknown key, no key


@dataclass
class Target:
    """What a generated case may be aimed at, so that it gets past 404 to the route's real work."""

    model: str
    key_prefix: str  # a spare key of the management key's account, for /v1/keys/{prefix}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[Platform]:
    with launch(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(fuzzed: Platform):
    document = httpx.get(fuzzed.base + "/openapi.json", timeout=30).raise_for_status().json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=fuzzed.base)
    schema.config.max_stream_events = 2000  # read whole streams (schemathesis stops at 20 events)
    return schema


@pytest.fixture(scope="module")
def target(fuzzed: Platform) -> Target:
    async def spare_key():
        user = await fuzzed.services.keys.authenticate_key(fuzzed.management_key)
        info, _ = await fuzzed.services.keys.create_key(user.user_id, name="fuzzed")
        return info.prefix

    return Target(model=SERVED_ID, key_prefix=fuzzed.run(spare_key()))


def _aimed(case, aim: bool, target: Target):
    """Half of the cases name the served model and a real key instead of random strings."""
    if not aim:
        return case
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = target.model
    path_parameters = case.path_parameters or {}
    if "model_id" in path_parameters:
        path_parameters["model_id"] = target.model
    if "prefix" in path_parameters:
        path_parameters["prefix"] = target.key_prefix
    return case


def test_every_documented_operation_is_fuzzed(api_schema):
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


def _headers(fuzzed: Platform, path: str, caller: str) -> dict[str, str]:
    """`key`: the key the operation takes (a management key for the platform API, else an
    inference key); `other kind`: the other one; `invalid`: an unknown key; `none`: no header."""
    management = path.startswith(MANAGEMENT_PREFIXES)
    keys = {
        "key": fuzzed.management_key if management else fuzzed.key,
        "other kind": fuzzed.key if management else fuzzed.management_key,
        "invalid": "sk-not-a-key-of-this-server",
    }
    return {"Authorization": f"Bearer {keys[caller]}"} if caller in keys else {}


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
CASES = (
    [(m, p, POSITIVE, "key") for m, p in OPERATIONS]
    + [(m, p, NEGATIVE, "key") for m, p in NEGATED]
    + [(m, p, POSITIVE, caller) for m, p in OPERATIONS for caller in ("other kind", "invalid", "none")]
)


@pytest.mark.parametrize(
    "method, path, mode, caller", CASES, ids=[f"{m} {p} {mode.value} {caller}" for m, p, mode, caller in CASES]
)
def test_every_operation_answers_as_documented(api_schema, fuzzed, target, method, path, mode, caller):
    headers = _headers(fuzzed, path, caller)
    generated = api_schema[path][method].as_strategy(generation_mode=mode)
    strategy = st.tuples(generated, st.booleans()).map(lambda pair: _aimed(*pair, target))
    examples = EXAMPLES[mode] if caller == "key" else EXAMPLES_PER_OTHER_CALLER

    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def answers_as_documented(case):
        if mode is POSITIVE and (method, path) in REQUIRED_BODIES:
            assert case.body is not NOT_SET, f"no body generated for {method} {path}"
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    answers_as_documented()


STREAMED = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "fail after 3"}]}),  # an error event
    ("/v1/completions", {"prompt": "def add(a, b):", "n": 2}),
]


@pytest.mark.parametrize("path, body", STREAMED)
def test_streamed_answers_are_documented_events(api_schema, fuzzed: Platform, path, body):
    """Every event of a stream, the error event of a failed one and [DONE], fits the documented event."""
    case = api_schema[path]["POST"].Case(body={"model": SERVED_ID, "stream": True, **body}, media_type="application/json")
    response = case.call_and_validate(headers=_headers(fuzzed, path, "key"), checks=CHECKS, timeout=30)
    assert response.headers["content-type"][0].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")
    assert ('"error"' in response.text) == ("fail after" in str(body))


EXPLICIT = [
    ("GET", "/v2/usage", {"query": {"period": "7d"}}),
    ("GET", "/v2/usage/detail", {"query": {"period": "7d", "group_by": "day"}}),
    ("GET", "/v2/usage/detail", {"query": {"period": "7d", "group_by": "day,model"}}),
    ("GET", "/v2/logs", {"query": {"limit": 5}}),
    ("GET", "/v1/keys", {}),
    ("GET", "/v1/key", {}),
    ("GET", "/v1/billing/balance", {}),
    ("POST", "/v1/keys", {"body": {"name": "limited", "limit": {"threshold": 5, "retention": "day"}}}),
    ("POST", "/v1/keys", {"body": {}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models/{model_id}", {"path_parameters": {"model_id": SERVED_ID}}),
]


@pytest.fixture(scope="module")
def account(fuzzed: Platform) -> Account:
    """An account of its own (the fuzzed one may hold the most keys a user may), with a logged call."""
    account = make_account(fuzzed)
    fuzzed.client(account.key).chat.completions.create(model=SERVED_ID, messages=[{"role": "user", "content": "hi"}])
    return account


@pytest.mark.parametrize("method, path, parts", EXPLICIT, ids=[f"{m} {p} {parts}" for m, p, parts in EXPLICIT])
def test_successful_answers_fit_their_documented_schemas(api_schema, account: Account, method, path, parts):
    """The answers the fuzzer rarely reaches (a valid group_by, a log with rows, a key with a limit)."""
    key = account.management_key if path.startswith(MANAGEMENT_PREFIXES) else account.key
    media_type = "application/json" if "body" in parts else None
    case = api_schema[path][method].Case(media_type=media_type, **parts)
    response = case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS, timeout=30)
    assert response.status_code == 200, response.text
