"""``taggram models create|list|delete``: custom taggers from the command line, and the list
of every model served (the repository's taggers and feature extractors beside custom models).

Through a running service (``--url``, or ``TAGGRAM_URL``) or in-process on the local model
repository and custom-models folder (``--local``, no server; the same code as the service).
The manifest is CSV with ``path`` and ``label`` columns, or JSONL with ``path`` and ``label``
keys; relative paths are relative to the manifest's folder; a label holding several tags
separates them with ``|`` (in JSONL it may also be a list).

Heavy imports (the service stack) happen inside the ``--local`` code paths only.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from taggram.client import (
    APIError,
    AuthenticationFailedError,
    ConnectionFailedError,
    NotAServiceError,
    RetryPolicy,
    TaggramClient,
    service_url_problem,
)

if TYPE_CHECKING:
    from taggram.service.settings import Settings

app = typer.Typer(
    help="Custom taggers: create from labelled examples, delete; list every model served.",
    rich_markup_mode=None,
)

UrlOption = Annotated[
    str | None, typer.Option(envvar="TAGGRAM_URL", help="service URL (or use --local)")
]
LocalOption = Annotated[
    bool, typer.Option(help="work in-process on the local folders (TAGGRAM_* settings), no server")
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        envvar="TAGGRAM_API_KEY",
        help="API key sent as a bearer token (admin scope to create and delete)",
    ),
]
TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # creation embeds every example
# UTF-8 whatever the locale, a leading byte-order mark dropped: Excel's "CSV UTF-8" starts with
# one, which made the first column '\ufeffpath' (as the catalogue's manifests read it).
MANIFEST_ENCODING = "utf-8-sig"


def read_manifest(path: Path) -> list[tuple[Path, str]]:
    """``(audio path, label)`` rows of a CSV or JSONL manifest; raises ``typer.BadParameter``
    (not a manifest, no rows, or a row without a label)."""
    rows: list[tuple[str, Any]] = []
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            lines = path.read_text(encoding=MANIFEST_ENCODING).splitlines()
            for number, line in enumerate(lines, 1):
                if line.strip():
                    item = json.loads(line)
                    if not isinstance(item, dict):
                        raise ValueError(f"line {number} is not an object")
                    rows.append((str(item["path"]), item.get("label")))
        else:
            with path.open(newline="", encoding=MANIFEST_ENCODING) as handle:
                reader = csv.DictReader(handle)
                columns = [name.strip() for name in reader.fieldnames or []]
                if "path" not in columns or "label" not in columns:
                    raise ValueError(f"the header must name path and label, found {columns}")
                reader.fieldnames = columns
                rows = [(row["path"], row["label"]) for row in reader]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise typer.BadParameter(
            f"{path}: not a manifest with path and label ({error!r})"
        ) from error
    if not rows:
        raise typer.BadParameter(f"{path} lists no examples")
    for number, (file, label) in enumerate(rows, 1):
        # A CSV row without its label field gives None, a JSONL one null: str() made them a
        # class named "None" that the model then learned.
        if label is None or not str(label).strip() or label == []:
            raise typer.BadParameter(f"{path}: example {number} ({file}) has no label")
    folder = path.parent
    return [
        (folder / file, "|".join(label) if isinstance(label, list) else str(label))
        for file, label in rows
    ]


def _require_files(manifest: Path, rows: list[tuple[Path, str]]) -> None:
    """Refuse (usage error) a manifest naming files that are absent, before anything is sent."""
    missing = [str(file) for file, _ in rows if not file.is_file()]
    if missing:
        raise typer.BadParameter(
            f"{manifest}: {len(missing)} examples are not files: {missing[:5]}"
        )


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _send(method: str, url: str, **options: Any) -> httpx.Response:
    """One request to the service; a service that cannot be reached is one line and exit 1."""
    try:
        return httpx.request(method, url, timeout=TIMEOUT, **options)
    except httpx.TransportError as error:
        typer.echo(f"cannot reach the service at {url}: {error}", err=True)
        raise typer.Exit(1) from error


def _fail(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        message = f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        message = f"{response.status_code}: {response.text[:500]}"
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _need_target(url: str | None, local: bool) -> None:
    if bool(url) == local:
        raise typer.BadParameter("give exactly one of --url (or TAGGRAM_URL) and --local")
    if url and (problem := service_url_problem(url)) is not None:
        raise typer.BadParameter(problem, param_hint="'--url'")


def _require_service(url: str, api_key: str | None) -> dict[str, Any]:
    """The service's ``GET /v1/models`` listing, asked once before anything is uploaded.

    A URL where no taggram service answers (one with ``/v1`` on it, another web server: a 404 or
    not JSON) is a usage error (exit 2); it printed ``404 not_found: Not Found``, and ``list``
    nothing at all. An unreachable service, or an error answer (a refused key), is one line and
    exit 1, as :func:`_fail` prints the commands' own requests' errors.
    """
    with TaggramClient(url, api_key=api_key, retry=RetryPolicy(attempts=1)) as client:
        try:
            return client.models()
        except NotAServiceError as error:
            raise typer.BadParameter(str(error), param_hint="'--url'") from error
        except ConnectionFailedError as error:
            typer.echo(f"cannot reach the service at {error}", err=True)
            raise typer.Exit(1) from error
        except AuthenticationFailedError as error:  # the HTTP wording names no option to give
            typer.echo(f"--api-key (TAGGRAM_API_KEY): the service refused it: {error}", err=True)
            raise typer.Exit(1) from error
        except APIError as error:
            typer.echo(str(error), err=True)  # "{status} {code}: {message}", as _fail prints
            raise typer.Exit(1) from error


def _summary(record: dict[str, Any]) -> str:
    """A custom model's record in one line: members, classes, examples, estimate, time taken."""
    estimate = record["estimate"]
    value = estimate["value"]
    figure = "not estimated" if value is None else f"{estimate['metric']} {value:.3f}"
    members = record.get("members") or [record]  # a version 1 record is its single pair
    what = " + ".join(f"{m['classifier']} on {m['features']}" for m in members)
    return (
        f"{what}, "
        f"{len(record['classes'])} classes from {record['examples']} examples; {figure} "
        f"(chance {estimate['chance']:.3f}); {record['seconds']['total']:.1f} s"
    )


