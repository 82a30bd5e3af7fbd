"""Creating a custom tagger: check the request, embed the examples, choose, estimate, store.

The steps, each bounded:

1. :func:`plan` checks everything that needs no audio (name, labels, classes, limits, features
   and classifiers asked for) and fails fast with a 4xx naming the problem.
2. The examples are decoded off the event loop and embedded by the base networks' batchers, a
   few at a time (:data:`EXAMPLES_IN_FLIGHT`), so tagging requests interleave with them instead of
   waiting behind a whole creation. Each base network runs once per example and yields every
   output at once. A failing example fails the creation with its own error code and a message
   naming the file.
3. Selection, the accuracy estimate and the final fit run in a worker thread
   (:mod:`taggram.service.custom.selection`).
4. The model is written atomically to the custom-models folder (:mod:`.storage`).

Labels: one per example, in the order of the files. A label holding several tags separated by
:data:`LABEL_SEPARATOR` (``"rock|guitar"``) makes the model multi-label (each tag scored on its
own); otherwise the model is single-label (the classes' probabilities sum to 1). A label or class
that is a JSON array (``["rock"]``, a client encoding a list as one form field) is refused, not
stored as a tag with its brackets and quotes.
"""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import Field
from threadpoolctl import threadpool_limits

from taggram.repository import ModelMetadata
from taggram.service.audio.decode import AudioSource
from taggram.service.custom import advice, features, selection, storage
from taggram.service.custom.ensemble import Ensemble
from taggram.service.custom.storage import (
    CandidateScore,
    CustomRecord,
    EstimateRecord,
    MemberRecord,
)
from taggram.service.errors import (
    InvalidExamplesError,
    TaggramError,
    TooManyExamplesError,
    TooManyModelsError,
)
from taggram.service.settings import Settings

LABEL_SEPARATOR = "|"
# Examples embedded at once: enough to fill a batch of the base networks (1-2 patches each),
# few enough that a tagging request queued behind them waits about one batch.
EXAMPLES_IN_FLIGHT = 8


@dataclass(frozen=True)
class Embedded:
    """One file's clip embeddings, ``{base: {output: float32 [dim]}}``, and what went wrong
    while decoding it although it decoded (a stream that stops early), as ``/v1/tag`` reports
    in ``warnings``."""

    embeddings: dict[str, dict[str, np.ndarray]]
    warnings: tuple[str, ...]
    # {base: its padding warning}, for each base whose one patch the file is shorter than
    padded: dict[str, str]


# (example source, base model names) -> the example's embeddings, decoding and padding warnings
Embed = Callable[[AudioSource, Sequence[str]], Awaitable[Embedded]]


class CreatedModel(CustomRecord):
    """The answer to a creation: the stored record and what went wrong with the examples
    although they were used (not stored: it concerns this upload, not the model)."""

    warnings: list[str] = Field(
        default_factory=list,
        description="decoding problems of examples that were still used, each naming its "
        "example (a stream that stops early), then examples shorter than one patch of a network "
        "the model reads (partly zero padding), then likely mistakes in the examples: the same "
        "audio more than once, classes differing only in case, an estimate not above chance "
        "(empty when all went well)",
    )


# A tag and a description are a person's words, stored in the record and repeated in every
# answer, listing and the page: without a bound, a text field's 1 MiB each (times 50 classes).
MAX_TAG_CHARS = 100
MAX_DESCRIPTION_CHARS = 1000


@dataclass(frozen=True)
class Example:
    """One uploaded example: its file name, its audio and its label (tags joined by ``|``)."""

    filename: str
    source: AudioSource
    label: str


@dataclass(frozen=True)
class CreateRequest:
    """What ``POST /v1/models`` (or ``taggram models create --local``) asks for."""

    name: str
    examples: list[Example]
    features: str | None = None  # "auto", a comma-separated list, or None (auto)
    classifier: str | None = None  # "auto", one or several comma-separated, or None (auto)
    description: str = ""
    classes: list[str] | None = None  # declared classes; each needs an example


@dataclass(frozen=True)
class Plan:
    """A checked request: targets, classes and the candidates to choose from."""

    request: CreateRequest
    classes: list[str]
    targets: np.ndarray  # [n_examples, n_classes] bool
    multi_label: bool
    candidates: list[selection.Candidate]

    @property
    def bases(self) -> list[str]:
        """The base networks the candidates need, each once, in first-use order."""
        return features.networks(c.feature for c in self.candidates)


