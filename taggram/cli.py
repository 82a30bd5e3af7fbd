"""The ``taggram`` command: one entry point gathering every sub-command.

Each half keeps its own commands (``taggram.service.cli``, ``taggram.models.cli``,
``taggram.catalogue.cli``); ``models`` commands import torch only when they run, so ``taggram
serve`` never loads it.
"""

from __future__ import annotations

from importlib.metadata import version

import typer

from taggram.catalogue.cli import app as catalogue_app
from taggram.models.cli import app as models_app
from taggram.models.training.cli import app as training_app
from taggram.service.cli import app as service_app
from taggram.service.custom.cli import app as custom_app
from taggram.tag_command import app as tag_app

# Plain (click) help and errors, not rich's panels: in an 80-column terminal the panels cut the
# option and variable names short ("--max-request-patch…", "TAGGRAM_MODEL_REPOS…") and wrapped a
# usage error over several boxed lines; click's wraps text at words and says an error in one line.
app = typer.Typer(
    help="taggram: music and audio tagging service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for sub in (service_app, tag_app, models_app, training_app, catalogue_app):
    app.registered_commands.extend(sub.registered_commands)
app.add_typer(custom_app, name="models")


def _version(show: bool) -> None:
    if show:
        typer.echo(f"taggram {version('taggram')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """taggram: music and audio tagging service."""


def main() -> None:
    """Run the ``taggram`` command (the console entry point)."""
    app()
