"""``taggram tag FILE...``: the top tags of a few files, as a table or JSON, and the taggram plot.

The one-line tagger musicnn users know (``python -m musicnn.tagger file --topN 3``). It tags
in-process with :class:`~taggram.service.tagging.Tagger` (the pipeline behind ``POST /v1/tag``,
so the numbers are the service's), or through a running service with ``--url`` or
``TAGGRAM_URL``. Either way each file's result is a ``/v1/tag`` response body, so ``--json`` and
``--plot`` give the same output for both.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from taggram.client import service_url_problem
from taggram.filenames import printable
from taggram.plot import PlotUnavailableError, plot_taggram, require_folder, require_format
from taggram.repository import DEFAULT_REPOSITORY, load_repository

app = typer.Typer()

BAR_WIDTH = 24  # characters of the probability bar at probability 1
# Files decoded and queued at once in-process: enough to keep the batcher's batches full, few
# enough that a long list (``taggram tag *.mp3``) neither fills memory nor the queue.
LOCAL_CONCURRENCY = 4


@dataclass(frozen=True)
class Outcome:
    """One file's result: a ``/v1/tag`` response body, or the error's code and message."""

    path: Path
    body: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None


def _folder(path: Path) -> Outcome:
    """A folder among FILES (``taggram tag music/*`` with a subfolder): reported like an
    unreadable file, saying what tags a folder; "Is a directory" did not."""
    hint = f"taggram catalogue {path} --output results.jsonl"
    return Outcome(path, code="unreadable", message=f"a folder: tag the audio under it with {hint}")


def _model_problem(model: str, tags: dict[str, list[str]]) -> str | None:
    """Why ``model`` has no tags to list, among the served models' ``tags``, or ``None``: it is
    not served, or it is a feature extractor (``mfcc``, ``random_*``: embeddings only, for
    custom taggers), which would print every file's heading over an empty table. Either way
    the message lists the models that can tag, not the feature extractors, which would only
    be refused next."""
    taggers = ", ".join(sorted(name for name, names in tags.items() if names))
    if model not in tags:
        return f"no model named {model!r}; tag with one of {taggers}"
    if not tags[model]:
        return (
            f"{model} has no tags: it is a feature extractor for custom taggers (embeddings "
            f"only); tag with one of {taggers}"
        )
    return None


def _tag_remote(
    url: str, paths: list[Path], options: dict[str, Any], key: str | None
) -> Iterator[Outcome]:
    """Through ``POST /v1/tag`` of the service at ``url`` (retries are the client's)."""
    import httpx

    from taggram.client import (
        DEFAULT_TIMEOUT,
        APIError,
        ConnectionFailedError,
        NotAServiceError,
        RetryPolicy,
        TaggramClient,
        TaggramClientError,
    )

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx.Client(base_url=url, timeout=DEFAULT_TIMEOUT, headers=headers)
    # A person waits at the terminal: give up on an unreachable service within seconds.
    with TaggramClient(url, http=http, retry=RetryPolicy(attempts=4, max_delay=5.0)) as client:
        try:
            listing = client.models()
        except ConnectionFailedError as error:
            # Unreachable through every retry: each file would wait as long again to fail alike
            # (500 files, 25 minutes). Each is reported now, as it would have been.
            for path in paths:
                yield Outcome(path, code=error.code, message=str(error))
            return
        except NotAServiceError as error:  # every file would fail alike: a usage error
            raise typer.BadParameter(str(error), param_hint="'--url'") from error
        except TaggramClientError:
            listing = None  # a key refused: each file reports it
        if listing is not None:
            served = {item["name"]: list(item["tags"]) for item in listing["models"]}
            problem = _model_problem(options["model"] or listing["default_model"], served)
            if problem is not None:  # every file would fail alike, or print no tags
                raise typer.BadParameter(problem, param_hint="'--model'")
        for path in paths:
            if path.is_dir():
                yield _folder(path)
                continue
            try:
                yield Outcome(path, body=client.tag(path, **options))
            except APIError as error:
                yield Outcome(path, code=error.code, message=error.message)
            except OSError as error:  # the code in-process tagging gives (--json reads alike)
                yield Outcome(path, code="unreadable", message=str(error))
            except ConnectionFailedError as error:
                yield Outcome(path, code=error.code, message=str(error))


async def _tag_local_all(
    repository: Path, paths: list[Path], options: dict[str, Any], report: Report
) -> None:
    # The server stack (ONNX Runtime, decoders) is needed only here, not for --url.
    from taggram.service.api.schemas import TagResponse
    from taggram.service.custom.registry import stored_records
    from taggram.service.errors import TaggramError
    from taggram.service.settings import in_process_settings
    from taggram.service.tagging import Tagger, TagOptions

    # One short run: skip the warm-up runs a server does.
    settings = in_process_settings(repository, options.get("model"), warmup=False)
    tag_options = TagOptions(**options)

    slots = asyncio.Semaphore(LOCAL_CONCURRENCY)
    entries = load_repository(repository)  # a missing one: RepositoryError, said by the caller
    served = {name: list(entry.metadata.tags) for name, entry in entries.items()}
    # and the custom taggers of the folder (``taggram models create --local``), with their classes
    custom = stored_records(settings.custom_models)
    served |= {name: record.classes for name, record in custom.items() if name not in served}
    problem = _model_problem(options.get("model") or settings.default_model, served)
    if problem is not None:
        raise typer.BadParameter(problem, param_hint="'--model'")
    async with Tagger(settings) as tagger:

        async def one(path: Path) -> Outcome:
            if path.is_dir():
                return _folder(path)
            try:
                async with slots:
                    result = await tagger.tag(path, tag_options)
            except TaggramError as error:
                return Outcome(path, code=error.code, message=error.message)
            except OSError as error:
                return Outcome(path, code="unreadable", message=str(error))
            body = TagResponse.from_result(result, request_id="local").model_dump(mode="json")
            return Outcome(path, body=body)

        # Several files at once: the batcher fills its batches across them, as on the server.
        # Each is reported, in the order given, as soon as it and those before it are done.
        tasks = [asyncio.create_task(one(path)) for path in paths]
        for task in tasks:
            report(await task)


def _tag_local(
    repository: Path, paths: list[Path], options: dict[str, Any], report: Report
) -> None:
    from taggram.repository import RepositoryError
    from taggram.service.cli import server_module
    from taggram.service.settings import SettingsError

    # The light client install has no server stack: say which extra to install, or use --url.
    server_module("taggram.service.api.schemas")
    server_module("taggram.service.tagging")

    try:
        asyncio.run(_tag_local_all(repository, paths, options, report))
    except RepositoryError as error:
        raise typer.BadParameter(str(error), param_hint="--model / --repository") from error
    except SettingsError as error:  # TAGGRAM_PROVIDERS naming one that is not installed
        raise typer.BadParameter(str(error)) from error


@dataclass
class Report:
    """Prints each outcome (table or JSON line; errors on stderr) and draws its picture."""

    top_k: int
    json_output: bool
    pictures: dict[Path, Path]  # each input's --plot file (none without --plot)
    plot_tags: int
    failed: int = 0
    printed: int = 0

    def __call__(self, outcome: Outcome) -> None:
        if outcome.body is None:
            self.failed += 1
            if self.json_output:
                failure = {"code": outcome.code, "message": outcome.message}
                typer.echo(json.dumps({"file": str(outcome.path), "error": failure}))
            typer.echo(f"{outcome.path}: {outcome.code}: {outcome.message}", err=True)
            return
        body = {**outcome.body, "tags": outcome.body["tags"][: self.top_k]}
        if self.json_output:
            typer.echo(json.dumps({"file": printable(str(outcome.path)), **body}))
        else:
            typer.echo(("\n" if self.printed else "") + _table(outcome, self.top_k))
        self.printed += 1
        picture = self.pictures.get(outcome.path)
        if picture is not None:
            # matplotlib cannot draw a name that is not UTF-8 (lone surrogates) either
            title = f"{printable(outcome.path.name)} · {body['model']['name']}"
            try:
                plot_taggram(outcome.body, picture, rows=self.plot_tags or None, title=title)
            except (OSError, ValueError) as error:  # a full disk, a folder where the file goes
                self.failed += 1
                typer.echo(f"{outcome.path}: could not write {picture}: {error}", err=True)
                return
            typer.echo(f"taggram written to {picture}", err=True)


def duration_text(seconds: float) -> str:
    """A duration for the table's heading, in seconds: to a tenth from 1 s up (``"30.0"``), to
    two significant figures below (``"0.42"``, ``"0.010"``), where a tenth would read ``"0.0"``
    for a clip that holds audio."""
    rounded = float(f"{seconds:.2g}")
    if not 0 < rounded < 1:
        return f"{seconds:.1f}"
    return f"{rounded:.{1 - math.floor(math.log10(rounded))}f}"


def _table(outcome: Outcome, top_k: int) -> str:
    body = outcome.body
    assert body is not None
    audio, model = body["audio"], body["model"]
    # A name that is not UTF-8 escaped: a strict UTF-8 stdout (en_US.UTF-8) cannot write it.
    lines = [
        f"{printable(str(outcome.path))}  ({duration_text(audio['duration_seconds'])} s, "
        f"{body['patches']} {'patch' if body['patches'] == 1 else 'patches'}, "
        f"{model['name']} {model['version']})"
    ]
    # The decoder's warnings (a truncated file, skipped packets) under the heading.
    lines += [f"  warning: {warning}" for warning in body.get("warnings", [])]
    tags = body["tags"][:top_k]
    width = max((len(item["tag"]) for item in tags), default=0)
    for item in tags:
        probability = float(item["probability"])
        bar = "█" * round(max(0.0, min(1.0, probability)) * BAR_WIDTH)
        lines.append(f"  {item['tag']:<{width}}  {probability:.3f}  {bar}")
    return "\n".join(lines)


def plot_paths(plot: Path, files: list[Path]) -> dict[Path, Path]:
    """Each input's picture for ``--plot out.png``: ``out.png`` for one input; for several,
    ``out-<stem>.png``, or ``out-<stem>-<extension>.png`` when inputs share a stem
    (``a/song.mp3``, ``b/song.wav``), then ``-2``, ``-3``... when they share both, so that no
    picture overwrites another."""
    if len(files) == 1:
        return {files[0]: plot}
    inputs = list(dict.fromkeys(files))  # a file given twice is drawn once
    stems = Counter(path.stem for path in inputs)
    pictures: dict[Path, Path] = {}
    used: set[str] = set()
    for path in inputs:
        shared = stems[path.stem] > 1 and path.suffix
        label = f"{path.stem}-{path.suffix.lstrip('.')}" if shared else path.stem
        name, count = label, 1
        while name in used:
            count += 1
            name = f"{label}-{count}"
        used.add(name)
        pictures[path] = plot.with_name(f"{plot.stem}-{name}{plot.suffix}")
    return pictures


@app.command("tag")
def tag(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="audio files to tag", show_default=False)
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model name (default: the service's)")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="tags listed per file")] = 5,
    url: Annotated[
        str | None,
        typer.Option(
            help="tag through the service at this root URL, http://host:port (default: TAGGRAM_URL)"
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="tag in-process even when TAGGRAM_URL is set")
    ] = False,
    repository: Annotated[
        Path,
        typer.Option(envvar="TAGGRAM_MODEL_REPOSITORY", help="model repository when in-process"),
    ] = DEFAULT_REPOSITORY,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="TAGGRAM_API_KEY", help="API key for --url (sent as Bearer)"),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="one JSON object per file and line: the /v1/tag response"),
    ] = False,
    with_taggram: Annotated[
        bool,
        typer.Option(
            "--taggram",
            help="with --json: each line also holds the taggram, every tag's probability per "
            "patch over time (/v1/tag?taggram=true)",
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="write the taggram picture here (several files: NAME-<file stem>.png, "
            "NAME-<stem>-<extension>.png for files sharing a stem)"
        ),
    ] = None,
    plot_tags: Annotated[
        int, typer.Option(min=0, help="rows of the picture: the best tags (0: all)")
    ] = 20,
) -> None:
    """Tag FILES and print their top tags; in-process unless --url or TAGGRAM_URL is given."""
    if url is not None and local:
        raise typer.BadParameter("give --url or --local, not both")
    target = url or (None if local else os.environ.get("TAGGRAM_URL") or None)
    problem = service_url_problem(target) if target is not None else None
    if problem is not None:
        # otherwise every file fails on its own with httpx's words, and the exit status is 1
        raise typer.BadParameter(problem)
    model = model.strip() if model is not None else None  # as the service and catalogue read it
    if model is not None and "," in model:  # /v1/tag then answers a list of results
        raise typer.BadParameter(
            f"{model!r}: tag with one model at a time; run taggram tag once per model",
            param_hint="'--model'",
        )
    if with_taggram and not json_output:
        raise typer.BadParameter(
            "the taggram is a table of numbers per patch: give --json with it; --plot draws "
            "the taggram without --taggram",
            param_hint="'--taggram'",
        )
    if plot is not None:
        try:
            require_format(plot)  # fail before tagging, not after each file
            require_folder(plot)
        except (PlotUnavailableError, ValueError) as error:
            typer.echo(f"error: --plot: {error}", err=True)
            raise typer.Exit(2) from error
    # Every tag comes back (the list is cut to --top-k here), so a plot can rank all of them.
    options = {"model": model, "taggram": plot is not None or with_taggram}
    pictures = plot_paths(plot, files) if plot is not None else {}
    report = Report(top_k, json_output, pictures, plot_tags)
    if target is not None:
        for outcome in _tag_remote(target, files, options, api_key):
            report(outcome)
    else:
        _tag_local(repository, files, options, report)
    sys.stdout.flush()
    if report.failed:
        raise typer.Exit(1)