def tag_text(text: str) -> str:
    """A tag as stored: without surrounding white space, in Unicode NFC, so that ``"café"``
    typed with a precomposed ``é`` and with ``e`` + combining accent (as macOS file names and
    some keyboards give it) is one tag, as it looks; case is kept."""
    return unicodedata.normalize("NFC", text.strip())


def split_label(label: str) -> list[str]:
    """The tags of one label: ``"rock| guitar"`` → ``["rock", "guitar"]`` (each by
    :func:`tag_text`, duplicates dropped)."""
    return list(dict.fromkeys(tag_text(t) for t in label.split(LABEL_SEPARATOR) if t.strip()))


def json_array(text: str) -> list[Any] | None:
    """The list ``text`` spells in JSON (``'["rock", "pop"]'``), else None (``"[live]"``, a tag
    like any other)."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    return value if isinstance(value, list) else None


def _refuse_json_arrays(request: CreateRequest) -> None:
    """A label or class that is a JSON array would be one tag, brackets and quotes included."""
    for index, example in enumerate(request.examples):
        items = json_array(example.label)
        if items is None:
            continue
        meant = LABEL_SEPARATOR.join(map(str, items))
        raise InvalidExamplesError(
            f"the label {example.label!r} of example {index + 1} ({example.filename!r}) is a "
            "JSON array, which would be one tag with its brackets and quotes: a label is plain "
            "text, one per file (one 'labels' field per file, in the files' order), several "
            f"tags of one file separated by {LABEL_SEPARATOR!r}" + (f": {meant!r}" if meant else "")
        )
    for name in request.classes or []:
        if json_array(name) is not None:
            raise InvalidExamplesError(
                f"the class {name!r} is a JSON array: a class is plain text, one 'classes' "
                "field per class"
            )


def _targets(request: CreateRequest, settings: Settings) -> tuple[list[str], np.ndarray, bool]:
    _refuse_json_arrays(request)
    tags = []
    for index, example in enumerate(request.examples):
        parts = split_label(example.label)
        if not parts:
            raise InvalidExamplesError(f"example {index + 1} ({example.filename!r}) has no label")
        tags.append(parts)
    seen = list(dict.fromkeys(tag for parts in tags for tag in parts))
    classes = [tag_text(c) for c in request.classes] if request.classes else sorted(seen)
    # Before the checks below, which compare every pair of classes and quote them in the answer.
    if len(classes) > settings.max_custom_classes:
        raise InvalidExamplesError(
            f"{len(classes)} classes, more than the limit of {settings.max_custom_classes}"
        )
    for tag in (*seen, *classes):
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidExamplesError(
                f"the tag {tag[:32]!r}... has {len(tag)} characters, more than the limit of "
                f"{MAX_TAG_CHARS}"
            )
        # A NUL, tab or line break inside a label is a manifest or form read wrongly (a TSV
        # read as CSV, a binary field), never a tag a person meant: stored, it would come back
        # in every answer, CSV row and terminal line.
        if any(unicodedata.category(char) == "Cc" for char in tag):
            raise InvalidExamplesError(
                f"the tag {tag!r} holds a control character (a tab, line break or NUL): "
                "a tag is one line of text"
            )
    repeated = sorted({tag for tag in classes if classes.count(tag) > 1})
    if repeated:
        raise InvalidExamplesError(f"classes {repeated} are declared more than once")
    undeclared = [tag for tag in seen if tag not in classes]
    if undeclared:
        raise InvalidExamplesError(f"labels {undeclared} are not among the classes {classes}")
    missing = [tag for tag in classes if tag not in seen]
    if missing:
        raise InvalidExamplesError(f"classes {missing} have no example")
    if len(classes) < 2:
        raise InvalidExamplesError(
            f"a tagger needs at least two classes; every example is labelled {classes}"
        )
    multi_label = any(len(parts) > 1 for parts in tags)
    column = {tag: i for i, tag in enumerate(classes)}
    targets = np.zeros((len(tags), len(classes)), bool)
    for row, parts in enumerate(tags):
        targets[row, [column[tag] for tag in parts]] = True
    if multi_label:
        always = [classes[j] for j in range(len(classes)) if targets[:, j].all()]
        if always:
            raise InvalidExamplesError(
                f"tags {always} are on every example: a multi-label tag needs examples without it"
            )
    return classes, targets, multi_label


def plan(
    request: CreateRequest,
    settings: Settings,
    models: dict[str, ModelMetadata],
    custom_count: int,
) -> Plan:
    """Check a request against the limits and the loaded ``models`` (repository and custom)."""
    storage.check_name(request.name)
    storage.check_free(request.name, models)
    if custom_count >= settings.max_custom_models:
        raise TooManyModelsError(
            f"the service holds {custom_count} custom models, the limit; delete one first"
        )
    if len(request.examples) > settings.max_custom_examples:
        raise TooManyExamplesError(
            f"{len(request.examples)} examples, more than the limit of "
            f"{settings.max_custom_examples}"
        )
    if len(request.examples) < 2:
        raise InvalidExamplesError("a tagger needs at least two examples (files)")
    if len(request.description) > MAX_DESCRIPTION_CHARS:
        raise InvalidExamplesError(
            f"the description has {len(request.description)} characters, more than the limit "
            f"of {MAX_DESCRIPTION_CHARS}"
        )
    classes, targets, multi_label = _targets(request, settings)
    one_shot = selection.smallest_class(targets) < 2
    chosen = features.parse_features(request.features, models, one_shot)
    classifiers = features.parse_classifiers(request.classifier)
    return Plan(
        request=request,
        classes=classes,
        targets=targets,
        multi_label=multi_label,
        candidates=features.candidates(chosen, classifiers),
    )


async def embed_examples(
    plan: Plan, embed: Embed
) -> tuple[dict[str, np.ndarray], list[str], list[dict[str, str]]]:
    """Every candidate feature of every example, ``{feature: [n_examples, dim]}``, the
    examples' decoding warnings, each naming its example (``example 2 ('a.mp3'): ...``), and
    each example's padding warnings by base (:attr:`Embedded.padded`)."""
    slots = asyncio.Semaphore(EXAMPLES_IN_FLIGHT)

    async def one(index: int, example: Example) -> Embedded:
        async with slots:
            try:
                return await embed(example.source, plan.bases)
            except TaggramError as error:
                named = type(error)(
                    f"example {index + 1} ({example.filename!r}): {error.message}",
                    retry_after_seconds=error.retry_after_seconds,
                )
                raise named from error

    tasks = [asyncio.ensure_future(one(i, e)) for i, e in enumerate(plan.request.examples)]
    try:
        rows = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # one example failed: stop embedding the others...
        if tasks:
            await asyncio.wait(tasks)  # ...before the caller closes the uploads they read
    stacked = {}
    for feature in dict.fromkeys(c.feature for c in plan.candidates):
        network, output = features.split(feature)
        stacked[feature] = np.stack([row.embeddings[network][output] for row in rows])
    warnings = [
        f"example {index + 1} ({example.filename!r}): {warning}"
        for index, (example, row) in enumerate(zip(plan.request.examples, rows, strict=True))
        for warning in row.warnings
    ]
    return stacked, warnings, [row.padded for row in rows]


