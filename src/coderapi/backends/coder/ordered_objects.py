"""A schema converter whose objects keep the schema's property order (for tool-call arguments).

llama.cpp's converter writes the required properties first and the optional ones after them.
A model finishing a call it started writes the arguments in the tool's declared order; held to
required-first, it cannot write an optional argument declared between two required ones, so it
drops it (measured on the 0.5B: `duration_minutes` between `start` and `attendees` was lost).
Here each property may appear in declared order, optional ones skipped:

    rest(i, wrote) ::= sep(wrote) kv(i) rest(i+1, true)          (property i required)
                     | ... | rest(i+1, wrote)                     (property i optional)

`wrote` says whether a member came before (then a "," separates). Objects that allow additional
properties keep the base class's rule. A run of leading optional properties is a chain of
leftmost references; grammar_limits.check_gbnf bounds it like any other.

Imported only where llama_cpp is installed.
"""

from __future__ import annotations

import json
from typing import Any

from coderapi.backends.coder.schema_converter import BoundedSchemaConverter


class OrderedObjectConverter(BoundedSchemaConverter):
    def _build_object_rule(self, properties: list[tuple[str, Any]], required: set[str], name: str,
                           additional_properties: Any):
        if not properties or additional_properties is True or isinstance(additional_properties, dict):
            return super()._build_object_rule(properties, required, name, additional_properties)
        prefix = f"{name}{'-' if name else ''}"
        kvs = []
        for prop_name, prop_schema in properties:
            value = self.visit(prop_schema, f"{prefix}{prop_name}")
            kvs.append(self._add_rule(
                f"{prefix}{prop_name}-kv", f'{self._format_literal(json.dumps(prop_name))} space ":" space {value}'))
        after = {False: "", True: ""}  # rest(n, wrote): nothing left
        for index in range(len(properties) - 1, -1, -1):
            optional = properties[index][0] not in required
            current = {}
            for wrote in (False, True):
                member = " ".join(p for p in ('"," space' if wrote else "", kvs[index], after[True]) if p)
                if optional:
                    body = f"( {member} )?" if not after[wrote] else f"( {member} ) | {after[wrote]}"
                else:
                    body = member
                current[wrote] = self._add_rule(f"{prefix}at{index}{'-more' if wrote else ''}", body)
            after = current
        return f'"{{" space {after[False]} "}}" space'
