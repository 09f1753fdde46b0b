"""A development set for tool-call prompting, apart from the 20 held-out cases (tool_call_cases.py).

Prompt choices (the tool guidance, models.*.tool_guidance) are compared on this set only; the
held-out set is then run once. It has cases that must call a tool (`expected` names it) and cases
where no offered tool fits (`expected` None: the answer must hold no call), so a prompt that
makes the model call more must also show it does not call where it should not. Other tools and
wording than the held-out set and tests/fixtures/tool_corpus.jsonl; written before any run.
"""

from __future__ import annotations

from tool_call_cases import case, fn

_S = {"type": "string"}
_I = {"type": "integer"}
_N = {"type": "number"}

TOOLS = {
    "search_docs": fn("search_docs", "Search the project documentation.", {"query": _S}, ["query"]),
    "read_file": fn("read_file", "Read a file of the repository.", {"path": _S}, ["path"]),
    "run_tests": fn("run_tests", "Run the test suite, or the tests matching a pattern.", {"pattern": _S}),
    "git_log": fn("git_log", "Recent commits, optionally for one path.", {"path": _S, "count": _I}),
    "git_commit": fn("git_commit", "Commit the staged changes.", {"message": _S}, ["message"]),
    "git_status": fn("git_status", "Which files are modified, staged or untracked.", {}),
    "list_dir": fn("list_dir", "List the entries of a directory.", {"path": _S}, ["path"]),
    "stock_price": fn("stock_price", "Latest price of a stock by ticker symbol.", {"symbol": _S}, ["symbol"]),
    "currency_convert": fn("currency_convert", "Convert an amount of money between currencies.",
                           {"amount": _N, "from_currency": _S, "to_currency": _S},
                           ["amount", "from_currency", "to_currency"]),
    "send_email": fn("send_email", "Send an email.", {"to": _S, "subject": _S, "body": _S}, ["to", "subject", "body"]),
    "search_contacts": fn("search_contacts", "Find people in the address book by name.", {"name": _S}, ["name"]),
    "book_flight": fn("book_flight", "Book a flight.", {"origin": _S, "destination": _S, "date": _S},
                      ["origin", "destination", "date"]),
    "flight_status": fn("flight_status", "Whether a flight is on time, by flight number.", {"flight": _S}, ["flight"]),
    "hotel_search": fn("hotel_search", "Find hotels in a city for given dates.",
                       {"city": _S, "check_in": _S, "nights": _I}, ["city", "check_in"]),
    "timezone_now": fn("timezone_now", "Current local time in a city.", {"city": _S}, ["city"]),
    "create_user": fn("create_user", "Create an account for a user.", {"email": _S, "role": {"type": "string",
                      "enum": ["admin", "member", "viewer"]}}, ["email", "role"]),
    "disable_user": fn("disable_user", "Disable a user's account.", {"email": _S}, ["email"]),
    "reset_password": fn("reset_password", "Send a password reset link to a user.", {"email": _S}, ["email"]),
    "k8s_scale": fn("k8s_scale", "Scale a Kubernetes deployment.", {"deployment": _S, "replicas": _I},
                    ["deployment", "replicas"]),
    "k8s_logs": fn("k8s_logs", "Logs of a Kubernetes pod.", {"pod": _S, "lines": _I}, ["pod"]),
    "calculate": fn("calculate", "Evaluate an arithmetic expression.", {"expression": _S}, ["expression"]),
    "define_word": fn("define_word", "Dictionary definition of a word.", {"word": _S}, ["word"]),
    "play_music": fn("play_music", "Play a song or an artist.", {"query": _S}, ["query"]),
    "set_timer": fn("set_timer", "Start a countdown timer.", {"minutes": _I}, ["minutes"]),
    "add_todo": fn("add_todo", "Add an item to the to-do list.", {"item": _S, "due": _S}, ["item"]),
    "list_todos": fn("list_todos", "The open items of the to-do list.", {}),
}

