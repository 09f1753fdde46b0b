"""The `coderapi` command: serve, users, keys, credits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from coderapi.cli_accounts import credits_app, keys_app, users_app
from coderapi.config import Settings

app = typer.Typer(help="coderapi: a self-hosted OpenAI-compatible API platform for code models.", no_args_is_help=True)
app.add_typer(users_app, name="users", help="Create and manage users.")
app.add_typer(keys_app, name="keys", help="Create and manage API keys.")
app.add_typer(credits_app, name="credits", help="Grant credit to users.")


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help=Settings.model_fields["host"].description)] = None,
    port: Annotated[Optional[int], typer.Option(help=Settings.model_fields["port"].description)] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON config file (see README).", exists=True)] = None,
) -> None:
    """Serve the API and dashboard (default: 127.0.0.1:8000, the embedded model)."""
    from coderapi.app import create_app
    from coderapi.console import announce, weights_progress
    from coderapi.server import run

    settings = Settings.load(config, host=host, port=port)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with weights_progress() as progress:
        application = create_app(settings, weights_progress=progress, announce=announce)
    run(application, host=settings.host, port=settings.port, log_level=settings.log_level,
        grace_seconds=settings.shutdown_grace_seconds)


@app.command()
def smoke(
    config: Annotated[Optional[Path], typer.Option(help="JSON config file (see README).", exists=True)] = None,
) -> None:
    """Decode a few tokens with llama.cpp in a child process: a build that crashes on this CPU is named."""
    from coderapi.console import weights_progress
    from coderapi.engines.llama_cpp.smoke import run_smoke
    from coderapi.weights.packaged import resolve_gguf

    settings = Settings.load(config)
    spec = next((m for m in settings.models if m.backend == "llama_cpp"), None)
    if spec is None:
        typer.echo("no llama.cpp model configured: nothing to check")
        return
    with weights_progress() as progress:
        gguf = resolve_gguf(spec.gguf, settings.resolved_model_cache_dir, progress)
    result = run_smoke(gguf)
    typer.echo(result.message, err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
