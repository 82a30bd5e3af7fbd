"""Read a dataset's label table: audio path → tags.

Three CSV layouts are accepted, told apart by their header:

- ``path,tags`` with tags separated by ``;`` (e.g. ``song.ogg,"rock;guitar"``);
- ``path`` plus one 0/1 column per tag;
- MagnaTagATune's ``annotations_final.csv`` (tab-separated ``clip_id``, 188 tag columns,
  ``mp3_path``).

A ``group`` column keeps related files on one side of the train/validation split, a ``split``
column (``train`` / ``validation``) fixes the split itself, a ``kind`` column (music, speech,
effects) lets validation figures be broken down, a ``package`` column is checked against the
evaluation-only Debian packages; other non-tag columns of the data recipe's manifest
(``taggram.models.data.prepare``) are ignored. A UTF-8 byte-order mark (Excel's "CSV UTF-8")
is skipped.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taggram.models.data.packages import ensure_trainable
from taggram.models.data.prepare import ManifestRow

MTT_PATH, MTT_ID = "mp3_path", "clip_id"
# Columns that describe a file rather than tag it.
INFO_COLUMNS = frozenset({"path", "tags", "group", MTT_ID, MTT_PATH}) | frozenset(
    ManifestRow.__dataclass_fields__
)


@dataclass(frozen=True)
class LabelTable:
    """Files (relative to the audio root), their split groups and 0/1 tag targets."""

    paths: list[str]
    groups: list[str]
    tags: list[str]
    targets: np.ndarray  # float32 [files, tags]
    held_out: np.ndarray | None = None  # bool [files]: the CSV's split column says validation
    kinds: list[str] | None = None  # the CSV's kind column (music, speech, effects)

    def top(self, count: int) -> LabelTable:
        """Keep the ``count`` most frequent tags (MTT's usual top-50 set), in frequency order."""
        order = np.argsort(-self.targets.sum(axis=0), kind="stable")[:count]
        return LabelTable(
            self.paths,
            self.groups,
            [self.tags[i] for i in order],
            self.targets[:, order],
            self.held_out,
            self.kinds,
        )


def _tag_columns(path: Path, rows: list[dict[str, str]], tags: list[str]) -> np.ndarray:
    """float32 [rows, tags]: the 0/1 (or soft, 0 to 1) values of the tag columns.

    Raises ``ValueError`` naming the first column and row (1 = the first after the header) that
    holds anything else, such as a column of file information that is not a tag.
    """
    targets = np.zeros((len(rows), len(tags)), dtype=np.float32)
    for r, row in enumerate(rows):
        for t, tag in enumerate(tags):
            try:
                value = float(row[tag])
            except (TypeError, ValueError):  # not a number, or missing from a short row
                value = math.nan
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{path}: row {r + 1}, column {tag!r} holds {row[tag]!r}; without a 'tags' "
                    f"column every column but {sorted(INFO_COLUMNS & set(row))} is a tag "
                    "holding 0 or 1"
                )
            targets[r, t] = value
    return targets


def read_labels(path: Path) -> LabelTable:
    """Parse any of the accepted layouts (see module docstring).

    Raises ``ValueError`` if the file has no header or no rows, lacks a path column, or a tag
    column holds anything but numbers from 0 to 1.
    """
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty; a labels CSV starts with a header such as 'path,tags'")
    delimiter = "\t" if "\t" in lines[0] else ","
    rows = list(csv.DictReader(lines, delimiter=delimiter))
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    header = list(rows[0])
    if "package" in header:
        ensure_trainable({row["package"] for row in rows})
    path_column = MTT_PATH if MTT_PATH in header else "path"
    if path_column not in header:
        raise ValueError(f"{path}: needs a 'path' (or MTT 'mp3_path') column, has {header}")
    paths = [row[path_column] for row in rows]
    # MTT clips cut from one song share a folder (0-f), the unit of its customary splits.
    groups = [
        row.get("group")
        or (str(Path(row[MTT_PATH]).parent) if path_column == MTT_PATH else "")
        or row[path_column]
        for row in rows
    ]
    if "tags" in header:
        names = [[t.strip() for t in row["tags"].split(";") if t.strip()] for row in rows]
        tags = sorted({t for row_tags in names for t in row_tags})
        index = {tag: i for i, tag in enumerate(tags)}
        targets = np.zeros((len(rows), len(tags)), dtype=np.float32)
        for r, row_tags in enumerate(names):
            targets[r, [index[t] for t in row_tags]] = 1.0
    else:
        tags = [column for column in header if column not in INFO_COLUMNS]
        targets = _tag_columns(path, rows, tags)
    held_out = None
    if "split" in header:
        held_out = np.array([row["split"] == "validation" for row in rows])
    kinds = [row["kind"] for row in rows] if "kind" in header else None
    return LabelTable(paths, groups, tags, targets, held_out, kinds)
