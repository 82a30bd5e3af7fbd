"""The in-process pipeline (no HTTP), as batch routes and catalogue tagging use it."""

from __future__ import annotations

import asyncio
import io
import logging
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.repository import COMPLETE_MARKER, RepositoryError, write_model
from taggram.service.custom import storage
from taggram.service.errors import InvalidOptionsError, ModelNotFoundError
from taggram.service.settings import Settings, in_process_settings
from taggram.service.tagging import Tagger, TagOptions, TagResult
from tests.service.conftest import _tiny_onnx, tiny_metadata
from tests.service.custom.test_storage import record


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


def _with_extractor(root: Path) -> Path:
    """A repository of ``tiny`` (a tagger) and ``extractor`` (embeddings only, like ``mfcc``)."""
    write_model(root, tiny_metadata(), _tiny_onnx())
    extractor = tiny_metadata("extractor").model_copy(
        update={"tags": [], "probabilities_output": None}
    )
    write_model(root, extractor, _tiny_onnx())
    (root / COMPLETE_MARKER).touch()
    return root


def test_a_feature_extractor_set_as_default_beside_a_tagger_fails_at_start(
    tmp_path: Path,
) -> None:
    """Started with one, every request without ``model`` was a 422; a service of feature
    extractors alone keeps one as its default (it answers ``embeddings=`` requests)."""
    repository = _with_extractor(tmp_path)
    explicit = "default model 'extractor' \\(TAGGRAM_DEFAULT_MODEL\\) is a feature extractor"
    with pytest.raises(RepositoryError, match=f"{explicit}.*models that tag: tiny$"):
        Tagger(Settings(model_repository=repository, default_model="extractor"))
    alone = Tagger(Settings(model_repository=repository, models=["extractor"]))
    assert alone.settings.default_model == "extractor"


def test_an_unset_default_is_the_first_model_loaded_that_tags(tmp_path: Path) -> None:
    """``TAGGRAM_MODELS=mfcc,MTT_vgg`` without ``TAGGRAM_DEFAULT_MODEL`` refused to start (the
    first of them, a feature extractor, became the default); the first that tags is taken."""
    repository = _with_extractor(tmp_path)
    settings = Settings(model_repository=repository, models=["extractor", "tiny"])
    tagger = Tagger(settings)
    assert tagger.settings.default_model == "tiny"
    assert list(tagger.entries) == ["extractor", "tiny"]
    assert tagger.settings.models == settings.models  # the rest as given


def test_in_process_a_custom_model_reading_an_extractor_first_loads_beside_its_tagger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``taggram tag --local -m`` a custom model on ``extractor`` and ``tiny``: its first network
    would be the default model, which the check above refuses when set; it is left unset."""
    repository = _with_extractor(tmp_path / "repository")
    voters = [
        storage.MemberRecord(features=f"{name}.embedding", classifier="prototypes")
        for name in ("extractor", "tiny")
    ]
    mine = record("mine").model_copy(
        update={"base": "extractor", "features": "extractor.embedding", "members": voters}
    )
    storage.write(tmp_path / "custom", mine, {})
    monkeypatch.setenv("TAGGRAM_CUSTOM_MODELS", str(tmp_path / "custom"))
    settings = in_process_settings(repository, "mine")
    assert settings.models == ["extractor", "tiny"]
    tagger = Tagger(settings)
    assert (list(tagger.entries), tagger.settings.default_model) == (["extractor", "tiny"], "tiny")


def test_stopping_while_models_load_leaves_the_rest_unloaded(tmp_path: Path) -> None:
    """Stopping during start-up (a shutdown signal, a port already in use) stops the loading
    thread after the model it is warming: cancelling ``start`` cannot interrupt a thread, which
    would otherwise load and warm every other model before the process can exit.
    """
    names = [f"tiny_{index}" for index in range(4)]
    for name in names:
        write_model(tmp_path, tiny_metadata(name), _tiny_onnx())
    (tmp_path / COMPLETE_MARKER).touch()
    warmed: list[str] = []

    async def run() -> None:
        tagger = Tagger(Settings(model_repository=tmp_path, default_model=names[0]))
        loop = asyncio.get_running_loop()
        starting = asyncio.create_task(tagger.start())

        class StopAtFirstWarmUp(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                warmed.append(record.getMessage())
                if len(warmed) == 1:  # in the loading thread: stop as the server would
                    loop.call_soon_threadsafe(starting.cancel)
                    asyncio.run_coroutine_threadsafe(tagger.stop(), loop).result(timeout=30)

        handler = StopAtFirstWarmUp(logging.INFO)
        session_log = logging.getLogger("taggram.service.inference.session")
        session_log.addHandler(handler)
        level = session_log.level
        session_log.setLevel(logging.INFO)
        try:
            with suppress(asyncio.CancelledError):
                await starting
            # the loading thread finishes on its own; wait for it before counting
            await loop.shutdown_default_executor()
        finally:
            session_log.removeHandler(handler)
            session_log.setLevel(level)

    asyncio.run(run())
    assert len(warmed) == 1, warmed
