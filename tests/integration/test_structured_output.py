"""response_format on the real 0.5B: grammar-enforced JSON that parses and validates."""

from __future__ import annotations

import json

import openai
import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID

pytestmark = pytest.mark.model


def sdk(platform):
    """The SDK with room for a slow, shared CPU (the api tier's client gives up after 30 s)."""
    return platform.client().with_options(timeout=300)

_STR, _INT, _NUM, _BOOL = {"type": "string", "maxLength": 40}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}


def _obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            **extra}


SCHEMAS = [
    ("person", "Invent a person.", _obj({"name": _STR, "age": _INT, "email": _STR}, ["name", "age"])),
    ("nested_address", "Invent a customer with an address.",
     _obj({"name": _STR, "address": _obj({"street": _STR, "city": _STR, "zip": _STR})})),
    ("tags", "Give tags for a blog post about Rust.",
     _obj({"tags": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 4}})),
    ("sentiment_enum", "Classify: 'I love this library!'",
     _obj({"sentiment": {"enum": ["positive", "negative", "neutral"]}, "confidence": _NUM})),
    ("large_enum", "Which Python standard-library module parses JSON?",  # a prefix tree of 1,000 values
     _obj({"module": {"enum": ["json"] + [f"mod_{i:03d}_{c}" for i in range(333) for c in "xyz"]}})),
    ("booleans", "Is 17 a prime number? Is it even?", _obj({"number": _INT, "is_prime": _BOOL, "is_even": _BOOL})),
    ("todo_list", "Plan three tasks for fixing a bug.",
     _obj({"tasks": {"type": "array", "maxItems": 3, "items": _obj({"title": _STR, "done": _BOOL})}})),
    ("all_optional", "Say something about Python.", _obj({"summary": _STR, "year": _INT, "typed": _BOOL}, [])),
    ("nullable", "What is the middle name of Ada Lovelace?", _obj({"middle_name": {"type": ["string", "null"]}})),
    ("shape_union", "Describe a circle of radius 2.",
     _obj({"shape": {"anyOf": [_obj({"kind": {"const": "circle"}, "radius": _NUM}),
                               _obj({"kind": {"const": "square"}, "side": _NUM})]}})),
    ("refs", "Give a line segment from (0,0) to (3,4).",
     {"$defs": {"point": _obj({"x": _NUM, "y": _NUM})},
      **_obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}})}),
    ("pattern", "Make up a product code.", _obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}})),
    ("function_signature", "Describe the signature of a Python function that adds two integers.",
     _obj({"function_name": _STR, "parameters": {"type": "array", "maxItems": 4, "items": _obj({"name": _STR, "type": _STR})},
           "returns": _STR}, additionalProperties=False)),
]


def _ask(client, prompt: str, response_format: dict, **extra):
    return client.chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": prompt}],
        response_format=response_format, temperature=0, max_tokens=160, **extra,
    )


@pytest.mark.parametrize(("name", "prompt", "schema"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_json_schema_output_parses_and_validates(real_platform, name, prompt, schema):
    response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    done = _ask(sdk(real_platform), prompt, response_format)
    choice = done.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    value = json.loads(choice.message.content)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    assert errors == [], (value, errors)


def test_json_schema_streamed_joins_to_valid_json(real_platform):
    name, prompt, schema = SCHEMAS[1]
    response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    chunks = list(_ask(sdk(real_platform), prompt, response_format, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    Draft202012Validator(schema).validate(json.loads(text))


def test_json_object_gives_an_object(real_platform):
    done = _ask(sdk(real_platform), "List two colours with their hex codes.", {"type": "json_object"})
    assert done.choices[0].finish_reason == "stop"  # the object was closed, not cut off
    assert isinstance(json.loads(done.choices[0].message.content), dict)
    free = _ask(sdk(real_platform), "List two colours with their hex codes.", {"type": "text"})
    assert free.choices[0].message.content != done.choices[0].message.content  # the grammar changed the answer


def test_text_format_is_unconstrained(real_platform):
    def ask(**extra):
        return sdk(real_platform).chat.completions.create(
            model=ALIAS_ID, messages=[{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=12, **extra
        ).choices[0].message.content

    text = ask(response_format={"type": "text"})
    assert text.strip() and text == ask()  # the same greedy answer as with no response_format at all
    with pytest.raises(ValueError):
        json.loads(text)  # prose, not JSON


@pytest.mark.parametrize(
    "schema",
    [{"type": "objekt"}, {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, {"required": "a"}],
)
def test_invalid_schema_is_400_on_response_format(real_platform, schema):
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(sdk(real_platform), "x", {"type": "json_schema", "json_schema": {"name": "bad", "schema": schema}})
    assert caught.value.body["param"] == "response_format"
