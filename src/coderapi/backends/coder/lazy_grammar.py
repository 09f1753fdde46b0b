"""The grammar of one tool call once the model has started it (tool_choice "auto", tools offered).

Built while the request is prepared (schema conversion and llama.cpp's sandboxed check are CPU
work, off the event loop): the `call` rule allows only the offered function names, each with its
own arguments schema, in compact JSON (at most one space between tokens, no newlines or
indentation), so calls are short. When a trigger is seen (call_triggers.py), `for_trigger` adds the
root: the text the model had started (its last partial token and the wrapper's opening, exactly as
written), the call (or a list of calls when the model opened a list), and the wrapper's closing.

A tool set whose grammar cannot be built (a schema the converter cannot express, a grammar over
the limits, llama.cpp refusing it) gets no lazy grammar: the answer is generated freely, as it was
before lazy grammars, rather than refused.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from coderapi.backends.coder.call_triggers import Trigger
from coderapi.backends.coder.grammar_limits import check_gbnf
from coderapi.backends.coder.grammars import GrammarVerifier, call_schema, schema_to_gbnf
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import Tool

log = logging.getLogger(__name__)

_ROOT = re.compile(r"^root ::=", re.MULTILINE)
_SPACE = re.compile(r"^space ::= .*$", re.MULTILINE)
COMPACT_SPACE = 'space ::= " "?'
_CLOSING = {"tag": '"\\n</tool_call>"', "fence": '"\\n```"', "bare": ""}
# Every wrapper the model may open, for checking the rules once with llama.cpp before any trigger.
_SAMPLE_ROOT = 'root ::= ( "<tool_call>\\n" calls "\\n</tool_call>" | "```json\\n" calls "\\n```" | calls )'


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@dataclass(frozen=True)
class LazyToolGrammar:
    rules: str  # GBNF defining `call` and what it uses; no root
    parallel: bool  # a list the model opens may hold several calls

    def calls_rule(self, list_form: bool) -> str:
        if not list_form:
            return "call"
        return '"[" call ( "," " "? call )* "]"' if self.parallel else '"[" call "]"'

    def for_trigger(self, trigger: Trigger, residual: str) -> str:
        """The whole grammar of the constrained phase: `residual` (text of the model's last token that
        came before the call's markup) and the wrapper's opening as the model wrote it, then the call."""
        if trigger.wrapper == "tag":
            opening = '"<tool_call>\\n"'  # the template's own layout: the tag, then the call on its own line
        else:
            opening = gbnf_literal(trigger.header) if trigger.header else ""
        residual_rule = gbnf_literal(residual) if residual else ""
        parts = [residual_rule, opening, self.calls_rule(trigger.list_form), _CLOSING[trigger.wrapper]]
        return f"{self.rules}\nroot ::= {' '.join(p for p in parts if p)}\n"


def lazy_tool_grammar(
    tools: list[Tool], parallel: bool, verify: GrammarVerifier | None = None
) -> LazyToolGrammar | None:
    """The call grammar of `tools` (already checked by grammars.check_tools), or None when none can
    be built (a refusal: then the answer is generated freely, as before)."""
    try:
        schema = call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [call_schema(t) for t in tools]}
        converted = schema_to_gbnf(schema, "tools", ordered=True)  # arguments in the tool's declared order
        rules = _SPACE.sub(COMPACT_SPACE, _ROOT.sub("call ::=", converted, count=1))
        grammar = LazyToolGrammar(rules, parallel)
        sample = f"{rules}\ncalls ::= call | {grammar.calls_rule(True)}\n{_SAMPLE_ROOT}\n"
        check_gbnf(sample, "tools")
        reason = verify(sample) if verify is not None else None
        if reason is not None:
            raise InvalidRequest(f"llama.cpp refused the tool-call grammar: {reason}", param="tools")
    except InvalidRequest as exc:
        log.info("no lazy tool-call grammar for this request: %s", exc.message)
        return None
    return grammar
