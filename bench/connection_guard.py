"""What the connection guard (src/coderapi/connection_guard.py) costs per request.

The same app (scripted fake engine, SQLite in a temporary directory) is served twice, each in a
process of its own on a loopback port: once behind uvicorn's plain httptools protocol, once behind
GuardedHttpProtocol as `coderapi serve` runs it. One keep-alive client per server sends sequential
requests (GET /health, and a non-streamed 8-token chat completion) in rounds that alternate which
server goes first; the per-request medians are compared.

    .venv/bin/python bench/connection_guard.py [--rounds 10] [--health 100] [--chat 30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine  # noqa: E402
from servers import bench_key, free_port  # noqa: E402

from coderapi.app import create_app  # noqa: E402
from coderapi.config import ModelSpec, Settings  # noqa: E402
from coderapi.engines.fake import FakeEngine  # noqa: E402
from coderapi.server import uvicorn_config  # noqa: E402

MODEL = "fake"


def _serve(guarded: bool, ready: multiprocessing.Queue) -> None:
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), models=[ModelSpec(id=MODEL, backend="fake")],
                        bootstrap_admin=False, log_level="warning", port=free_port())
    app = create_app(settings, engine_factory=lambda spec: FakeEngine())
    services = app.state.services
    services.db.upgrade()

    key = bench_key(services)
    if guarded:
        config = uvicorn_config(app, settings)
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", http="httptools", ws="none")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    ready.put((f"http://127.0.0.1:{settings.port}", key))
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--health", type=int, default=100, help="GET /health per server per round")
    parser.add_argument("--chat", type=int, default=30, help="chat completions per server per round")
    args = parser.parse_args()

    clients: dict[str, httpx.Client] = {}
    for name, guarded in (("plain", False), ("guarded", True)):
        ready: multiprocessing.Queue = multiprocessing.Queue()
        multiprocessing.Process(target=_serve, args=(guarded, ready), daemon=True).start()
        base, key = ready.get(timeout=120)
        clients[name] = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    times = {name: {"health": [], "chat": []} for name in clients}

    def timed(client: httpx.Client, kind: str, n: int, name: str) -> None:
        for _ in range(n):
            start = time.perf_counter()
            answer = client.get("/health") if kind == "health" else client.post("/v1/chat/completions", json=body)
            times[name][kind].append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text

    for name, client in clients.items():  # warm-up, not counted
        timed(client, "health", 50, name)
        timed(client, "chat", 20, name)
    for kinds in times.values():
        kinds["health"].clear()
        kinds["chat"].clear()
    for round_ in range(args.rounds):
        order = list(clients.items()) if round_ % 2 == 0 else list(reversed(clients.items()))
        for name, client in order:
            timed(client, "health", args.health, name)
            timed(client, "chat", args.chat, name)

    print(f"machine: {machine()}")
    print(f"{args.rounds} alternating rounds, medians over {args.rounds * args.health} /health and "
          f"{args.rounds * args.chat} chat requests per server")
    for kind in ("health", "chat"):
        plain = statistics.median(times["plain"][kind])
        guarded = statistics.median(times["guarded"][kind])
        print(f"{kind:>6}: plain {plain * 1000:.3f} ms, guarded {guarded * 1000:.3f} ms, "
              f"guarded/plain {guarded / plain:.3f}")


if __name__ == "__main__":
    main()
