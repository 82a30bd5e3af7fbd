"""``taggram catalogue`` (tag a folder or manifest) and ``taggram merge`` (join shard outputs)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from taggram.catalogue.records import Winners
from taggram.catalogue.remote import RemoteBackend, check_served_options
from taggram.catalogue.runner import (
    Backend,
    JobOptions,
    counted,
    model_name_problem,
    options_problem,
    run,
    tagged_with,
)
from taggram.catalogue.shard import Shard, select
from taggram.catalogue.sources import DEFAULT_ENCODING, SourceError, load_source
from taggram.catalogue.writers import (
    Format,
    OutputError,
    infer_format,
    iter_records,
    journal_path,
    write_records,
)
from taggram.client import RetryPolicy, service_url_problem
from taggram.repository import DEFAULT_REPOSITORY, RepositoryError
from taggram.service.cli import server_module
from taggram.service.settings import SettingsError, in_process_settings

app = typer.Typer()

Result = TypeVar("Result")


async def _cancelled_by_sigterm(job: Coroutine[Any, Any, Result]) -> Result:
    """Await ``job``; SIGTERM (a Kubernetes Job's pod deleted or evicted) cancels it, as
    ``asyncio.run`` does on Ctrl-C, so writers close and ``asyncio.CancelledError`` comes out."""
    task = asyncio.ensure_future(job)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


@app.command("catalogue")
def catalogue(
    source: Annotated[
        Path, typer.Argument(help="a folder (searched recursively) or a CSV/JSONL manifest")
    ],
    output: Annotated[Path, typer.Option(help="results file; an existing one is resumed")],
    url: Annotated[
        str | None,
        typer.Option(
            envvar="TAGGRAM_URL", help="service root URL, http://host:port (or use --local)"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="TAGGRAM_API_KEY",
            help="API key for a service with keys on (prefer the environment variable)",
            show_default=False,
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option(help="tag in-process on the local model repository, no server")
    ] = False,
    repository: Annotated[
        Path,
        typer.Option(envvar="TAGGRAM_MODEL_REPOSITORY", help="model repository for --local"),
    ] = DEFAULT_REPOSITORY,
    output_format: Annotated[
        Format | None,
        typer.Option("--format", help="jsonl, csv or parquet (default: from the extension)"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="model name (default: the service's)")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="tags kept in top_tags")] = 10,
    embeddings: Annotated[
        str | None, typer.Option(help="also store this embedding layer's clip mean")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="tracks in flight at once")] = 8,
    shard: Annotated[
        str | None, typer.Option(help="i/N: tag only shard i of N (split by a hash of the id)")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="also re-try tracks that failed for a permanent reason")
    ] = False,
    retries: Annotated[
        int, typer.Option(min=1, help="tries per request on 429/502/503/504 and connection errors")
    ] = 8,
    max_retry_delay: Annotated[
        float, typer.Option(help="longest wait between two tries, seconds")
    ] = 30.0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="tag at most this many tracks in this run")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(help="progress bar on stderr (default: only when stderr is a terminal)"),
    ] = None,
    encoding: Annotated[
        str,
        typer.Option(help="text encoding of a manifest, e.g. cp1252 (default: UTF-8, BOM or not)"),
    ] = DEFAULT_ENCODING,
) -> None:
    """Tag every track of SOURCE into OUTPUT, resuming where a previous run stopped."""
    if local == (url is not None):
        raise typer.BadParameter("give exactly one of --url and --local")
    if url is not None and (problem := service_url_problem(url)) is not None:
        # otherwise every track is retried and recorded unreachable, exit 1: a pod restarted
        # forever on a typo
        raise typer.BadParameter(problem, param_hint="'--url'")
    problem = model_name_problem(model)
    if problem is not None:  # before the source is read or the models load
        typer.echo(f"taggram catalogue: {problem}", err=True)
        raise typer.Exit(2)
    try:
        retry = RetryPolicy(attempts=retries, max_delay=max_retry_delay)
    except ValueError as error:  # a NaN or negative delay would fail at the first retry
        raise typer.BadParameter(str(error), param_hint="'--max-retry-delay'") from error
    try:
        found = load_source(source, encoding)
    except SourceError as error:
        # A usage error (exit 2, one line): retrying the pod cannot fix a bad manifest.
        typer.echo(f"taggram catalogue: {error}", err=True)
        raise typer.Exit(2) from error
    tracks = select(found.tracks, _shard(shard))
    options = JobOptions(model=model, top_k=top_k, embeddings=embeddings)
    backend: Backend
    if local:
        local_backend = server_module("taggram.catalogue.local")
        try:
            settings = in_process_settings(repository, model)
            in_process = local_backend.LocalBackend(settings, options, retry)
        except (RepositoryError, SettingsError) as error:
            # A usage error like a bad manifest (exit 2, one line): a missing repository, an
            # unknown --model or a provider not installed is the same on every restart of the pod.
            typer.echo(f"taggram catalogue: {error}", err=True)
            raise typer.Exit(2) from error
        problem = options_problem(options, settings.default_model, in_process.embedding_outputs())
        default_model: str | None = settings.default_model
        backend = in_process
    else:
        assert url is not None
        problem, default_model = check_served_options(url, options, retry, api_key)
        backend = RemoteBackend(url, options, retry, connections=concurrency, api_key=api_key)
    if problem is not None:
        # A model or layer that is not served would fail every track alike: a usage error.
        typer.echo(f"taggram catalogue: {problem}", err=True)
        raise typer.Exit(2)
    fmt = output_format or infer_format(output)
    try:
        summary = asyncio.run(
            _cancelled_by_sigterm(
                run(
                    tracks,
                    backend,
                    output,
                    fmt,
                    concurrency=concurrency,
                    retry_failed=retry_failed,
                    limit=limit,
                    progress=progress,
                    # what the output's records must have been made with, to be resumed
                    options=replace(options, model=model or default_model),
                )
            )
        )
    except OutputError as error:
        # Read before any track is sent (to resume): --output names some other file, a usage
        # error that a restarted pod would meet again.
        typer.echo(f"taggram catalogue: --output {error}", err=True)
        raise typer.Exit(2) from error
    except (KeyboardInterrupt, asyncio.CancelledError) as stop:
        # asyncio.run turns Ctrl-C into KeyboardInterrupt; SIGTERM cancelled the run.
        stopped_by = signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM
        typer.echo(
            f"taggram catalogue: interrupted ({stopped_by.name}); the records written to {output}"
            " are kept: run the same command again to resume",
            err=True,
        )
        raise typer.Exit(128 + stopped_by) from None  # the shell's status for the signal
    except OSError as error:
        # The output cannot be written (disk or quota full, a read-only or missing volume):
        # one line, not a traceback; status 1, as a pod restarted once space is freed resumes.
        typer.echo(
            f"taggram catalogue: --output {output}: cannot write: {error.strerror or error}; the"
            " records written before are kept: fix that and run the same command again to resume",
            err=True,
        )
        raise typer.Exit(1) from error
    summary.not_audio, summary.not_regular = found.not_audio, found.not_regular
    typer.echo(summary.report(), err=True)
    # A transient failure (service unreachable) exits non-zero, so a Kubernetes Job retries the
    # pod, which resumes; files that are simply bad are reported but do not fail the run, unless
    # no track at all is tagged: a script or Job took every file failing for a finished catalogue.
    if summary.tagged_nothing:
        typer.echo("taggram catalogue: no track could be tagged", err=True)
    raise typer.Exit(1 if summary.retryable or summary.tagged_nothing else 0)


@app.command("merge")
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="outputs of catalogue runs (any format)")],
    output: Annotated[Path, typer.Option(help="merged file")],
    output_format: Annotated[
        Format | None,
        typer.Option("--format", help="jsonl, csv or parquet (default: from the extension)"),
    ] = None,
) -> None:
    """Merge catalogue outputs (one per shard, say) into one, one record per id."""
    # Read as empty, they would merge into an output short of their tracks. (A Parquet part of a
    # killed run may be only its journal.)
    missing = [str(path) for path in inputs if not (path.exists() or journal_path(path).exists())]
    if missing:
        typer.echo(f"taggram merge: no such file: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    made_with: dict[tuple[str | None, str | None], str] = {}  # (model, layer): first input
    winners = Winners()
    try:
        for path in inputs:  # a first pass finds each id's record, holding only ids
            for record in iter_records(path):
                winners.add(record)
                if record.status == "ok":
                    made_with.setdefault((record.model, record.embedding_layer), str(path))
    except OutputError as error:
        typer.echo(f"taggram merge: {error}", err=True)
        raise typer.Exit(2) from error
    if len(made_with) > 1:
        # A track in two inputs would keep whichever model's tags came first.
        kinds = "; ".join(f"{tagged_with(*key)} ({path})" for key, path in made_with.items())
        typer.echo(f"taggram merge: the inputs mix models or layers: {kinds}", err=True)
        raise typer.Exit(2)
    records = (record for path in inputs for record in iter_records(path))
    write_records(output, winners.kept(records), output_format or infer_format(output))
    failed = len(winners.positions) - len(winners.tagged)
    files, tracks = counted(len(inputs), "file"), counted(len(winners.positions), "track")
    typer.echo(f"merged {files}: {tracks}, {failed} failed", err=True)