CASES = [
    # must call the named tool
    case("docs", ["search_docs", "read_file"], "Where do the docs explain configuring the cache?", "search_docs"),
    case("read", ["search_docs", "read_file"], "Show me what's in setup.cfg.", "read_file"),
    case("tests", ["run_tests", "git_status"], "Run the tests for the parser module.", "run_tests"),
    case("log", ["git_log", "git_commit", "git_status"], "Who touched src/db.py recently?", "git_log"),
    case("commit", ["git_log", "git_commit", "git_status"], "Commit what's staged with the message 'fix typo'.",
         "git_commit"),
    case("status", ["git_log", "git_commit", "git_status"], "Did I leave any files uncommitted?", "git_status"),
    case("ls", ["list_dir", "read_file"], "What's inside the scripts folder?", "list_dir"),
    case("stock", ["stock_price", "currency_convert"], "What is AAPL trading at?", "stock_price"),
    case("fx", ["stock_price", "currency_convert"], "How much is 250 euros in yen?", "currency_convert"),
    case("email", ["send_email", "search_contacts"],
         "Email tom@acme.io that the report is late, subject 'Report'.", "send_email"),
    case("contact", ["send_email", "search_contacts"], "Do I have a phone number for Priya?", "search_contacts"),
    case("flight", ["book_flight", "flight_status", "hotel_search"], "Is LH 454 delayed?", "flight_status"),
    case("book", ["book_flight", "flight_status", "hotel_search"],
         "Get me a seat from Boston to Denver on 2025-06-02.", "book_flight"),
    case("hotel", ["book_flight", "flight_status", "hotel_search"],
         "I need somewhere to stay in Kyoto for 3 nights from May 4th.", "hotel_search"),
    case("time", ["timezone_now", "set_timer"], "What time is it in Sydney right now?", "timezone_now"),
    case("newuser", ["create_user", "disable_user", "reset_password"],
         "Add jane@corp.com to the workspace as a viewer.", "create_user"),
    case("offboard", ["create_user", "disable_user", "reset_password"], "Sam (sam@corp.com) left, lock him out.",
         "disable_user"),
    case("locked", ["create_user", "disable_user", "reset_password"],
         "lee@corp.com forgot her password.", "reset_password"),
    case("scale", ["k8s_scale", "k8s_logs"], "Bump the api deployment to 5 replicas.", "k8s_scale"),
    case("crash", ["k8s_scale", "k8s_logs"], "Why does pod worker-7f9 keep crashing?", "k8s_logs"),
    case("calc", ["calculate", "define_word"], "What's 17% of 2,340?", "calculate"),
    case("define", ["calculate", "define_word"], "What does 'ephemeral' mean?", "define_word"),
    case("music", ["play_music", "set_timer"], "Put on some Miles Davis.", "play_music"),
    case("timer", ["play_music", "set_timer"], "Tell me when 12 minutes are up.", "set_timer"),
    case("todo", ["add_todo", "list_todos"], "Remind me to renew the TLS certificate by Friday.", "add_todo"),
    case("todos", ["add_todo", "list_todos"], "What do I still have to do?", "list_todos"),
    # no offered tool fits: the answer must hold no call
    case("no-code", ["stock_price", "currency_convert"], "Write a Python function that reverses a string.", None),
    case("no-explain", ["git_log", "git_commit", "git_status"], "Explain what a Python decorator is.", None),
    case("no-haiku", ["play_music", "set_timer"], "Write a haiku about autumn rain.", None),
    case("no-hello", ["send_email", "search_contacts"], "Hi! How are you today?", None),
    case("no-regex", ["search_docs", "read_file"], "Give me a regex that matches an IPv4 address.", None),
    case("no-sql", ["k8s_scale", "k8s_logs"], "What is the difference between INNER JOIN and LEFT JOIN?", None),
    case("no-bigo", ["calculate", "define_word"], "What's the time complexity of binary search?", None),
    case("no-fix", ["run_tests", "git_status"],
         "Fix this: def add(a, b): return a - b", None),
]
