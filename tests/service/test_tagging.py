"""The in-process pipeline (no HTTP), as batch routes and catalogue tagging use it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.repository import RepositoryError
from taggram.service.errors import InvalidOptionsError, ModelNotFoundError
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger, TagOptions, TagResult


def _settings(repository: Path) -> Settings:
    return Settings(model_repository=repository, default_model="tiny")


def _wav(seconds: float, rate: int = 22050) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    sf.write(buffer, rng.normal(0, 0.1, (int(seconds * rate), 2)), rate, format="WAV")
    return buffer.getvalue()


def _tag(repository: Path, data: bytes | Path, options: TagOptions) -> TagResult:
    async def run() -> TagResult:
        async with Tagger(_settings(repository)) as tagger:
            return await tagger.tag(data, options)

    return asyncio.run(run())


def test_tags_bytes_and_paths_alike(tiny_repository: Path, tmp_path: Path) -> None:
    data = _wav(7.0)
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    options = TagOptions(taggram=True, embeddings="embedding", top_k=3)
    from_bytes = _tag(tiny_repository, data, options)
    from_path = _tag(tiny_repository, path, options)
    np.testing.assert_array_equal(from_bytes.probabilities, from_path.probabilities)
    result = from_bytes
    assert (result.audio.sample_rate, result.audio.channels) == (22050, 2)
    assert result.duration_seconds == pytest.approx(7.0)
    assert len(result.tags) == 3
    assert [p for _, p in result.tags] == sorted(result.probabilities, reverse=True)[:3]
    assert result.taggram is not None and result.embeddings is not None
    assert len(result.taggram) == len(result.patch_starts) == 3  # 2 whole patches + the tail
    assert result.patch_ends[-1] == pytest.approx(7.0)
    assert result.embedding_mean is not None and result.embedding_mean.shape == (4,)
    assert result.timings.total >= result.timings.decode


def test_bad_requests_fail_before_any_work(tiny_repository: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        _tag(tiny_repository, _wav(1.0), TagOptions(model="missing"))
    with pytest.raises(InvalidOptionsError):
        _tag(tiny_repository, _wav(1.0), TagOptions(embeddings="missing"))


def test_missing_default_model_fails_at_start(tiny_repository: Path) -> None:
    with pytest.raises(RepositoryError, match="MTT_musicnn"):
        Tagger(Settings(model_repository=tiny_repository))
