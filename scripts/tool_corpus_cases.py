"""The prompts behind tests/fixtures/tool_corpus.jsonl: tool sets and conversations, plain data.

Each case names the tools it offers (keys of TOOLS) and the conversation; the capture script
renders them with the GGUF's own chat template and records what the model writes.
"""

from __future__ import annotations


def _fn(name: str, description: str, properties: dict, required: list[str] | None = None) -> dict:
    params = {"type": "object", "properties": properties, "required": required or []}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


_S = {"type": "string"}

TOOLS = {
    "get_weather": _fn(
        "get_weather", "Get the current weather in a city.",
        {"location": {"type": "string", "description": "City name, e.g. Paris"},
         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["location"],
    ),
    "read_file": _fn("read_file", "Read a text file and return its content.", {"path": _S}, ["path"]),
    "write_file": _fn(
        "write_file", "Write text to a file, replacing it.", {"path": _S, "content": _S}, ["path", "content"]
    ),
    "list_directory": _fn("list_directory", "List the entries of a directory.", {"path": _S}, ["path"]),
    "git_status": _fn("git_status", "Show the working tree status of the repository.", {}),
    "git_commit": _fn(
        "git_commit", "Commit staged changes.",
        {"message": _S, "files": {"type": "array", "items": _S, "description": "Files to add first"}},
        ["message"],
    ),
    "git_log": _fn("git_log", "Show recent commits.", {"max_count": {"type": "integer"}}),
    "calculate": _fn(
        "calculate", "Evaluate an arithmetic expression exactly.", {"expression": _S}, ["expression"]
    ),
    "web_search": _fn(
        "web_search", "Search the web.", {"query": _S, "max_results": {"type": "integer"}}, ["query"]
    ),
    "search_code": _fn(
        "search_code", "Search the repository for a regular expression.",
        {"pattern": _S, "path": {"type": "string", "description": "Folder to search"}}, ["pattern"],
    ),
    "run_tests": _fn("run_tests", "Run the test suite (optionally one path).", {"path": _S}),
    "get_stock_price": _fn("get_stock_price", "Latest price of a stock.", {"symbol": _S}, ["symbol"]),
    "send_email": _fn(
        "send_email", "Send an email.", {"to": _S, "subject": _S, "body": _S}, ["to", "subject", "body"]
    ),
    "convert_currency": _fn(
        "convert_currency", "Convert an amount between currencies.",
        {"amount": {"type": "number"}, "from_currency": _S, "to_currency": _S},
        ["amount", "from_currency", "to_currency"],
    ),
}

_FILES = ["read_file", "write_file", "list_directory"]
_GIT = ["git_status", "git_commit", "git_log"]
_MANY = ["get_weather", "calculate", "web_search", "get_stock_price", "send_email"]


def _user(text: str, system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": text}]


def _after_call(question: str, name: str, arguments: str, result: str) -> list[dict]:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


CASES: list[dict] = [
    {"id": "weather-paris", "tools": ["get_weather"], "messages": _user("What's the weather like in Paris right now?")},
    {"id": "weather-unit", "tools": ["get_weather"],
     "messages": _user("How warm is it in Tokyo? Give it to me in fahrenheit.")},
    {"id": "weather-two-cities", "tools": ["get_weather"],
     "messages": _user("Compare the current weather in Berlin and in Madrid.")},
    {"id": "weather-among-many", "tools": _MANY, "messages": _user("Is it raining in London?")},
    {"id": "read-file", "tools": _FILES, "messages": _user("Show me what's in src/main.py")},
    {"id": "list-dir", "tools": _FILES, "messages": _user("What files are in the tests folder?")},
    {"id": "write-file", "tools": _FILES,
     "messages": _user("Create a file hello.py containing: print('hello world')")},
    {"id": "read-two-files", "tools": _FILES,
     "messages": _user("Read both setup.py and README.md so we can compare them.")},
    {"id": "git-status", "tools": _GIT, "messages": _user("Do I have uncommitted changes?")},
    {"id": "git-commit", "tools": _GIT,
     "messages": _user("Commit app.py and utils.py with the message 'Fix login bug'.")},
    {"id": "git-log", "tools": _GIT, "messages": _user("Show me the last 5 commits.")},
    {"id": "math-simple", "tools": ["calculate"], "messages": _user("What is 1234 * 5678?")},
    {"id": "math-among-many", "tools": _MANY,
     "messages": _user("Compute (17 + 25) * 3 / 7 for me, exactly.")},
    {"id": "search-web", "tools": ["web_search"],
     "messages": _user("Find the release date of Python 3.13.")},
    {"id": "search-code", "tools": ["search_code", "read_file"],
     "messages": _user("Where is the function parse_config defined in this repo?")},
    {"id": "stock", "tools": _MANY, "messages": _user("What's Apple's stock price? Ticker AAPL.")},
    {"id": "stocks-parallel", "tools": _MANY,
     "messages": _user("Get the stock prices of MSFT, GOOG and NVDA.")},
    {"id": "email", "tools": _MANY,
     "messages": _user("Email bob@example.com with subject 'Lunch' and say I'll be 10 minutes late.")},
    {"id": "currency", "tools": ["convert_currency", "calculate"],
     "messages": _user("How much is 250 US dollars in euros?")},
    {"id": "weather-and-stock", "tools": _MANY,
     "messages": _user("Tell me the weather in New York and the price of TSLA stock.")},
    {"id": "tests-run", "tools": ["run_tests", "read_file", "git_status"],
     "messages": _user("Run the tests in tests/unit please.")},
    {"id": "system-prompt", "tools": _FILES + _GIT,
     "messages": _user("List the docs directory.", system="You are a coding agent working in a git repository.")},
    {"id": "no-call-code", "tools": ["get_weather", "web_search"],
     "messages": _user("Write a Python function that reverses a string.")},
    {"id": "no-call-greeting", "tools": _MANY, "messages": _user("Hi! Who are you?")},
    {"id": "no-call-explain", "tools": _GIT, "messages": _user("Explain what a git rebase does, briefly.")},
    {"id": "no-call-math-fact", "tools": ["web_search"], "messages": _user("What is 2 + 2?")},
    {"id": "after-weather-result", "tools": ["get_weather"],
     "messages": _after_call("What's the weather in Rome?", "get_weather", '{"location": "Rome"}',
                             '{"temperature": 24, "unit": "celsius", "condition": "sunny"}')},
    {"id": "after-read-then-write", "tools": _FILES,
     "messages": _after_call("Copy notes.txt to backup.txt.", "read_file", '{"path": "notes.txt"}',
                             "buy milk\ncall mum\n")},
    {"id": "after-status-commit", "tools": _GIT,
     "messages": _after_call("Commit everything that changed with message 'wip'.", "git_status", "{}",
                             "modified: app.py\nmodified: db.py")},
    {"id": "search-then-answer", "tools": ["web_search"],
     "messages": _after_call("Who wrote the book 'Clean Code'?", "web_search", '{"query": "Clean Code author"}',
                             '[{"title": "Clean Code - Robert C. Martin", "url": "https://example.com"}]')},
]

# A few cases are also sampled (the server's default sampling), to see the forms sampling brings.
SAMPLED = ["weather-paris", "read-file", "git-commit", "math-simple", "stocks-parallel", "email",
           "weather-two-cities", "no-call-greeting", "after-read-then-write", "currency"]
