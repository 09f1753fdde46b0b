"""20 held-out tool prompts for bench/tool_calls.py: plain data, none of them from
tests/fixtures/tool_corpus.jsonl (other tools, other wording), varied domains, 1-4 tools each,
some with enums, nested objects and arrays. Each names the function a careful reader expects.
Written before any run and not tuned to the results.
"""

from __future__ import annotations

_S = {"type": "string"}
_I = {"type": "integer"}


def fn(name: str, description: str, properties: dict, required: list[str] | None = None) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required or []}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS = {
    "get_forecast": fn("get_forecast", "Weather forecast for a place over the next days.",
                       {"city": _S, "days": {"type": "integer", "minimum": 1, "maximum": 14},
                        "units": {"type": "string", "enum": ["metric", "imperial"]}}, ["city"]),
    "air_quality": fn("air_quality", "Current air quality index of a city.", {"city": _S}, ["city"]),
    "delete_file": fn("delete_file", "Delete a file from the workspace.", {"path": _S}, ["path"]),
    "move_file": fn("move_file", "Move or rename a file.", {"source": _S, "destination": _S}, ["source", "destination"]),
    "file_info": fn("file_info", "Size and modification time of a file.", {"path": _S}, ["path"]),
    "git_diff": fn("git_diff", "Show changes of the working tree, optionally for one path.",
                   {"path": _S, "staged": {"type": "boolean"}}),
    "git_checkout": fn("git_checkout", "Switch to a branch, creating it if asked.",
                       {"branch": _S, "create": {"type": "boolean"}}, ["branch"]),
    "git_blame": fn("git_blame", "Who last changed each line of a file.", {"path": _S}, ["path"]),
    "create_ticket": fn("create_ticket", "Open a ticket in the issue tracker.",
                        {"title": _S, "description": _S,
                         "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
                         "labels": {"type": "array", "items": _S}}, ["title", "priority"]),
    "close_ticket": fn("close_ticket", "Close a ticket by its number.",
                       {"ticket_id": _I, "resolution": {"type": "string", "enum": ["fixed", "wontfix", "duplicate"]}},
                       ["ticket_id", "resolution"]),
    "assign_ticket": fn("assign_ticket", "Assign a ticket to a person.", {"ticket_id": _I, "assignee": _S},
                        ["ticket_id", "assignee"]),
    "run_sql": fn("run_sql", "Run a read-only SQL query on the analytics database.",
                  {"query": _S, "limit": _I}, ["query"]),
    "describe_table": fn("describe_table", "Columns and types of a database table.", {"table": _S}, ["table"]),
    "http_request": fn("http_request", "Send an HTTP request and return the response.",
                       {"method": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE"]}, "url": _S,
                        "headers": {"type": "object", "additionalProperties": _S}, "body": _S}, ["method", "url"]),
    "solve_equation": fn("solve_equation", "Solve an equation for a variable.",
                         {"equation": _S, "variable": _S}, ["equation", "variable"]),
    "unit_convert": fn("unit_convert", "Convert a quantity between units.",
                       {"value": {"type": "number"}, "from_unit": _S, "to_unit": _S}, ["value", "from_unit", "to_unit"]),
    "schedule_meeting": fn("schedule_meeting", "Put a meeting in the calendar.",
                           {"title": _S, "start": {"type": "string", "description": "ISO 8601 date-time"},
                            "duration_minutes": _I, "attendees": {"type": "array", "items": _S}},
                           ["title", "start", "attendees"]),
    "list_events": fn("list_events", "Calendar events on a day.", {"date": {"type": "string", "description": "YYYY-MM-DD"}},
                      ["date"]),
    "send_slack_message": fn("send_slack_message", "Post a message to a Slack channel.", {"channel": _S, "text": _S},
                             ["channel", "text"]),
    "translate_text": fn("translate_text", "Translate text into another language.",
                         {"text": _S, "target_language": _S}, ["text", "target_language"]),
    "docker_run": fn("docker_run", "Start a container from an image.",
                     {"image": _S, "ports": {"type": "array", "items": _S},
                      "env": {"type": "object", "additionalProperties": _S}, "detach": {"type": "boolean"}}, ["image"]),
    "install_package": fn("install_package", "Install a Python package into the project environment.",
                          {"name": _S, "version": _S}, ["name"]),
    "get_directions": fn("get_directions", "Route between two places.",
                         {"origin": _S, "destination": _S,
                          "mode": {"type": "string", "enum": ["driving", "walking", "cycling", "transit"]}},
                         ["origin", "destination"]),
    "set_reminder": fn("set_reminder", "Set a reminder.",
                       {"text": _S, "when": {"type": "object", "properties": {"date": _S, "time": _S},
                                             "required": ["date", "time"]}}, ["text", "when"]),
    "lookup_order": fn("lookup_order", "Status of a customer order.", {"order_id": _S}, ["order_id"]),
    "refund_order": fn("refund_order", "Refund an order, fully or in part.",
                       {"order_id": _S, "amount": {"type": "number"}, "reason": _S}, ["order_id", "reason"]),
}


