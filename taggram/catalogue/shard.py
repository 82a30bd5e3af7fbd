"""``--shard i/N``: a stable split of a catalogue across N workers (e.g. Kubernetes Job pods).

A track's shard is a hash of its id, not its position, so every worker computes the same split
from the same manifest independently, each id lands in exactly one shard, and adding tracks to the
manifest does not move the others to different shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from taggram.catalogue.sources import Track


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based), e.g. a Kubernetes Indexed Job's completion index."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read ``"i/N"`` with ``0 <= i < N`` (``i`` is a Job's completion index)."""
        try:
            index_text, count_text = text.split("/")
            shard = cls(int(index_text), int(count_text))
        except ValueError as exc:
            raise ValueError(f"shard must look like i/N, got {text!r}") from exc
        if shard.count < 1:  # "in [0, 0)" said nothing a person could act on
            raise ValueError(f"shard count N of i/N must be at least 1, got {text!r}")
        if not 0 <= shard.index < shard.count:
            raise ValueError(f"shard index must be in [0, {shard.count}), got {shard.index}")
        return shard

    def owns(self, track_id: str) -> bool:
        """Whether this shard tags the track with id ``track_id``."""
        return shard_of(track_id, self.count) == self.index


def shard_of(track_id: str, count: int) -> int:
    """The shard of one id: sha256, so it is the same on every machine and Python version."""
    digest = hashlib.sha256(track_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select(tracks: Iterable[Track], shard: Shard | None) -> list[Track]:
    """The tracks of ``shard`` in their source order (all of them when ``shard`` is None)."""
    return [track for track in tracks if shard is None or shard.owns(track.id)]
