"""One command-line option per `Settings` field, generated from the field's type, description and
default, so that `coderapi serve --help` is the settings reference and can never miss one.

Scalars become typed options (`--port 8001`), booleans `--x/--no-x`, Literals choices; anything
else (the model registry, unions) takes JSON. Every generated option defaults to "not given", so
it only overrides what was given: a flag wins over the --config file, which wins over CODERAPI_*
environment variables (Settings.load keeps that order).
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import typer
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from typer.core import TyperCommand

from coderapi.config import Settings

_SCALARS = (str, int, float, bool, Path)

ConfigFile = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        envvar="CODERAPI_CONFIG",
        exists=True,
        dir_okay=False,
        help="JSON file of settings, keyed by the names below (max_request_body_bytes, ...). A flag "
        "wins over the file, which wins over CODERAPI_* env vars.",
    ),
]


class SettingsCommand(TyperCommand):
    """A command with plain (click) help: rich's table cuts long option names short at 80
    columns and reads `[...]` in descriptions as markup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; other unions stay whole."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def _cli_type(annotation: Any) -> Any:
    """The type typer parses the option as: the field's own scalar or Literal, else text."""
    inner = _unwrap(annotation)
    return inner if typing.get_origin(inner) is Literal or inner in _SCALARS else str


def _is_json(annotation: Any) -> bool:
    """Lists, models and unions take JSON; a SecretStr takes plain text."""
    return _cli_type(annotation) is str and _unwrap(annotation) not in (str, SecretStr)


def _help(name: str, field: FieldInfo) -> str:
    text = field.description or name.replace("_", " ")
    annotation = field.annotation
    if _unwrap(annotation) is SecretStr or "secret" in name:
        text += " Prefer the env var or the config file: a command line is visible to every user (ps)."
    if field.default_factory is None and field.default is not None:
        text += f" [default: {field.default}]"
    return text


def _option_parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    metavar = "JSON" if _is_json(field.annotation) else None
    option = typer.Option(help=_help(name, field), show_default=False, metavar=metavar)
    cli_type = _cli_type(field.annotation)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[cli_type], option]
    )


def settings_from_cli(config: Path | None, given: dict[str, Any]) -> Settings:
    """Settings from the environment, the config file and the options given (None: not given).
    Bad values exit with a usage error (status 2) that names the setting, never a traceback."""
    overrides = {}
    for name, value in given.items():
        if value is None:
            continue
        if _is_json(Settings.model_fields[name].annotation):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=_flag(name)) from None
        overrides[name] = value
    try:
        return Settings.load(config, **overrides)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{config} is not valid JSON: {exc}", param_hint="--config") from None
    except ValidationError as exc:
        raise typer.BadParameter(describe_invalid_settings(exc)) from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line naming each bad setting and the flag that sets it."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"setting {where} ({_flag(str(error['loc'][0]))}): {error['msg']}")
    return "; ".join(problems)


def with_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """Make `command(settings, **its own options)` a typer command that takes --config and one
    option per Settings field, and receives the Settings they build."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "settings"]
    clashes = {p.name for p in own} & {"config", *Settings.model_fields}
    if clashes:
        raise TypeError(f"{command.__name__}'s options clash with settings: {sorted(clashes)}")
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFile)
    generated = [_option_parameter(name, field) for name, field in Settings.model_fields.items()]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in Settings.model_fields}
        settings = settings_from_cli(kwargs.pop("config"), given)
        return command(settings, **kwargs)

    parameters = [*own, config, *generated]
    wrapper.__signature__ = inspect.Signature(parameters)  # what typer reads the options from
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
