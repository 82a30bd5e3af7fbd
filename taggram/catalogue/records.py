"""One result per track, the unit every output format stores and every resume reads back."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from taggram.catalogue.sources import Track
from taggram.filenames import printable


class TopTag(BaseModel):
    """One of a record's best tags with its clip probability (0-1), as ``/v1/tag`` names it.

    Outputs written before the field was named ``probability`` (``score``) still read back.
    """

    model_config = ConfigDict(frozen=True)

    tag: str
    probability: float = Field(validation_alias=AliasChoices("probability", "score"))


class ErrorInfo(BaseModel):
    """Why a track failed. ``retryable`` separates a bad file (the same answer every time) from a
    service that was unreachable or overloaded (worth another try on the next run)."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    retryable: bool = False


class Record(BaseModel):
    """One track's outcome: its top tags, every tag's clip probability (0-1) and optionally a
    clip-mean embedding when ``status`` is ``ok``; the reason when it is ``error``.
    """

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: str
    path: str
    status: Literal["ok", "error"]
    model: str | None = None
    version: str | None = None
    duration_s: float | None = None
    # What went wrong although the track was tagged (the response's `warnings`: decoding, audio
    # shorter than one patch); records written before the field existed read back with none.
    warnings: list[str] = []
    top_tags: list[TopTag] = []
    probabilities: dict[str, float] = {}
    embedding_layer: str | None = None
    embedding: list[float] | None = None
    error: ErrorInfo | None = None
    # To trace a track in the service's logs: the request's id (the response's ``request_id``,
    # else its ``X-Request-ID``; ``None`` for ``--local``, which sends no request) and the
    # seconds the run spent on the track, retries included. Both ``None`` in records written
    # before the fields existed.
    request_id: str | None = None
    tagging_s: float | None = None

    @property
    def settled(self) -> bool:
        """Nothing more to do for this track unless the user asks to re-try failures."""
        return self.status == "ok" or (self.error is not None and not self.error.retryable)


def success(
    track: Track,
    *,
    model: str,
    version: str,
    duration_s: float,
    probabilities: dict[str, float],
    top_k: int,
    embedding: tuple[str, list[float]] | None = None,
    warnings: Iterable[str] = (),
    request_id: str | None = None,
) -> Record:
    """The record of a tagged track, for both backends: the top tags are derived here so every
    backend ranks alike. ``probabilities`` maps every tag to its clip probability (0-1);
    ``embedding`` is the layer name and the clip-mean vector; ``warnings`` the response's;
    ``request_id`` the service's id of the request (``None`` in-process)."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)[:top_k]
    layer, values = embedding if embedding is not None else (None, None)
    return Record(
        id=track.id,
        path=printable(str(track.path)),
        status="ok",
        model=model,
        version=version,
        duration_s=duration_s,
        warnings=list(warnings),
        top_tags=[TopTag(tag=tag, probability=p) for tag, p in ranked],
        probabilities=probabilities,
        embedding_layer=layer,
        embedding=values,
        request_id=request_id,
    )


def failure(
    track: Track, code: str, message: str, *, retryable: bool, request_id: str | None = None
) -> Record:
    """The record of a track that failed, for both backends; the message is folded onto one line
    so every format keeps it readable (a path in it that is not UTF-8 escaped, as the record's
    own). ``retryable``: a later run should try it again; ``request_id``: the id of the request
    the service refused or failed, when it answered."""
    message = printable(" ".join(message.split()))
    return Record(
        id=track.id,
        path=printable(str(track.path)),
        status="error",
        error=ErrorInfo(code=code, message=message, retryable=retryable),
        request_id=request_id,
    )


# Read errors of network and shared storage that pass (a server failing over, an NFS handle gone
# stale, a lock or link held a moment): a later run should read the file again.
_TRANSIENT_READ_ERRORS = frozenset(
    {
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOLCK,
    }
)


def unreadable(track: Track, error: OSError) -> Record:
    """The file could not be read: settled (missing, a folder, no permission: a later run would
    read the same nothing), or retryable when the storage failed for a moment (EIO, ESTALE,
    ETIMEDOUT ... of network storage)."""
    transient = error.errno in _TRANSIENT_READ_ERRORS
    return failure(track, "unreadable", str(error), retryable=transient)


def not_regular(track: Track) -> Record:
    """A manifest's row names a named pipe, socket or device: settled, and never opened (reading
    a pipe would wait for a writer, a device might never end). A folder's scan skips these."""
    detail = f"not a regular file (a named pipe, socket or device), never opened: {track.path}"
    return failure(track, "unreadable", detail, retryable=False)


@dataclass
class Winners:
    """Which record of a stream of records each id keeps, found in one pass that holds only ids
    and positions: a success wins over any failure, otherwise the latest failure (a re-try after
    a transient error supersedes the earlier attempt). :meth:`kept` then picks those records out
    of a second pass over the same stream, so that a catalogue's records are never all in memory.
    """

    positions: dict[str, int] = field(default_factory=dict)  # id -> 1-based position kept
    tagged: set[str] = field(default_factory=set)  # ids with a success
    count: int = 0  # records seen

    def add(self, record: Record) -> None:
        """See the next record of the stream."""
        self.count += 1
        if record.id not in self.tagged:
            self.positions[record.id] = self.count
            if record.status == "ok":
                self.tagged.add(record.id)

    @property
    def superseded(self) -> bool:
        """Whether some id has more than one record."""
        return self.count > len(self.positions)

    def kept(self, records: Iterable[Record]) -> Iterator[Record]:
        """The records kept, one per id in stream order, from the same stream seen again."""
        keep = set(self.positions.values())
        return (record for position, record in enumerate(records, 1) if position in keep)
