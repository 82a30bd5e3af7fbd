"""Catalogue output files: JSONL (default), CSV or Parquet, written one record at a time.

Every record is flushed as soon as its track finishes, so a run killed at any point keeps all the
work done before it and the next run resumes from the file. JSONL and CSV are appended in place (a
line cut short by a kill is dropped on resume). Parquet cannot be appended to, so a Parquet run
appends to a JSONL journal beside the output (``<output>.journal.jsonl``) and writes the Parquet
file from it when the run ends. The end of every run also compacts the output to one record per id
(see :class:`taggram.catalogue.records.Winners`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from enum import StrEnum
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TextIO

from pydantic import ValidationError

from taggram.catalogue.records import ErrorInfo, Record, TopTag, Winners


class Format(StrEnum):
    """Output formats: JSON Lines, CSV (probabilities as one JSON column) and Parquet."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


def infer_format(path: Path) -> Format:
    """The format named by the output's extension; JSONL when it names none."""
    suffix = path.suffix.lower().lstrip(".")
    return Format(suffix) if suffix in Format._value2member_map_ else Format.jsonl


# Parquet rows read or written at a time: a catalogue's output is never all in memory.
_PARQUET_ROWS = 256


def journal_path(path: Path) -> Path:
    """Where Parquet output is journalled as JSONL until the run finalises it."""
    return path.with_name(path.name + ".journal.jsonl")


CSV_COLUMNS = (
    "id",
    "path",
    "status",
    "model",
    "version",
    "duration_s",
    "warnings",
    "top_tags",
    "probabilities",
    "embedding_layer",
    "embedding",
    "error_code",
    "error_message",
    "error_retryable",
    "request_id",
    "tagging_s",
)


# The columns every CSV output has had (the others came later).
_CSV_REQUIRED = tuple(
    name for name in CSV_COLUMNS if name not in ("warnings", "request_id", "tagging_s")
)


def _csv_row(record: Record) -> dict[str, Any]:
    """Scalars as they are; lists and mappings as JSON, so a CSV row reads back losslessly."""
    data = record.model_dump(mode="json")
    error = data.pop("error") or {}
    for key in ("warnings", "top_tags", "probabilities", "embedding"):
        data[key] = json.dumps(data[key]) if data[key] is not None else ""
    return {
        **data,
        "error_code": error.get("code", ""),
        "error_message": error.get("message", ""),
        "error_retryable": error.get("retryable", ""),
    }


def _from_csv_row(row: dict[str, str]) -> Record:
    error = None
    if row["error_code"]:
        error = ErrorInfo(
            code=row["error_code"],
            message=row["error_message"],
            retryable=row["error_retryable"] == "True",
        )
    return Record.model_validate(
        {
            "id": row["id"],
            "path": row["path"],
            "status": row["status"],
            "model": row["model"] or None,
            "version": row["version"] or None,
            "duration_s": float(row["duration_s"]) if row["duration_s"] else None,
            # Absent from files written before the column was added.
            "warnings": json.loads(row["warnings"]) if row.get("warnings") else [],
            "top_tags": json.loads(row["top_tags"]) if row["top_tags"] else [],
            "probabilities": json.loads(row["probabilities"]) if row["probabilities"] else {},
            "embedding_layer": row["embedding_layer"] or None,
            "embedding": json.loads(row["embedding"]) if row["embedding"] else None,
            "error": error,
            # Absent from files written before the columns were added.
            "request_id": row.get("request_id") or None,
            "tagging_s": float(row["tagging_s"]) if row.get("tagging_s") else None,
        }
    )


def _complete_records(handle: BinaryIO, fmt: Format) -> Iterator[bytes]:
    """The whole records of a JSONL or CSV output open in binary, each as its bytes (newline
    included), in file order; a record cut short by a killed run is left out: a last line without
    its newline, or in CSV a quoted field still open (an id or path with a newline in it, cut
    after that newline)."""
    lines: list[bytes] = []
    quotes = 0
    for line in handle:
        if not line.endswith(b"\n"):
            return
        lines.append(line)
        if fmt is Format.csv:  # a newline inside quotes continues the record
            quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield b"".join(lines)
            lines, quotes = [], 0


def _drop_partial_record(path: Path, fmt: Format) -> None:
    """Cut a trailing record left unfinished by a killed run, so appends start a fresh one."""
    if not path.is_file():
        return
    with path.open("rb+") as handle:
        complete = sum(len(record) for record in _complete_records(handle, fmt))
        if complete < path.stat().st_size:
            handle.truncate(complete)


def _upgrade_csv(path: Path) -> None:
    """Rewrite a CSV output whose header predates a column (``warnings``, ``request_id``,
    ``tagging_s``) with today's, its records streamed into the new file (as compaction does), so
    that the rows a resumed run appends line up with the header."""
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) != CSV_COLUMNS:
        write_records(path, _iter_csv(path), Format.csv)