def case(case_id: str, tools: list[str], prompt: str, expected: str, system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return {"id": case_id, "tools": tools, "messages": messages, "expected": expected}


CASES = [
    case("forecast", ["get_forecast", "air_quality"],
         "Will I need an umbrella in Lisbon over the next 3 days?", "get_forecast"),
    case("air", ["get_forecast", "air_quality"], "Is the air safe to go jogging in Delhi today?", "air_quality"),
    case("delete", ["delete_file", "move_file", "file_info"], "Remove the file build/old_output.log.", "delete_file"),
    case("rename", ["delete_file", "move_file", "file_info"],
         "Rename notes.txt to docs/meeting-notes.md please.", "move_file"),
    case("diff", ["git_diff", "git_checkout", "git_blame"], "What have I changed in src/app.py so far?", "git_diff"),
    case("branch", ["git_diff", "git_checkout", "git_blame"],
         "Create a new branch called feature/login and switch to it.", "git_checkout"),
    case("ticket-open", ["create_ticket", "close_ticket", "assign_ticket"],
         "File an urgent bug: the checkout page crashes when the cart is empty.", "create_ticket"),
    case("ticket-close", ["create_ticket", "close_ticket", "assign_ticket"],
         "Ticket 4821 is a duplicate, close it.", "close_ticket"),
    case("ticket-assign", ["create_ticket", "close_ticket", "assign_ticket", "send_slack_message"],
         "Give ticket 77 to maria.", "assign_ticket"),
    case("sql", ["run_sql", "describe_table"],
         "How many users signed up in March 2024? The table is users, column created_at.", "run_sql"),
    case("schema", ["run_sql", "describe_table"], "Which columns does the orders table have?", "describe_table"),
    case("http", ["http_request"], "Check whether https://api.example.com/health answers.", "http_request"),
    case("equation", ["solve_equation", "unit_convert"], "Solve 3x + 7 = 22 for x.", "solve_equation"),
    case("units", ["solve_equation", "unit_convert"], "How many kilometres is 26.2 miles?", "unit_convert"),
    case("meeting", ["schedule_meeting", "list_events", "send_slack_message"],
         "Book a 30 minute sync with alice@corp.com and bob@corp.com on 2025-03-14 at 10:00.", "schedule_meeting"),
    case("agenda", ["schedule_meeting", "list_events"], "What's on my calendar on 2025-03-17?", "list_events"),
    case("translate", ["translate_text", "send_slack_message"],
         "Translate 'the deployment is finished' into German.", "translate_text"),
    case("docker", ["docker_run", "install_package"],
         "Start a redis container in the background with port 6379 published.", "docker_run"),
    case("directions", ["get_directions", "get_forecast", "set_reminder", "lookup_order"],
         "How do I cycle from the Louvre to the Eiffel Tower?", "get_directions"),
    case("refund", ["lookup_order", "refund_order"],
         "Order A-1009 arrived broken; refund it.", "refund_order",
         system="You are a support assistant. Use the tools to act on the customer's request."),
]
