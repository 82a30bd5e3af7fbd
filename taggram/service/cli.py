"""Service-side commands: ``taggram serve``.

Every :class:`~taggram.service.settings.Settings` field becomes an option (``--max-batch-size``
...), generated from the settings model so the two never drift; an option given on the command line
overrides its ``TAGGRAM_*`` environment variable.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import typer
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from taggram.repository import RepositoryError
from taggram.service.settings import Settings, SettingsError, problems

app = typer.Typer()


def _cli_type(annotation: Any) -> type:
    """The type click parses: the field's own for ``int``, ``float``, ``bool`` and ``Path``,
    optional ones included (``int | None``: ``--intra-op-threads <int>``, which was ``<str>``);
    comma-separated strings for lists, str for literals."""
    arguments = [part for part in typing.get_args(annotation) if part is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(arguments) == 1:
        annotation = arguments[0]
    if annotation in (int, float, bool, Path):
        return typing.cast(type, annotation)
    return str


def _shown_default(default: Any) -> str:
    """A setting's default as its environment variable would spell it (``true``, ``5``), or
    ``""`` for none (no default, an empty one, or one computed at start-up)."""
    if default in (None, "", PydanticUndefined):
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    return f"{default:g}" if isinstance(default, float) else str(default)


def _setting_options() -> list[inspect.Parameter]:
    parameters = []
    for name, field in Settings.model_fields.items():
        # The options' own default is None (unset: the environment decides), so click cannot
        # show the setting's default; the help says it, as the README's settings table does.
        default = _shown_default(field.default)
        shown = f"default {default}; " if default else ""
        option = typer.Option(None, help=f"{field.description} ({shown}env TAGGRAM_{name.upper()})")
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option,
                annotation=_cli_type(field.annotation) | None,
            )
        )
    return parameters


def settings_from_options(options: dict[str, Any]) -> Settings:
    """Settings from the environment, overridden by the options given on the command line.

    Raises:
        typer.Exit: 2, after one line per invalid setting on stderr.
    """
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        for line in problems(error, options=given):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from error


def server_module(name: str) -> ModuleType:
    """Import a module of the serving stack, or exit 2 saying which extra installs it.

    The base install is the light client; serving needs ``taggram[cpu]`` or ``taggram[gpu]``.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        typer.echo(
            f"error: {error.name} is not installed; serving and --local need the server stack: "
            "pip install 'taggram[cpu]' (or 'taggram[gpu]')",
            err=True,
        )
        raise typer.Exit(2) from error


def serve(**options: Any) -> None:
    """Start the tagging service (HTTP API on uvicorn)."""
    settings = settings_from_options(options)
    server = server_module("taggram.service.server")
    try:
        server.serve(settings)
    # No repository, not the models asked for, a bad API key or provider: a usage error.
    except (RepositoryError, SettingsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


serve.__signature__ = inspect.Signature(_setting_options())  # type: ignore[attr-defined]
app.command("serve")(serve)
