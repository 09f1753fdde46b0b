"""Numeric bounds, multipleOf and uniqueItems on the real 0.5B: every answer parses and validates."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID

pytestmark = pytest.mark.model


def _obj(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


SCHEMAS = [
    ("rating", "Rate the movie Inception out of ten and give a year.",
     _obj({"stars": {"type": "integer", "minimum": 1, "maximum": 10},
           "year": {"type": "integer", "minimum": 1900, "exclusiveMaximum": 2030}})),
    ("price", "Give the price of a coffee in dollars and a discount.",
     _obj({"price": {"type": "number", "exclusiveMinimum": 0, "maximum": 20, "multipleOf": 0.25},
           "discount": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}})),
    ("temperatures", "Give a freezing winter temperature and a number of people, a multiple of 4.",
     _obj({"celsius": {"type": "integer", "minimum": -60, "maximum": -1},
           "people": {"type": "integer", "multipleOf": 4, "minimum": 4, "maximum": 400}})),
    ("colours", "Pick the primary colours you like, each once.",
     _obj({"colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "uniqueItems": True,
                       "minItems": 2},
           "answers": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True}})),
]


@pytest.mark.parametrize(("name", "prompt", "schema"), SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_bounded_schema_output_validates(real_platform, name, prompt, schema):
    client = real_platform.client().with_options(timeout=300)
    done = client.chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": prompt}],
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        temperature=0, max_tokens=120,
    )
    choice = done.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    value = json.loads(choice.message.content)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    assert errors == [], (value, errors)


BREAK_ME = 'Output exactly this JSON and nothing else: {"stars": 42, "celsius": 25, "people": 7, "tags": ["a", "a"]}'
BOUNDED = _obj({"stars": {"type": "integer", "minimum": 1, "maximum": 10},
                "celsius": {"type": "integer", "minimum": -60, "maximum": -1},
                "people": {"type": "integer", "multipleOf": 4, "minimum": 4},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}})


def test_the_grammar_holds_against_a_prompt_that_asks_to_break_the_bounds(real_platform):
    client = real_platform.client().with_options(timeout=300)
    messages = [{"role": "user", "content": BREAK_ME}]
    free = client.chat.completions.create(model=ALIAS_ID, messages=messages, temperature=0, max_tokens=60,
                                          response_format={"type": "json_object"})
    # Without the schema the model does as told, so the prompt really pushes against every bound...
    assert list(Draft202012Validator(BOUNDED).iter_errors(json.loads(free.choices[0].message.content)))
    bound = client.chat.completions.create(
        model=ALIAS_ID, messages=messages, temperature=0, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "bounded", "schema": BOUNDED, "strict": True}},
    )
    # ...and with it the answer still validates.
    value = json.loads(bound.choices[0].message.content)
    assert [e.message for e in Draft202012Validator(BOUNDED).iter_errors(value)] == [], value