class Appender:
    """Appends records to a JSONL or CSV file, flushing after each one."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.fmt = fmt
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_record(path, fmt)
        fresh = not path.is_file() or path.stat().st_size == 0
        if fmt is Format.csv and not fresh:
            _upgrade_csv(path)
        self._handle: TextIO = path.open("a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._handle, CSV_COLUMNS, lineterminator="\n")
        if fmt is Format.csv and fresh:
            self._csv.writeheader()

    def write(self, record: Record) -> None:
        """Append one record and flush it, so a killed run loses at most a partial last line."""
        if self.fmt is Format.csv:
            self._csv.writerow(_csv_row(record))
        else:
            self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_appender(path: Path, fmt: Format) -> Appender:
    """Where a run writes as it goes: the output itself, or the journal of a Parquet output."""
    if fmt is Format.parquet:
        return Appender(journal_path(path), Format.jsonl)
    return Appender(path, fmt)


def _iter_jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as handle:
        for number, line in enumerate(_complete_records(handle, Format.jsonl), 1):
            if line.strip():
                try:
                    yield Record.model_validate_json(line)
                except ValidationError as error:
                    raise OutputError(f"line {number}: {_reason(error)}") from error


def _iter_csv(path: Path) -> Iterator[Record]:
    with path.open("rb") as handle:
        rows = csv.DictReader(row.decode("utf-8") for row in _complete_records(handle, Format.csv))
        # Checked before any row: a manifest given as --output whose first row is cut short (an
        # open quote) would otherwise read as an empty output, be cut and appended to.
        missing = [name for name in _CSV_REQUIRED if name not in (rows.fieldnames or _CSV_REQUIRED)]
        if missing:
            raise OutputError(f"no {missing[0]!r} column")
        for number, row in enumerate(rows, 2):  # after the header
            try:
                yield _from_csv_row(row)
            except (ValueError, KeyError, TypeError) as error:
                raise OutputError(f"row {number}: {_reason(error)}") from error


class OutputError(ValueError):
    """A file read as a catalogue output (the output a run resumes, an input of ``taggram
    merge``) that is not one in its format: another file given by mistake, or a damaged one."""


def _reason(error: Exception) -> str:
    """What is wrong, in one line: a record's first bad field, a missing CSV column, or the
    reader's own first line."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} column"
    return str(error).strip().split("\n")[0]


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("Parquet output needs pyarrow: pip install 'taggram[parquet]'") from exc
    return pa, pq


def _parquet_schema(pa: Any) -> Any:
    return pa.schema(
        [
            ("id", pa.string()),
            ("path", pa.string()),
            ("status", pa.string()),
            ("model", pa.string()),
            ("version", pa.string()),
            ("duration_s", pa.float64()),
            ("warnings", pa.list_(pa.string())),
            (
                "top_tags",
                pa.list_(pa.struct([("tag", pa.string()), ("probability", pa.float64())])),
            ),
            ("probabilities", pa.map_(pa.string(), pa.float64())),
            ("embedding_layer", pa.string()),
            ("embedding", pa.list_(pa.float32())),
            (
                "error",
                pa.struct(
                    [("code", pa.string()), ("message", pa.string()), ("retryable", pa.bool_())]
                ),
            ),
            ("request_id", pa.string()),
            ("tagging_s", pa.float64()),
        ]
    )


def _iter_parquet(path: Path) -> Iterator[Record]:
    _, pq = _pyarrow()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_ROWS):
        for row in batch.to_pylist():
            yield Record.model_validate(
                {
                    **row,
                    "probabilities": dict(row["probabilities"] or []),
                    "warnings": row.get("warnings") or [],
                    "top_tags": [TopTag.model_validate(item) for item in row["top_tags"] or []],
                }
            )


def _iter(path: Path, fmt: Format) -> Iterator[Record]:
    reader = {Format.jsonl: _iter_jsonl, Format.csv: _iter_csv, Format.parquet: _iter_parquet}
    try:
        yield from reader[fmt](path)
    except (OSError, ValueError, KeyError, TypeError) as error:  # OutputError among them
        raise OutputError(
            f"{path} is not a catalogue output in {fmt.value}: {_reason(error)}"
        ) from error


def iter_records(path: Path, fmt: Format | None = None) -> Iterator[Record]:
    """Every record of an output file in write order (duplicates included), one at a time, so
    that a catalogue's output is never all in memory; none when absent. A Parquet output's
    journal, if a run left one, is read after the Parquet file.

    Raises:
        OutputError: while iterating, when ``path`` (or the journal) exists but is not a
            catalogue output in ``fmt`` (a manifest or some other file given by mistake, a
            damaged output), naming the line or row and the first thing wrong.
    """
    fmt = fmt or infer_format(path)
    if path.exists():
        yield from _iter(path, fmt)
    if fmt is Format.parquet and journal_path(path).is_file():
        yield from _iter(journal_path(path), Format.jsonl)


def read_records(path: Path, fmt: Format | None = None) -> list[Record]:
    """:func:`iter_records` as a list (a merge, a test); raises the same :class:`OutputError`."""
    return list(iter_records(path, fmt))


def write_records(path: Path, records: Iterable[Record], fmt: Format) -> None:
    """Write a whole output at once, atomically (a temporary file renamed over the target)."""
    temporary = path.with_name(path.name + ".tmp")
    if fmt is Format.parquet:
        pa, pq = _pyarrow()
        schema = _parquet_schema(pa)
        remaining = iter(records)
        with pq.ParquetWriter(temporary, schema) as writer:
            while rows := [r.model_dump(mode="json") for r in islice(remaining, _PARQUET_ROWS)]:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    else:
        temporary.unlink(missing_ok=True)
        with Appender(temporary, fmt) as appender:
            for record in records:
                appender.write(record)
    temporary.replace(path)


def finalize(path: Path, fmt: Format) -> None:
    """End of a run: keep one record per id (:class:`~taggram.catalogue.records.Winners`),
    rewriting only when something was superseded, or to turn a Parquet journal into the Parquet
    file. Two passes over the file, so a catalogue's records are never all in memory."""
    winners = Winners()
    for record in iter_records(path, fmt):
        winners.add(record)
    if winners.superseded or (fmt is Format.parquet and journal_path(path).is_file()):
        write_records(path, winners.kept(iter_records(path, fmt)), fmt)
        journal_path(path).unlink(missing_ok=True)