def _network_line(model: dict[str, Any]) -> str:
    """A repository model (its metadata as JSON) in one line: ``name: kind`` (``tagger`` with its
    tag count, or ``feature extractor``, which has no tags) and its embeddings, the features a
    custom model may use (``--features MODEL.OUTPUT``)."""
    if model.get("probabilities_output") is None:
        kind = "feature extractor"
    else:
        kind = f"tagger, {len(model['tags'])} tags"
    embeddings = ", ".join(model.get("embedding_outputs") or []) or "none"
    return f"{model['name']}: {kind}; embeddings {embeddings}"


def _repository_models(settings: Settings) -> list[dict[str, Any]]:
    """The metadata (as JSON) of the repository models a service with ``settings`` serves:
    ``TAGGRAM_MODELS``, or all, in the service's order. A repository that cannot be read is a
    warning on stderr and no models: the custom models are still listed.

    Raises:
        typer.BadParameter: ``TAGGRAM_MODELS`` (or the default model) names a model the
            repository lacks, in the service's words (exit 2): the list left it out without a
            word, while a service with these settings refuses to start.
    """
    from taggram.repository import RepositoryError, load_repository
    from taggram.service.settings import served_entries

    try:  # hashes not checked: listing reads no network
        entries = load_repository(settings.model_repository, verify_hashes=False)
    except RepositoryError as error:
        typer.echo(f"warning: {error}", err=True)
        return []
    try:
        served = served_entries(settings, entries)
    except RepositoryError as error:
        raise typer.BadParameter(str(error), param_hint="--local") from error
    return [entry.metadata.model_dump(mode="json") for entry in served.values()]


def _local_settings() -> Settings:
    """The ``TAGGRAM_*`` settings for ``--local``; a variable with a bad value is a usage error
    (exit 2, one line), not pydantic's traceback."""
    from taggram.service.settings import SettingsError, environment_settings

    try:
        return environment_settings()
    except SettingsError as error:
        raise typer.BadParameter(str(error), param_hint="--local") from error


