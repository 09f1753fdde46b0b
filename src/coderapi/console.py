"""What `coderapi serve` prints: weight assembly progress and the start-up banner."""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from coderapi.services.container import Services

console = Console(stderr=True)


@contextmanager
def weights_progress() -> Iterator:
    bar = Progress("[bold]assembling model weights", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("weights", total=total)
        bar.update(task, completed=done)

    try:
        yield update
    finally:
        bar.stop()


def announce(services: Services, secret: str | None) -> None:
    settings = services.settings
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"[bold green]coderapi[/] on {base}  (dashboard {base}/ , API {base}/v1)")
    for model in services.registry.models:
        names = ", ".join([model.spec.id, *model.spec.aliases])
        console.print(f"  model ids [cyan]{names}[/] are served by [bold]{model.weights}[/]")
    if secret:
        # Printed exactly once, alone on stdout, by the start that created it (bootstrap_admin
        # returns it only to the process whose insert won): never logged, never repeated.
        body = '{"model": "Qwen/Qwen2.5-Coder-32B-Instruct", "messages": [{"role": "user", "content": "Hello"}]}'
        console.print("\n[bold]First start:[/] created admin@localhost and this API key (shown once):")
        print(secret, flush=True)
        console.print(
            "Keep it now: it is not stored and will not be shown again. Try it with the key in CODERAPI_KEY:\n  curl "
            + f"{base}/v1/chat/completions -H \"Authorization: Bearer $CODERAPI_KEY\" "
            + f"-H 'Content-Type: application/json' -d {shlex.quote(body)}\n"
        )
