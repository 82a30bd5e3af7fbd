"""POST /v1/tag end to end: formats, upload styles, options, long tracks, concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taggram.client import TaggramClient
from tests.e2e.conftest import (
    DECODED_FORMATS,
    FORMATS,
    excerpt,
    long_track,
    probabilities,
    tag_file,
)
from tests.support.paths import SHARED_AUDIO, has_shared
from tests.support.server import Server

# These encodings hold exactly music_wav's 16-bit samples, so they must tag identically.
LOSSLESS = ["wav_16", "wav_24", "wav_32", "wav_float", "flac"]


@pytest.fixture(scope="module")
def reference_response(server: Server, format_files: dict[str, Path]) -> dict:
    """The 16-bit WAV's answer, which the other encodings are compared with."""
    with httpx.Client(base_url=server.url, timeout=300) as http:
        response = tag_file(http, format_files["wav_16"])
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_is_tagged(
    name: str, client: httpx.Client, format_files: dict[str, Path], reference_response: dict
) -> None:
    response = tag_file(client, format_files[name])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audio"]["format"] == DECODED_FORMATS[name]
    assert body["audio"]["channels"] == 2
    assert abs(body["audio"]["duration_seconds"] - 30.0) < 0.1
    scores = [item["probability"] for item in body["tags"]]
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == len(reference_response["tags"])
    expected = probabilities(reference_response)
    got = probabilities(body)
    if name in LOSSLESS:
        for tag, value in expected.items():
            assert got[tag] == pytest.approx(value, abs=1e-5), tag
    else:
        # Lossy or 8-bit copies of the same music: the leading tags stay the leading tags.
        top = [item["tag"] for item in reference_response["tags"][:3]]
        assert len(set(top) & {item["tag"] for item in body["tags"][:5]}) >= 2


def test_raw_body_and_multipart_agree(
    client: httpx.Client, format_files: dict[str, Path], reference_response: dict
) -> None:
    raw = client.post(
        "/v1/tag",
        content=format_files["flac"].read_bytes(),
        headers={"Content-Type": "audio/flac"},
    )
    assert raw.status_code == 200, raw.text
    assert raw.headers["X-Request-ID"] == raw.json()["request_id"]
    timing = raw.headers["Server-Timing"]
    for stage in ("decode", "queue", "inference", "total"):
        assert f"{stage};dur=" in timing
    expected = probabilities(reference_response)
    for tag, value in probabilities(raw.json()).items():
        assert value == pytest.approx(expected[tag], abs=1e-5)


def test_options_top_k_threshold_taggram_embeddings_hop(
    client: httpx.Client, server: Server, format_files: dict[str, Path]
) -> None:
    model = client.get("/v1/models/MTT_musicnn").json()
    layer = model["embedding_outputs"][0]
    response = tag_file(
        client, format_files["wav_16"], top_k=3, taggram="true", embeddings=layer, hop=1.5
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["tags"]) == 3
    patches = body["taggram"]["patches"]
    assert len(patches) == body["patches"]
    starts = [patch["start_seconds"] for patch in patches]
    assert starts[:3] == pytest.approx([0.0, 1.5, 3.0])
    assert patches[-1]["end_seconds"] == pytest.approx(body["audio"]["duration_seconds"])
    assert all(len(patch["values"]) == len(model["tags"]) for patch in patches)
    embeddings = body["embeddings"]
    assert embeddings["layer"] == layer
    assert len(embeddings["patches"]) == len(patches)
    assert len(embeddings["mean"]) == len(embeddings["patches"][0]["values"])
    # Form fields are options too (query parameters win when both are given).
    with format_files["wav_16"].open("rb") as handle:
        form = client.post("/v1/tag", data={"threshold": "0.1"}, files={"file": ("a.wav", handle)})
    assert form.status_code == 200, form.text
    assert all(item["probability"] >= 0.1 for item in form.json()["tags"])


def test_every_model_tags(client: httpx.Client, format_files: dict[str, Path]) -> None:
    for model in client.get("/v1/models").json()["models"]:
        # a feature extractor (mfcc, random_*) has no tags: it answers one of its embeddings
        extractor = model["probabilities_output"] is None
        options = {"embeddings": model["embedding_outputs"][0]} if extractor else {}
        response = tag_file(client, format_files["mp3"], model=model["name"], top_k=5, **options)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["name"] == model["name"]