async def _create_local(
    settings: Settings,
    name: str,
    rows: list[tuple[Path, str]],
    fields: dict[str, str | None],
    classes: list[str],
) -> dict[str, Any]:
    from taggram.service.custom.creation import CreateRequest, Example
    from taggram.service.tagging import Tagger

    examples = [Example(path.name, path.read_bytes(), label) for path, label in rows]
    request = CreateRequest(
        name=name,
        examples=examples,
        features=fields["features"],
        classifier=fields["classifier"],
        description=fields["description"] or "",
        classes=classes or None,
    )
    async with Tagger(settings) as tagger:
        record = await tagger.create_custom(request)
    return record.model_dump(mode="json")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="the new model's name (letters, digits, _ and -)")],
    manifest: Annotated[Path, typer.Argument(help="CSV or JSONL of path and label")],
    url: UrlOption = None,
    local: LocalOption = False,
    features: Annotated[
        str | None, typer.Option(help="auto, or comma-separated model.output names or model names")
    ] = None,
    classifier: Annotated[
        str | None, typer.Option(help="auto, or comma-separated prototypes, logistic, svm, knn")
    ] = None,
    description: Annotated[str | None, typer.Option(help="free text kept with the model")] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="a class you mean, repeated for each (--class tone --class noise): every label "
            "must be one of them and each needs an example (catches typos)",
        ),
    ] = None,
    api_key: KeyOption = None,
) -> None:
    """Create custom tagger NAME from the examples listed in MANIFEST."""
    _need_target(url, local)
    rows = read_manifest(manifest)
    _require_files(manifest, rows)
    fields = {"features": features, "classifier": classifier, "description": description}
    if local:
        from taggram.repository import RepositoryError
        from taggram.service.errors import TaggramError
        from taggram.service.settings import SettingsError

        try:
            record = asyncio.run(
                _create_local(_local_settings(), name, rows, fields, classes or [])
            )
        except TaggramError as error:
            typer.echo(f"{error.code}: {error.message}", err=True)
            raise typer.Exit(1) from error
        except (RepositoryError, SettingsError) as error:  # no models to embed with: usage
            raise typer.BadParameter(str(error), param_hint="--local") from error
    else:
        _require_service(str(url), api_key)
        data: dict[str, Any] = {"name": name, "labels": [label for _, label in rows]}
        data.update({key: value for key, value in fields.items() if value})
        if classes:
            data["classes"] = classes
        files = [("files", (path.name, path.read_bytes())) for path, _ in rows]
        response = _send(
            "POST", f"{url}/v1/models", data=data, files=files, headers=_headers(api_key)
        )
        _fail(response)
        record = response.json()
    for warning in record.get("warnings", []):  # decoding problems, likely mistakes
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"{record['name']}: {_summary(record)}")


@app.command("list")
def list_models(
    url: UrlOption = None, local: LocalOption = False, api_key: KeyOption = None
) -> None:
    """List every model served, one a line: the repository's taggers (tag count) and feature
    extractors (no tags), each with its embeddings, then the custom models (custom: features,
    classifier, classes, estimate)."""
    _need_target(url, local)
    if local:
        from taggram.service.custom import storage

        settings = _local_settings()
        networks = _repository_models(settings)
        records = [
            storage.read(path)[0].model_dump(mode="json")
            for path in storage.scan(settings.custom_models).values()
        ]
    else:
        served = _require_service(str(url), api_key)["models"]
        networks = [model for model in served if model["kind"] != "custom"]
        records = [
            {**model["training"], "name": model["name"], "classes": model["tags"]}
            for model in served
            if model["kind"] == "custom"
        ]
    for model in networks:
        typer.echo(_network_line(model))
    for record in sorted(records, key=lambda item: item["name"]):
        typer.echo(f"{record['name']}: custom, {_summary(record)}")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="the custom model to delete")],
    url: UrlOption = None,
    local: LocalOption = False,
    api_key: KeyOption = None,
) -> None:
    """Delete custom model NAME."""
    _need_target(url, local)
    if local:
        from taggram.service.custom import storage
        from taggram.service.errors import TaggramError

        try:
            storage.remove(_local_settings().custom_models, name)
        except TaggramError as error:
            typer.echo(f"{error.code}: {error.message}", err=True)
            raise typer.Exit(1) from error
    else:
        _require_service(str(url), api_key)
        _fail(_send("DELETE", f"{url}/v1/models/{name}", headers=_headers(api_key)))
    typer.echo(f"deleted {name}")