def padding_warnings(
    filenames: Sequence[str],
    padded: Sequence[dict[str, str]],
    chosen: Sequence[str],
    models: dict[str, ModelMetadata],
) -> list[str]:
    """One warning per example shorter than a patch of the networks the model ``chosen`` reads
    (its members' bases), for the longest such patch: its embedding is then partly zero padding.
    ``padded``: each example's :attr:`Embedded.padded`. A candidate network the selection left
    out does not matter to the model, so it is not named."""
    longest = sorted(
        chosen, key=lambda name: -models[name].patch.span_samples / models[name].sample_rate
    )
    warnings = []
    for index, (filename, row) in enumerate(zip(filenames, padded, strict=True)):
        for name in longest:
            if name in row:
                warnings.append(f"example {index + 1} ({filename!r}): {row[name]}")
                break
    return warnings


@dataclass(frozen=True)
class Fitted:
    """The members fitted on every example, the selection that chose them and its honest
    estimate."""

    ensemble: Ensemble
    choice: selection.Selection
    estimate: selection.Estimate


def fit(plan: Plan, embedded: dict[str, np.ndarray]) -> Fitted:
    """Choose, estimate and fit (blocking, CPU-bound: run in a worker thread)."""
    multi = plan.multi_label
    # Hundreds of small fits: one BLAS thread each is many times faster than threads fighting
    # over cores that ONNX Runtime and decoding also use (measured: 2.5 ms against 250 ms).
    with threadpool_limits(limits=1):
        chosen = selection.select(embedded, plan.targets, plan.candidates, multi)
        estimate = selection.estimate(embedded, plan.targets, plan.candidates, multi)
        ensemble = selection.fit(embedded, plan.targets, chosen, multi)
    return Fitted(ensemble=ensemble, choice=chosen, estimate=estimate)


