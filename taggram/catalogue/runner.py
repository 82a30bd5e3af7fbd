"""Drive a catalogue run: skip what the output already holds, tag the rest with bounded
concurrency, write each record the moment it is ready, and report progress and a summary.

The work goes to a :class:`Backend`: ``taggram.catalogue.remote.RemoteBackend`` sends files to a
service URL with the retrying async client; ``taggram.catalogue.local.LocalBackend`` runs the
service's own pipeline in-process. Both turn every outcome into a
:class:`~taggram.catalogue.records.Record` through the same two functions
(:func:`~taggram.catalogue.records.success`, :func:`~taggram.catalogue.records.failure`), so a bad
file becomes an error record and never stops the run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from tqdm import tqdm

from taggram.catalogue import records
from taggram.catalogue.records import Record
from taggram.catalogue.sources import Track, is_special_file
from taggram.catalogue.writers import (
    Appender,
    Format,
    OutputError,
    finalize,
    iter_records,
    open_appender,
)


@dataclass(frozen=True)
class JobOptions:
    """What every track is tagged with."""

    model: str | None = None
    top_k: int = 10
    embeddings: str | None = None


def model_name_problem(model: str | None) -> str | None:
    """What makes ``--model`` unusable whatever the service serves, in one sentence, or
    ``None``: an empty name (``A,,B``), or several models (``/v1/tag`` then answers a list of
    results, one per model, which no record holds)."""
    if model is None:
        return None
    names = [part.strip() for part in model.split(",")]
    if not all(names):
        return f"--model {model!r} names an empty model"
    if len(names) > 1:
        return (
            f"--model {model!r}: a record holds one model's tags; run the catalogue once per "
            f"model, each into its own --output"
        )
    return None


def options_problem(
    options: JobOptions, default_model: str, embedding_outputs: dict[str, list[str]]
) -> str | None:
    """What makes ``options`` impossible for the served models, in one sentence, or ``None``.

    ``embedding_outputs`` maps each served model's name to its embedding layers (``GET
    /v1/models``, or the local repository); ``default_model`` is used when ``options.model`` is
    unset. Checked before anything is sent: otherwise every track would fail alike.
    """
    problem = model_name_problem(options.model)
    if problem is not None:
        return problem
    name = (options.model or default_model).strip()
    if name not in embedding_outputs:
        return (
            f"--model {options.model!r}: no model named {name!r}; "
            f"served: {', '.join(sorted(embedding_outputs))}"
        )
    layers = embedding_outputs[name]
    if options.embeddings is not None and options.embeddings not in layers:
        return (
            f"--embeddings {options.embeddings!r}: {name} has no such layer; its layers: "
            f"{', '.join(layers) or 'none'}"
        )
    return None


class Backend(Protocol):
    """Tags one track; never raises for a problem with the track or the service."""

    async def tag(self, track: Track) -> Record: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def counted(number: int, noun: str) -> str:
    """``1 track``, ``2 tracks``: a count with its noun in the singular or the plural."""
    return f"{number} {noun if number == 1 else noun + 's'}"


@dataclass
class Summary:
    """What a run did; ``failures`` keeps every failed record for the report."""

    total: int = 0
    skipped: int = 0
    tagged_before: int = 0  # of the skipped tracks, those an earlier run tagged (the rest failed)
    left: int = 0  # pending tracks that --limit left for a later run
    done: int = 0
    audio_seconds: float = 0.0
    failures: list[Record] = field(default_factory=list)
    elapsed: float = 0.0
    not_audio: list[str] = field(default_factory=list)  # files of the folder that are not audio
    not_regular: list[str] = field(default_factory=list)  # pipes, sockets, devices named as audio

    def add(self, record: Record) -> None:
        """Count one finished record."""
        if record.status == "ok":
            self.done += 1
            self.audio_seconds += record.duration_s or 0.0
        else:
            self.failures.append(record)

    @property
    def retryable(self) -> int:
        """Failed records that a later run will try again."""
        return sum(1 for record in self.failures if record.error and record.error.retryable)

    @property
    def tagged_nothing(self) -> bool:
        """Whether no track is tagged, by this run or an earlier one, while some failed (in this
        run, or for good in an earlier one): every file unreadable or refused, for which the
        command exits 1, as ``taggram tag`` does. A resumed run whose tracks an earlier run
        tagged is not, nor a run of no tracks at all."""
        failed = len(self.failures) + self.skipped - self.tagged_before
        return self.done == 0 and self.tagged_before == 0 and failed > 0

    def report(self, examples: int = 3) -> str:
        """A few lines for a person: counts, speed, and failures grouped by reason."""
        rate = self.done / self.elapsed if self.elapsed else 0.0
        realtime = self.audio_seconds / self.elapsed if self.elapsed else 0.0
        lines = [
            f"catalogue: {counted(self.total, 'track')}; done {self.done}, "
            f"failed {len(self.failures)}, skipped {self.skipped} (already in the output)"
            + (f", left {self.left} for the next run (--limit)" if self.left else ""),
            f"  {self.elapsed:.1f} s, {rate:.2f} files/s, {self.audio_seconds / 3600:.2f} "
            f"audio-hours ({realtime:.1f} audio-hours per hour)",
        ]
        if self.not_audio:
            skipped = counted(len(self.not_audio), "file")
            lines.append(f"  not audio: {skipped} skipped (by extension)")
            lines += _first(self.not_audio, examples)
        if self.not_regular:
            skipped = counted(len(self.not_regular), "file")
            lines.append(
                f"  not a regular file: {skipped} skipped (a named pipe, socket or device; "
                "never opened)"
            )
            lines += _first(self.not_regular, examples)
        by_code: dict[str, list[Record]] = defaultdict(list)
        for record in self.failures:
            assert record.error is not None
            by_code[record.error.code].append(record)
        for code, failed in sorted(by_code.items(), key=lambda item: -len(item[1])):
            errors = {record.id: record.error for record in failed if record.error is not None}
            messages = {key: error.message for key, error in errors.items()}
            again = " (re-tried on the next run)" if errors[failed[0].id].retryable else ""
            if len(set(messages.values())) == 1:
                lines.append(f"  failed {len(failed)} x {code}{again}: {messages[failed[0].id]}")
                lines += _first(list(messages), examples)
            else:  # one code, several reasons (text, unknown bytes...): each track says its own
                lines.append(f"  failed {len(failed)} x {code}{again}")
                lines += _first(
                    [f"{key}: {message}" for key, message in messages.items()], examples
                )
        return "\n".join(lines)


def _first(ids: list[str], examples: int) -> list[str]:
    """The first ``examples`` ids as indented lines, and how many more there are."""
    more = [f"    ... and {len(ids) - examples} more"] if len(ids) > examples else []
    return [f"    {track_id}" for track_id in ids[:examples]] + more


def tagged_with(model: str | None, layer: str | None) -> str:
    """``MTT_vgg``, ``MTT_musicnn with the penultimate embedding``: what a record was made with."""
    return f"{model}" + (f" with the {layer} embedding" if layer else " without embeddings")


def pending(
    tracks: list[Track],
    output: Path,
    fmt: Format,
    retry_failed: bool,
    options: JobOptions | None = None,
    versions: Counter[str] | None = None,
    earlier: Counter[str] | None = None,
) -> list[Track]:
    """Tracks the output does not settle yet: never tagged, failed for a transient reason, or
    (with ``retry_failed``) failed for any reason. The output is read one record at a time and
    only each id's outcome kept (a shard's records, probabilities and embeddings, would not fit
    a small pod's memory). ``versions``, when given, is filled with how many tagged records of
    the output each model version made; ``earlier`` with how many of ``tracks`` it settles, by
    status (``ok``: tagged, ``error``: failed for good).

    Raises:
        OutputError: ``options`` (its model the one the run will use, ``None`` when unknown)
            differ from those of a tagged record in the output: resume matches records by id
            only, so the run would skip those tracks and leave an output of two models.
    """
    tagged: set[str] = set()
    settled: dict[str, bool] = {}  # the latest failure of each id: a permanent one?
    for record in iter_records(output, fmt):
        if record.status == "ok":
            tagged.add(record.id)
            if versions is not None and record.version is not None:
                versions[record.version] += 1
            if options is not None:
                _check_resumable(output, record, options)
        else:
            settled[record.id] = record.settled and not retry_failed
    todo = []
    for track in tracks:
        if track.id in tagged:
            status = "ok"
        elif settled.get(track.id, False):
            status = "error"
        else:
            todo.append(track)
            continue
        if earlier is not None:
            earlier[status] += 1
    return todo


def _check_resumable(output: Path, record: Record, options: JobOptions) -> None:
    model = options.model
    if (model is None or (record.model or "").casefold() == model.casefold()) and (
        record.embedding_layer == options.embeddings
    ):
        return
    raise OutputError(
        f"{output} holds tracks tagged by {tagged_with(record.model, record.embedding_layer)} "
        f"({record.id}), this run tags with {tagged_with(model, options.embeddings)}: a resumed "
        "run skips every id already in the output, so give each model and --embeddings layer "
        "its own --output"
    )


def version_change(output: Path, versions: Counter[str], record: Record) -> str | None:
    """The warning for a resumed run whose service tags with another model version than records
    already in ``output`` (``versions``: how many records each version made), or ``None``. Not
    refused: models are upgraded on purpose, and each record names its own version."""
    old = {version: count for version, count in versions.items() if version != record.version}
    if record.status != "ok" or not old:
        return None
    held = ", ".join(f"{counted(count, 'record')} of version {v}" for v, count in old.items())
    return (
        f"taggram catalogue: warning: {output} holds {held} of {record.model}; this run's "
        f"records are version {record.version}: the output will mix versions"
    )


async def run(
    tracks: list[Track],
    backend: Backend,
    output: Path,
    fmt: Format,
    *,
    concurrency: int,
    retry_failed: bool = False,
    limit: int | None = None,
    progress: bool | None = None,
    options: JobOptions | None = None,
) -> Summary:
    """Tag what ``output`` lacks, at most ``concurrency`` tracks in flight, then compact it.
    ``options``, when given, must be those the output's tagged records were made with (the
    model resolved to the default when known); otherwise :class:`OutputError` (see
    :func:`pending`) before anything is sent."""
    versions: Counter[str] = Counter()
    earlier: Counter[str] = Counter()
    todo = pending(tracks, output, fmt, retry_failed, options, versions, earlier)
    summary = Summary(
        total=len(tracks), skipped=len(tracks) - len(todo), tagged_before=earlier["ok"]
    )
    todo = todo[:limit] if limit is not None else todo
    summary.left = summary.total - summary.skipped - len(todo)
    queue = iter(todo)  # shared by the workers; next() never awaits, so no lock is needed
    warned = False  # a version change is said once, at the first record that shows it

    async def worker(appender: Appender, bar: tqdm[None], started: float) -> None:
        nonlocal warned
        for track in queue:
            began = time.monotonic()
            # A manifest's row (a folder's scan skips these); off the loop, as the backends'
            # reads are: a stat on network storage can block.
            if await asyncio.to_thread(is_special_file, track.path):
                record = records.not_regular(track)
            else:
                record = await backend.tag(track)
            record = record.model_copy(update={"tagging_s": time.monotonic() - began})
            if not warned and (warning := version_change(output, versions, record)) is not None:
                warned = True
                tqdm.write(warning, file=sys.stderr)  # above the progress bar, not through it
            appender.write(record)
            summary.add(record)
            hours_per_second = summary.audio_seconds / 3600 / max(time.monotonic() - started, 1e-9)
            bar.set_postfix_str(
                f"{hours_per_second:.4f} audio-h/s, {len(summary.failures)} failed", refresh=False
            )
            bar.update()

    async with backend:  # loading models (--local) is not counted in the run's time
        started = time.monotonic()
        # disable=None: tqdm shows the bar only on a terminal, keeping pod logs clean.
        disable = None if progress is None else not progress
        bar = tqdm(total=len(todo), unit="file", disable=disable, smoothing=0.1, mininterval=0.5)
        try:
            with open_appender(output, fmt) as appender:
                workers = (worker(appender, bar, started) for _ in range(max(1, concurrency)))
                await asyncio.gather(*workers)
        finally:
            bar.close()
            summary.elapsed = time.monotonic() - started
            finalize(output, fmt)
    return summary