def test_ten_minute_track(
    client: httpx.Client, music_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = long_track(music_wav, tmp_path_factory.mktemp("long"), 600)
    response = tag_file(client, path, taggram="true", top_k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audio"]["duration_seconds"] == pytest.approx(600.0)
    # 200 whole patches of 2.992 s, plus the end-aligned one covering the last 1.6 s.
    assert body["patches"] == 201
    assert body["taggram"]["patches"][-1]["end_seconds"] == pytest.approx(600.0)


def _histogram(server: Server, name: str) -> dict[float, float]:
    """Cumulative bucket counts (summed over labels) of one histogram."""
    text = httpx.get(f"{server.url}/metrics").text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def test_the_client_sends_a_list_of_models_as_one_comma_separated_option(
    server: Server, music_wav: Path
) -> None:
    """``model=["A", "B"]`` in Python asks for both models (it was sent as "['A', 'B']")."""
    models = ["MTT_musicnn", "MTT_vgg"]
    with TaggramClient(server.url) as client:
        answer = client.tag(music_wav, model=models, top_k=1)
        [batched] = client.tag_batch([music_wav], model=tuple(models), top_k=1)
    for body in (answer, batched["result"]):
        assert [result["model"]["name"] for result in body["results"]] == models


def test_a_batch_gives_back_file_names_as_the_client_had_them(
    server: Server, music_wav: Path
) -> None:
    """Clients escape '"', CR and LF in a multipart file name (%22, %0D, %0A, as browsers, curl
    and httpx do): ``12" single.wav`` came back as ``12%22 single.wav``."""
    names = ['Blue Monday (12" Version).wav', "two\nlines.wav", "100% Björk – Jóga.wav"]
    audio = music_wav.read_bytes()
    with TaggramClient(server.url) as client:
        results = client.tag_batch([(name, audio) for name in names], top_k=1)
    assert [result["filename"] for result in results] == names


def test_concurrent_requests_match_sequential_and_share_batches(
    server: Server, music_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # One-patch clips: a batch larger than 1 can only come from packing several requests.
    folder = tmp_path_factory.mktemp("short")
    if has_shared():  # the shared recordings, of several rates and channel counts
        starts = [(clip, 0.0) for clip in sorted(SHARED_AUDIO.glob("clip_*"))]
    else:  # a fresh clone: as many different stretches of the generated music
        starts = [(music_wav, 2.5 * i) for i in range(11)]
    shorts = [
        excerpt(clip, folder / f"short_{i}.wav", 2.5, start)
        for i, (clip, start) in enumerate(starts)
    ]
    garbage = folder / "garbage.mp3"
    garbage.write_bytes(b"\x00not audio" * 100)

    def run(path: Path) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            return tag_file(http, path, taggram="true")

    sequential = [run(path) for path in shorts]
    before = _histogram(server, "taggram_batch_size")
    with ThreadPoolExecutor(len(shorts) + 2) as pool:
        concurrent = list(pool.map(run, [*shorts, garbage, garbage]))
    after = _histogram(server, "taggram_batch_size")
    for one, other in zip(sequential, concurrent, strict=False):
        assert one.status_code == other.status_code == 200, other.text
        rows = [patch["values"] for patch in one.json()["taggram"]["patches"]]
        again = [patch["values"] for patch in other.json()["taggram"]["patches"]]
        np.testing.assert_allclose(again, rows, atol=1e-5)
    assert [response.status_code for response in concurrent[-2:]] == [415, 415]  # not audio
    batches = after[float("inf")] - before[float("inf")]
    single = after[1.0] - before[1.0]
    assert batches - single >= 1, "no batch packed patches from more than one request"


@pytest.mark.parametrize(
    ("seconds", "padding"),
    [
        (
            0.01,
            "(0.010 s) is shorter than one patch of MTT_musicnn (2.99 s): it was zero-padded, "
            "so 99.7% of what the model heard was silence",
        ),
        (
            1.5,
            "(1.5 s) is shorter than one patch of MTT_musicnn (2.99 s): it was zero-padded, "
            "so 49.9%",
        ),
        (
            2.9,
            "(2.9 s) is shorter than one patch of MTT_musicnn (2.99 s): it was zero-padded, "
            "so 3.1%",
        ),
        (2.99, None),  # 0.07 % padding: no warning that would read "(2.99 s) ... (2.99 s)"
        (3.0, None),
    ],
)
def test_audio_shorter_than_a_patch_is_tagged_with_a_warning_saying_so(
    client: httpx.Client, music_wav: Path, tmp_path: Path, seconds: float, padding: str | None
) -> None:
    """A 0.01 s clip was tagged with no word that its one patch was almost all zero padding;
    a clip of one patch or more, or all but a sliver of one, says nothing about it."""
    path = excerpt(music_wav, tmp_path / "short.wav", seconds, start=5.0)
    response = tag_file(client, path, model="MTT_musicnn")
    assert response.status_code == 200, response.text
    padded = [w for w in response.json()["warnings"] if "shorter than one patch" in w]
    if padding is None:
        assert padded == [], padded
    else:
        [warning] = padded
        assert padding in warning, warning
