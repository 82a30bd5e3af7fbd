"""Custom models in the in-process pipeline, on the tiny test model: create, tag (alone and with
other models), a second replica following the shared folder, restart, delete, and bad requests."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import soundfile as sf
from prometheus_client import REGISTRY

from taggram.repository import COMPLETE_MARKER, write_model
from taggram.service.custom.creation import CreateRequest, Example
from taggram.service.errors import (
    AudioTooLongError,
    InvalidExamplesError,
    InvalidOptionsError,
    ModelExistsError,
    ModelNotFoundError,
    ModelReadOnlyError,
    TaggramError,
    TooManyExamplesError,
    TooManyModelsError,
    UndecodableAudioError,
    UnsupportedFormatError,
)
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger, TagOptions
from tests.service.conftest import _tiny_onnx, tiny_metadata

T = TypeVar("T")
RATE = 16000


def wav(offset: float, seed: int, seconds: float = 3.0) -> bytes:
    """A clip the tiny model tells apart by its mean level (its embedding averages frames)."""
    rng = np.random.default_rng(seed)
    audio = offset + 0.05 * rng.standard_normal(int(seconds * RATE))
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


# A WAV header over no readable audio: the container is accepted, nothing decodes.
BROKEN_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200)
LEVELS = {"low": -0.4, "mid": 0.0, "high": 0.4}


def examples(per_class: int = 4, seed: int = 0) -> list[Example]:
    return [
        Example(f"{label}_{i}.wav", wav(level, seed + 10 * i + j), label)
        for j, (label, level) in enumerate(LEVELS.items())
        for i in range(per_class)
    ]


def settings(repository: Path, folder: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_repository": repository,
        "default_model": "tiny",
        "custom_models": folder,
        "warmup": False,
        **overrides,
    }
    return Settings.model_validate(values)


def run(settings_: Settings, work: Callable[[Tagger], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Tagger(settings_) as tagger:
            return await work(tagger)

    return asyncio.run(main())


def test_create_tag_follow_restart_delete(tiny_repository: Path, tmp_path: Path) -> None:
    config = settings(tiny_repository, tmp_path / "custom")

    async def scenario(tagger: Tagger) -> None:
        record = await tagger.create_custom(CreateRequest(name="levels", examples=examples()))
        assert record.classes == ["high", "low", "mid"]
        assert record.features == "tiny.embedding" and record.base == "tiny"
        assert record.examples_per_class == {"high": 4, "low": 4, "mid": 4}
        assert record.selection == "cross-validation" and len(record.candidates) == 4
        assert record.estimate.value is not None and record.estimate.value > 0.9
        assert record.estimate.chance == pytest.approx(1 / 3, abs=1e-3)
        meta = tagger.models["levels"]
        assert (meta.kind, meta.base, meta.tags) == ("custom", "tiny", ["high", "low", "mid"])

        for label, level in LEVELS.items():
            result = await tagger.tag(wav(level, 99, seconds=7), TagOptions(model="levels"))
            assert result.tags[0][0] == label
            assert sum(p for _, p in result.tags) == pytest.approx(1, abs=1e-5)
        served = {"model": "levels"}
        assert REGISTRY.get_sample_value("taggram_queue_wait_seconds_count", served)

        options = TagOptions(model="levels,tiny", taggram=True)
        both = await tagger.tag_many(wav(0.4, 5, seconds=7), options)
        assert [r.model.name for r in both] == ["levels", "tiny"]
        assert both[0].taggram is not None and both[0].taggram.shape == (3, 3)
        assert both[1].taggram is not None and both[1].taggram.shape == (3, 8)
        np.testing.assert_array_equal(both[0].patch_starts, both[1].patch_starts)
        alone = await tagger.tag(wav(0.4, 5, seconds=7), TagOptions(model="tiny"))
        np.testing.assert_allclose(both[1].probabilities, alone.probabilities, atol=1e-6)
        with pytest.raises(InvalidOptionsError):
            await tagger.tag_many(wav(0.4, 5), TagOptions(model="levels,levels"))
        with pytest.raises(InvalidOptionsError):  # a custom model has no embedding outputs
            await tagger.tag_many(wav(0.4, 5), TagOptions(model="levels", embeddings="embedding"))

        # A replica sharing the folder sees the model, and stops serving it once deleted.
        async with Tagger(config) as replica:
            assert "levels" in replica.models
            copy = await replica.tag(wav(-0.4, 7), TagOptions(model="levels"))
            assert copy.tags[0][0] == "low"
            await tagger.delete_custom("levels")
            assert REGISTRY.get_sample_value("taggram_queue_wait_seconds_count", served) is None
            await replica.tag(wav(-0.4, 7), TagOptions(model="levels"))  # until it rescans
            assert REGISTRY.get_sample_value("taggram_queue_wait_seconds_count", served) == 1
            await replica.refresh_custom()
            assert "levels" not in replica.models
        # Its per-request series go with it: names come and go, the exposition must not grow.
        assert REGISTRY.get_sample_value("taggram_queue_wait_seconds_count", served) is None
        assert REGISTRY.get_sample_value("taggram_audio_seconds_total", served) is None

    run(config, scenario)


def test_models_survive_a_restart(tiny_repository: Path, tmp_path: Path) -> None:
    config = settings(tiny_repository, tmp_path / "custom")

    async def create(tagger: Tagger) -> str:
        record = await tagger.create_custom(
            CreateRequest(name="kept", examples=examples(3), classifier="logistic")
        )
        return record.id

    identifier = run(config, create)
    restarted = run(config, lambda tagger: asyncio.sleep(0, tagger.models["kept"]))
    assert restarted.kind == "custom"
    assert restarted.training["id"] == identifier
    assert restarted.training["classifier"] == "logistic"


@pytest.fixture
def two_model_repository(tmp_path: Path) -> Path:
    """A repository of ``tiny`` and ``other`` (the same network under two names)."""
    root = tmp_path / "repository"
    for name in ("tiny", "other"):
        write_model(root, tiny_metadata(name), _tiny_onnx())
    (root / COMPLETE_MARKER).touch()
    return root


def test_a_repository_name_is_never_a_custom_models(
    two_model_repository: Path, tmp_path: Path
) -> None:
    """A replica serving only ``tiny`` created a custom ``other``: a replica (or a restart)
    loading the repository's ``other`` then listed the custom one and tagged with the
    repository's, and could not delete it (409 read-only). The name is refused, and such a
    folder (from before) is passed over where the repository model of that name is served."""
    folder = tmp_path / "custom"
    only_tiny = settings(two_model_repository, folder, models=["tiny"])

    async def create(tagger: Tagger) -> None:
        with pytest.raises(ModelExistsError, match="in the model repository"):
            await tagger.create_custom(CreateRequest(name="other", examples=examples(2)))
        await tagger.create_custom(CreateRequest(name="made", examples=examples(2)))

    run(only_tiny, create)
    # What an older version let through: a custom model folder named like the repository's.
    record = json.loads((folder / "made" / "record.json").read_text())
    (folder / "made" / "record.json").write_text(json.dumps({**record, "name": "other"}))
    (folder / "made").rename(folder / "other")
    served = run(settings(two_model_repository, folder), lambda t: asyncio.sleep(0, t.models))
    assert served["other"].kind == "waveform"  # the repository's, listed and tagged alike


def test_multi_label_examples_make_a_multi_label_model(
    tiny_repository: Path, tmp_path: Path
) -> None:
    labelled = [
        Example(f"{i}.wav", wav(level, i), label)
        for i, (level, label) in enumerate(
            [
                (-0.4, "dark"),
                (-0.4, "dark"),
                (0.4, "bright|loud"),
                (0.4, "bright|loud"),
                (0.0, "loud"),
                (0.0, "loud"),
                (-0.4, "dark"),
                (0.4, "bright|loud"),
            ]
        )
    ]

    async def scenario(tagger: Tagger) -> None:
        record = await tagger.create_custom(CreateRequest(name="multi", examples=labelled))
        assert record.multi_label and record.estimate.metric == "macro_f1"
        result = await tagger.tag(wav(0.4, 50), TagOptions(model="multi"))
        probabilities = dict(result.tags)
        assert probabilities["bright"] > 0.5 and probabilities["loud"] > 0.5
        assert probabilities["dark"] < 0.5

    run(settings(tiny_repository, tmp_path / "custom"), scenario)


BAD: list[tuple[dict[str, object], type[TaggramError], str]] = [
    ({"name": "tiny"}, ModelExistsError, "already exists"),
    ({"name": "bad name"}, InvalidExamplesError, "letters, digits"),
    ({"examples": examples(2)[:2]}, InvalidExamplesError, "at least two classes"),
    ({"classes": ["low", "mid", "high", "silence"]}, InvalidExamplesError, "no example"),
    ({"classes": ["low", "mid"]}, InvalidExamplesError, "not among the classes"),
    # A class declared twice would get a column no example is labelled with.
    (
        {"classes": ["low", "mid", "high", "mid"]},
        InvalidExamplesError,
        r"classes \['mid'\] are declared more than once",
    ),
    (
        {"examples": [*examples(2), Example("x.wav", wav(0, 1), " | ")]},
        InvalidExamplesError,
        "has no label",
    ),
    ({"features": "tiny.nothing"}, InvalidOptionsError, "unknown features"),
    ({"classifier": "forest"}, InvalidOptionsError, "unknown classifier"),
    ({"examples": examples(5)}, TooManyExamplesError, "limit of 12"),
    (
        {"examples": [*examples(2), Example("notes.txt", b"not audio at all" * 100, "low")]},
        UnsupportedFormatError,
        "'notes.txt'",
    ),
    (
        {"examples": [*examples(2), Example("broken.wav", BROKEN_WAV, "low")]},
        UndecodableAudioError,
        "'broken.wav'",
    ),
    (
        {"examples": [*examples(2), Example("long.wav", wav(0, 1, seconds=5), "low")]},
        AudioTooLongError,
        "'long.wav'",
    ),
]


@pytest.mark.parametrize(("fields", "error", "message"), BAD)
def test_bad_requests_are_refused_with_a_reason(
    tiny_repository: Path,
    tmp_path: Path,
    fields: dict[str, object],
    error: type[TaggramError],
    message: str,
) -> None:
    config = settings(
        tiny_repository, tmp_path, max_custom_examples=12, max_custom_example_seconds=4
    )
    request = CreateRequest(**{"name": "new", "examples": examples(2), **fields})  # type: ignore[arg-type]

    async def create(tagger: Tagger) -> None:
        with pytest.raises(error, match=message):
            await tagger.create_custom(request)
        assert "new" not in tagger.models

    run(config, create)
    assert not (tmp_path / "new").exists()


def test_limits_on_classes_and_models(tiny_repository: Path, tmp_path: Path) -> None:
    config = settings(tiny_repository, tmp_path, max_custom_models=1, max_custom_classes=2)

    async def scenario(tagger: Tagger) -> None:
        with pytest.raises(InvalidExamplesError, match="limit of 2"):
            await tagger.create_custom(CreateRequest(name="three", examples=examples(2)))
        two = [e for e in examples(2) if e.label != "mid"]
        await tagger.create_custom(CreateRequest(name="one", examples=two))
        with pytest.raises(TooManyModelsError):
            await tagger.create_custom(CreateRequest(name="two", examples=two))
        with pytest.raises(ModelReadOnlyError):
            await tagger.delete_custom("tiny")
        await tagger.delete_custom("one")
        with pytest.raises(ModelNotFoundError):
            await tagger.delete_custom("one")

    run(config, scenario)