def record(
    plan: Plan, fitted: Fitted, base: ModelMetadata, seconds: dict[str, float]
) -> CustomRecord:
    """The stored record of a new custom model: classes, counts, choice, estimate, timings."""
    members = fitted.choice.members
    counts = plan.targets.sum(axis=0)
    estimate = fitted.estimate
    return CustomRecord(
        id=uuid.uuid4().hex,
        name=plan.request.name,
        description=plan.request.description,
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        base=base.name,
        base_version=base.version,
        bases=features.networks(m.feature for m in members),
        features=",".join(fitted.ensemble.features),
        classifier=members[0].classifier if len(members) == 1 else "ensemble",
        members=[
            MemberRecord(features=m.feature, classifier=m.classifier, weight=w, temperature=t)
            for m, w, t in zip(
                members,
                fitted.choice.weights or [1.0] * len(members),
                fitted.choice.temperatures or [1.0] * len(members),
                strict=True,
            )
        ],
        multi_label=plan.multi_label,
        label_separator=LABEL_SEPARATOR,
        classes=plan.classes,
        examples_per_class={c: int(n) for c, n in zip(plan.classes, counts, strict=True)},
        examples=len(plan.request.examples),
        selection=fitted.choice.method,
        candidates=[
            CandidateScore(features=c.feature, classifier=c.classifier, score=round(s, 4))
            for c, s in fitted.choice.scores.items()
        ],
        estimate=EstimateRecord(
            value=None if estimate.value is None else round(estimate.value, 4),
            metric=estimate.metric,
            method=estimate.method,
            chance=round(estimate.chance, 4),
            folds=estimate.folds,
        ),
        seconds={key: round(value, 3) for key, value in seconds.items()},
    )


async def create(
    plan_: Plan, embed: Embed, models: dict[str, ModelMetadata], settings: Settings
) -> tuple[CustomRecord, Ensemble, list[str]]:
    """Embed, fit, and write the model; returns its record, its fitted members (the caller
    registers it) and the warnings of its answer: the examples' decoding warnings (see
    :func:`embed_examples`), their padding warnings (:func:`padding_warnings`), then what
    :mod:`.advice` finds in the examples and the estimate."""
    started = time.perf_counter()
    embedded, decoding, padded = await embed_examples(plan_, embed)
    embedded_at = time.perf_counter()
    found = advice.case_warnings(plan_.classes)
    filenames = [example.filename for example in plan_.request.examples]
    tags = [[plan_.classes[j] for j in np.flatnonzero(row)] for row in plan_.targets]
    # Pairwise over every feature (0.06 s for 200 examples of all twelve features): off the loop.
    groups = await asyncio.to_thread(advice.same_audio, embedded)
    found += advice.same_audio_warnings(groups, filenames, tags)
    fitted = await asyncio.to_thread(fit, plan_, embedded)
    estimate = fitted.estimate
    found += advice.chance_warning(estimate.value, estimate.metric, estimate.chance)
    choice = fitted.choice
    if choice.method == "fallback":
        weights = dict(zip((m.feature for m in choice.members), choice.weights, strict=True))
        found += advice.one_shot_warnings(choice.members[0].classifier, weights)
    fitted_at = time.perf_counter()
    # Padding matters only in the networks the chosen members read, known now.
    chosen = list(dict.fromkeys(features.split(member.feature)[0] for member in choice.members))
    warnings = [*decoding, *padding_warnings(filenames, padded, chosen, models), *found]
    base = models[chosen[0]]
    seconds = {
        "features": embedded_at - started,
        "selection_and_fit": fitted_at - embedded_at,
        "total": time.perf_counter() - started,
    }
    result = record(plan_, fitted, base, seconds)
    arrays = fitted.ensemble.arrays()
    await asyncio.to_thread(storage.write, settings.custom_models, result, arrays)
    return result, fitted.ensemble, warnings
