"""Custom taggers through a real server: create, tag, list, restart, still there, delete; every
error case; replicas sharing the folder; the CLI. Examples are synthetic signals made at test time
(tones, noise, click trains: three classes any embedding separates), by the generator of the
creation-speed benchmark."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from benchmarks.custom_creation import example as clip
from tests.e2e.conftest import SERVER_ENV
from tests.service.custom.test_tagger import BROKEN_WAV
from tests.support import audio as test_audio
from tests.support.paths import ROOT, require_repository
from tests.support.proxy import prefix_proxy
from tests.support.server import Server, running_server

CLASSES = ("tone", "noise", "clicks")
MAX_EXAMPLES = 30


def form(
    name: str | None, per_class: int = 4, seed: int = 0, **fields: str
) -> tuple[dict[str, object], list[tuple[str, tuple[str, bytes]]]]:
    """Multipart fields and files for ``per_class`` examples of each class."""
    files, labels = [], []
    for i in range(per_class):
        for j, kind in enumerate(CLASSES):
            files.append(("files", (f"{kind}_{i}.wav", clip(kind, seed + 10 * i + j))))
            labels.append(kind)
    data: dict[str, object] = {"labels": labels, **fields}
    if name is not None:
        data["name"] = name
    return data, files


def create(client: httpx.Client, name: str, **fields: str) -> httpx.Response:
    data, files = form(name, **fields)
    return client.post("/v1/models", data=data, files=files)


def tag(client: httpx.Client, audio: bytes, **params: str) -> httpx.Response:
    return client.post("/v1/tag", params=params, files={"file": ("clip.wav", audio)})


def _float_wav(peak: float) -> bytes:
    """Three seconds of a float WAV tone peaking at ``peak`` (finite, unlike NaN samples)."""
    buffer = io.BytesIO()
    tone = peak * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)
    sf.write(buffer, tone.astype(np.float32), 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"]


def loaded_models(repository: Path) -> str:
    """MTT_musicnn, and the MFCC extractor when the repository has it (a cheap second feature)."""
    return ",".join(name for name in ("MTT_musicnn", "mfcc") if (repository / name).is_dir())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("custom_models")


def _env(folder: Path) -> dict[str, str]:
    return {
        **SERVER_ENV,
        "TAGGRAM_MODELS": loaded_models(require_repository()),
        "TAGGRAM_CUSTOM_MODELS": str(folder),
        "TAGGRAM_CUSTOM_MODELS_POLL_SECONDS": "0.5",
        "TAGGRAM_MAX_CUSTOM_EXAMPLES": str(MAX_EXAMPLES),
    }


@pytest.fixture(scope="module")
def server(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        require_repository(), tmp_path_factory.mktemp("logs"), env=_env(folder)
    ) as started:
        yield started


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as http:
        yield http


def test_create_tag_list_restart_delete(client: httpx.Client, folder: Path, tmp_path: Path) -> None:
    created = create(client, "synth", description="tones, noise, clicks")
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/v1/models/synth"
    body = created.json()
    assert body["warnings"] == []
    assert body["classes"] == sorted(CLASSES)
    assert body["examples_per_class"] == dict.fromkeys(sorted(CLASSES), 4)
    assert body["classifier"] in ("prototypes", "logistic", "svm", "knn", "ensemble")
    members = body["members"]
    assert 1 <= len(members) <= 5 and (len(members) > 1) == (body["classifier"] == "ensemble")
    assert body["features"].split(",") == list(dict.fromkeys(m["features"] for m in members))
    assert {m["features"].split(".")[0] for m in members} <= {"MTT_musicnn", "mfcc"}
    assert all(m["temperature"] > 0 for m in members)
    assert body["estimate"]["metric"] == "accuracy"
    assert "nested cross-validation" in body["estimate"]["method"]
    assert body["estimate"]["value"] > 0.8 and body["estimate"]["chance"] == pytest.approx(
        1 / 3, 1e-3
    )
    assert body["seconds"]["total"] > 0

    probe = {kind: clip(kind, 1000 + i) for i, kind in enumerate(CLASSES)}
    for kind, audio in probe.items():
        response = tag(client, audio, model="synth", taggram="true")
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["model"]["name"] == "synth"
        assert result["tags"][0]["tag"] == kind
        assert result["taggram"]["tags"] == sorted(CLASSES)
        assert len(result["taggram"]["patches"][0]["values"]) == 3

    both = tag(client, probe["tone"], model="MTT_musicnn,synth", top_k="2").json()
    assert [r["model"]["name"] for r in both["results"]] == ["MTT_musicnn", "synth"]
    assert both["results"][1]["tags"][0]["tag"] == "tone"
    assert len(both["results"][0]["tags"]) == 2
    # a custom model's output is its tags: asking it for an embedding says so
    no_embedding = tag(client, probe["tone"], model="synth", embeddings="penultimate")
    assert_error(no_embedding, 422, "invalid_options", "'penultimate'; it returns no embeddings")
    batch = client.post(
        "/v1/tag/batch",
        params={"model": "synth"},
        files=[("files", (f"{k}.wav", a)) for k, a in probe.items()],
    ).json()
    assert [item["result"]["tags"][0]["tag"] for item in batch["results"]] == list(CLASSES)

    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["MTT_musicnn"]["kind"] == "spectrogram"
    custom = listed["synth"]
    assert (custom["kind"], custom["tags"], custom["description"]) == (
        "custom",
        sorted(CLASSES),
        "tones, noise, clicks",
    )
    assert custom["base"] == body["base"]
    assert custom["training"]["estimate"] == body["estimate"]
    before = tag(client, probe["noise"], model="synth").json()["tags"]

    # A fresh process on the same folder serves the same model.
    with (
        running_server(require_repository(), tmp_path, env=_env(folder)) as restarted,
        httpx.Client(base_url=restarted.url, timeout=300) as other,
    ):
        assert other.get("/v1/models/synth").json()["training"]["id"] == body["id"]
        # Open without a key, the OpenAPI document names no client's model.
        assert "synth" not in other.get("/openapi.json").text
        assert tag(other, probe["noise"], model="synth").json()["tags"] == before

    assert client.delete("/v1/models/synth").status_code == 204
    assert_error(client.get("/v1/models/synth"), 404, "model_not_found")
    assert_error(tag(client, probe["tone"], model="synth"), 404, "model_not_found")
    assert not (folder / "synth").exists()


def test_deleting_a_name_that_is_no_model_name_touches_nothing(
    client: httpx.Client, folder: Path
) -> None:
    # The name becomes a path component: ".." was the folder's parent (500, a rename tried),
    # and a hidden entry is a model another replica is still writing.
    staging = folder / ".tmp-half-written"
    staging.mkdir(parents=True)
    try:
        for name in ("..", ".", ".tmp-half-written"):
            response = client.delete(f"/v1/models/{name.replace('.', '%2e')}")
            assert_error(response, 404, "model_not_found")
        assert staging.is_dir() and folder.is_dir()
    finally:
        staging.rmdir()


def test_an_ensemble_over_two_networks_and_a_one_shot_vote(client: httpx.Client) -> None:
    """Members on MFCC statistics and musicnn features run both networks for one model, its
    taggram on the first member's patches; one example per class gets the fixed one-shot vote
    (MFCC statistics and musicnn's max_pool, weighted) with no estimate."""
    made = create(client, "two_nets", features="mfcc,MTT_musicnn.max_pool", classifier="logistic")
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["selection"] == "cross-validation"
    assert len(body["candidates"]) == 2
    long_clip = clip("clicks", 4242, seconds=7.0)
    result = tag(client, long_clip, model="two_nets", taggram="true").json()
    assert result["tags"][0]["tag"] == "clicks"
    assert len(result["taggram"]["patches"]) == 3  # 7 s in 3 s patches, on the first network's
    if body["classifier"] == "ensemble":
        assert {m["features"] for m in body["members"]} == {
            "mfcc.statistics",
            "MTT_musicnn.max_pool",
        }
    assert client.delete("/v1/models/two_nets").status_code == 204

    data, files = form("one_shot", per_class=1)
    one = client.post("/v1/models", data=data, files=files)
    assert one.status_code == 201, one.text
    shot = one.json()
    assert shot["selection"] == "fallback" and shot["estimate"]["value"] is None
    assert shot["warnings"] == []  # logistic's probabilities are read as such
    assert shot["classifier"] == "ensemble"
    assert [(m["features"], m["classifier"], m["weight"]) for m in shot["members"]] == [
        ("mfcc.statistics", "logistic", 0.6),
        ("MTT_musicnn.max_pool", "logistic", 0.2),
    ]  # MSD_musicnn, the third member, is not loaded here
    for j, kind in enumerate(CLASSES):  # each one example is recognised (seeds as in form)
        answer = tag(client, clip(kind, j), model="one_shot").json()
        assert answer["tags"][0]["tag"] == kind
    assert client.delete("/v1/models/one_shot").status_code == 204


def test_an_svm_or_knn_one_shot_vote_says_what_its_probabilities_are(
    client: httpx.Client,
) -> None:
    """``classifier=svm`` or ``knn`` with one example per class gets the one-shot vote of that
    classifier: it tags the examples' classes as well, but nothing calibrates it, so an svm
    vote's probabilities were nearly even and a knn vote's were steps decided by MFCC
    statistics alone (its weight, 0.6, against 0.2), with nothing in the answer saying so."""
    data, files = form("one_shot_svm", per_class=1, classifier="svm")
    made = client.post("/v1/models", data=data, files=files)
    assert made.status_code == 201, made.text
    assert made.json()["selection"] == "fallback"
    assert {m["classifier"] for m in made.json()["members"]} == {"svm"}
    assert any("svm heads of the one-shot vote" in w for w in made.json()["warnings"])
    for j, kind in enumerate(CLASSES):
        tags = tag(client, clip(kind, j), model="one_shot_svm").json()["tags"]
        assert tags[0]["tag"] == kind
        assert tags[0]["probability"] < 0.6, tags  # 3 classes: even is 0.33
    assert client.delete("/v1/models/one_shot_svm").status_code == 204

    data, files = form("one_shot_knn", per_class=1, classifier="knn")
    made = client.post("/v1/models", data=data, files=files)
    assert made.status_code == 201, made.text
    members = {m["features"]: m["weight"] for m in made.json()["members"]}
    assert members == {"mfcc.statistics": 0.6, "MTT_musicnn.max_pool": 0.2}
    expected = (
        "one example of some class: each knn head answers the class of its one nearest example "
        "with probability 1, so the probabilities are the shares of the vote's weight that "
        "agree (1.0 when every member does), not confidences, and mfcc.statistics (weight 0.6 "
        "of 0.8) outweighs the other members together: its nearest example alone decides the "
        "top tag"
    )
    assert expected in made.json()["warnings"]
    for j, kind in enumerate(CLASSES):  # shares of 0.6 and 0.2 in 0.8: 0, 0.25, 0.75 or 1
        own = tag(client, clip(kind, j), model="one_shot_knn").json()["tags"]
        assert (own[0]["tag"], own[0]["probability"]) == (kind, 1.0)  # its own nearest example
        other = tag(client, clip(kind, 100 + j), model="one_shot_knn").json()["tags"]
        assert {round(t["probability"], 3) for t in other} <= {0.0, 0.25, 0.75, 1.0}, other
    assert client.delete("/v1/models/one_shot_knn").status_code == 204


def _wav(audio: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_a_model_taught_one_tone_and_one_noise_tells_other_tones_from_other_noise(
    client: httpx.Client,
) -> None:
    """Two classes of one example each: the one-shot vote keeps the relative sizes of the
    features' dimensions (standardised per dimension, both examples' dimensions all became +-1
    and tones at other frequencies came out as noise)."""
    noise = [0.1 * np.random.default_rng(seed).standard_normal(3 * 16000) for seed in range(5)]
    tones = {f: test_audio.tone(16000, 3.0, 1, f)[:, 0] for f in (220, 330, 440, 700, 1320, 3000)}
    made = client.post(
        "/v1/models",
        data={"name": "tone_or_noise", "labels": ["tone", "noise"]},
        files=[
            ("files", ("tone.wav", _wav(tones.pop(220)))),
            ("files", ("noise.wav", _wav(noise[0]))),
        ],
    )
    assert made.status_code == 201, made.text
    assert made.json()["selection"] == "fallback"
    queries = {f"{f} Hz": (a, "tone") for f, a in tones.items()}
    queries |= {f"noise {seed}": (a, "noise") for seed, a in enumerate(noise[1:], 1)}
    answers = {
        clip: tag(client, _wav(audio), model="tone_or_noise").json()["tags"]
        for clip, (audio, _) in queries.items()
    }
    top = {clip: tags[0]["tag"] for clip, tags in answers.items()}
    assert top == {clip: kind for clip, (_, kind) in queries.items()}, answers
    assert client.delete("/v1/models/tone_or_noise").status_code == 204


def test_every_bad_creation_gets_a_clear_4xx(client: httpx.Client) -> None:
    assert create(client, "taken", features="MTT_musicnn.penultimate").status_code == 201
    data, files = form("fresh")
    one_class = {**data, "labels": ["tone"] * len(files)}
    unmatched = {**data, "labels": data["labels"][:-1]}  # type: ignore[index]
    undecodable = [*files[:-1], ("files", ("broken.wav", BROKEN_WAV))]
    not_audio = [*files[:-1], ("files", ("notes.txt", b"plain text, no audio" * 40))]
    loud = [*files[:-1], ("files", ("loud.wav", _float_wav(1000.0)))]  # overflows the networks
    over, over_files = form("big", per_class=MAX_EXAMPLES // 3 + 1)
    cases = [
        (create(client, "taken"), 409, "model_exists", "taken"),
        (create(client, "MTT_musicnn"), 409, "model_exists", "MTT_musicnn"),
        # One folder on a case-insensitive volume (Azure Files), one name to a reader.
        (create(client, "TAKEN"), 409, "model_exists", "'taken' already exists"),
        (create(client, "mtt_Musicnn"), 409, "model_exists", "'MTT_musicnn' already exists in"),
        (create(client, "bad name!"), 422, "invalid_examples", "letters"),
        (create(client, ""), 422, "invalid_examples", "'name' field is empty"),
        # A person's words, stored and repeated in every answer: not a megabyte each.
        (
            client.post(
                "/v1/models",
                data={**data, "labels": ["x" * 101, *data["labels"][1:]]},  # type: ignore[index]
                files=files,
            ),
            422,
            "invalid_examples",
            "101 characters, more than the limit of 100",
        ),
        (create(client, "wordy", description="y" * 1001), 422, "invalid_examples", "1001"),
        (
            client.post("/v1/models", data={**data, "name": ["one", "two"]}, files=files),
            422,
            "invalid_examples",
            "'name' is given 2 times",
        ),
        (
            client.post(
                "/v1/models",
                data={**data, "classes": ["tone", "noise", "clicks", "noise"]},
                files=files,
            ),
            422,
            "invalid_examples",
            "['noise'] are declared more than once",
        ),
        (client.post("/v1/models", data=one_class, files=files), 422, "invalid_examples", "two"),
        (client.post("/v1/models", data=unmatched, files=files), 422, "invalid_examples", "labels"),
        (
            client.post(
                "/v1/models",
                data={**data, "classes": ["tone", "noise", "clicks", "hum"]},
                files=files,
            ),
            422,
            "invalid_examples",
            "hum",
        ),
        (
            client.post("/v1/models", data=data, files=undecodable),
            422,
            "undecodable_audio",
            "broken.wav",
        ),
        (
            client.post("/v1/models", data=data, files=not_audio),
            415,
            "unsupported_format",
            "notes.txt",
        ),
        (
            client.post("/v1/models", data=data, files=loud),
            422,
            "invalid_audio",
            "example 12 ('loud.wav')",
        ),
        (client.post("/v1/models", data=over, files=over_files), 413, "too_many_examples", ""),
        (  # past Starlette's 1 MiB per text field: it said to send the audio as a file part
            client.post("/v1/models", data={**data, "description": "x" * (1 << 21)}, files=files),
            400,
            "malformed_request",
            "(the text field 'description' is longer than that)",
        ),
        (create(client, "fresh", features="MTT_vgg.pool5"), 422, "invalid_options", "pool5"),
        (create(client, "fresh", classifier="forest"), 422, "invalid_options", "forest"),
        (
            client.post("/v1/models", data=form(None)[0], files=files),
            422,
            "invalid_examples",
            "name",
        ),
        (
            client.post("/v1/models", content=b"{}", headers={"Content-Type": "application/json"}),
            415,
            "unsupported_media_type",
            "multipart",
        ),
        (client.delete("/v1/models/MTT_musicnn"), 409, "model_read_only", "repository"),
        (client.delete("/v1/models/nothing"), 404, "model_not_found", "nothing"),
    ]
    for response, status, code, word in cases:
        assert_error(response, status, code, word)
    names = {m["name"] for m in client.get("/v1/models").json()["models"]}
    assert not {"fresh", "big", "one", "two", "TAKEN", "mtt_Musicnn"} & names
    assert client.delete("/v1/models/taken").status_code == 204
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("classifier", "svm,,"),
        ("classifier", ","),
        ("classifier", " "),
        ("features", "MTT_musicnn,,mfcc"),
        ("features", ",MTT_musicnn"),
    ],
)
def test_an_empty_entry_in_a_comma_list_is_refused(
    client: httpx.Client, field: str, value: str
) -> None:
    """``classifier=svm,,`` was read as ``svm`` (and a blank one as auto), where ``/v1/tag``
    refuses ``model=A,,B``: a 422 naming the field, before any example is embedded."""
    refused = create(client, "empties", **{field: value})
    assert_error(refused, 422, "invalid_options", f"{field} {value!r} has an empty entry")
    assert client.get("/v1/models/empties").status_code == 404


@pytest.mark.parametrize("label", ["tone\x00", "to\nne", "tone\tnoise", "\x1b[31mtone"])
def test_a_label_with_a_control_character_is_refused(client: httpx.Client, label: str) -> None:
    """A NUL, tab, line break or terminal escape inside a label was stored as part of a tag,
    to come back in every answer, CSV row and terminal line; white space around a label is
    still dropped, as before."""
    data, files = form("controls")
    labels = [label, *data["labels"][1:]]  # type: ignore[index]
    response = client.post("/v1/models", data={**data, "labels": labels}, files=files)
    assert_error(response, 422, "invalid_examples", "control character")
    assert client.get("/v1/models/controls").status_code == 404


def test_labels_sent_as_json_arrays_are_refused_saying_how_labels_are_sent(
    client: httpx.Client,
) -> None:
    """``labels=["a"]`` (a client that encodes a list as JSON in one form field) made the tag
    ``["a"]``, brackets and quotes included, served as such; a whole list in one field was
    "12 files but 1 labels" with no word of why. A tag that merely has brackets stays a tag."""
    data, files = form("arrays")
    kinds: list[str] = data["labels"]  # type: ignore[assignment]
    each = [json.dumps([kind]) for kind in kinds]
    response = client.post("/v1/models", data={**data, "labels": each}, files=files)
    assert_error(
        response,
        422,
        "invalid_examples",
        "the label '[\"tone\"]' of example 1 ('tone_0.wav') is a JSON array",
        "one 'labels' field per file, in the files' order",
        "several tags of one file separated by '|'",
    )
    several = [json.dumps(["tone", "noise"]), *kinds[1:]]
    response = client.post("/v1/models", data={**data, "labels": several}, files=files)
    assert_error(response, 422, "invalid_examples", "'tone|noise'")
    whole = client.post("/v1/models", data={**data, "labels": json.dumps(kinds)}, files=files)
    assert_error(
        whole,
        422,
        "invalid_examples",
        "12 files but 1 labels: send one 'labels' field per file",
        '(the label \'["tone", ',
        "is a JSON array: a field of its own for each item)",
    )
    classes = client.post(
        "/v1/models", data={**data, "classes": json.dumps(list(CLASSES))}, files=files
    )
    assert_error(classes, 422, "invalid_examples", "is a JSON array", "one 'classes' field")
    assert client.get("/v1/models/arrays").status_code == 404
    bracketed = [f"[{kind}]" for kind in kinds]  # not JSON: a tag like any other
    created = client.post("/v1/models", data={**data, "labels": bracketed}, files=files)
    assert created.status_code == 201, created.text
    assert created.json()["classes"] == sorted(f"[{kind}]" for kind in CLASSES)
    assert client.delete("/v1/models/arrays").status_code == 204


def test_a_field_in_the_query_string_is_refused_not_ignored(client: httpx.Client) -> None:
    """The fields are read from the form alone: ``?features=...`` was ignored, and the model
    made with features chosen by cross-validation, not the ones asked for."""
    data, files = form("queried")
    params = {"features": "MTT_musicnn.penultimate", "unknown": "1"}
    response = client.post("/v1/models", params=params, data=data, files=files)
    assert_error(response, 422, "invalid_examples", "query string: features, unknown")
    assert "queried" not in {m["name"] for m in client.get("/v1/models").json()["models"]}


def test_a_failing_example_stops_the_others_before_their_uploads_close(
    client: httpx.Client, server: Server
) -> None:
    """NaN samples fail one example at once while the others are still decoding in worker
    threads: those must finish before the request's spooled files are closed, not read them
    closed (PyAV then prints 'exception being dropped' on stderr, outside the logs)."""
    nan = io.BytesIO()
    sf.write(nan, np.full(16000, np.nan, np.float32), 16000, format="WAV", subtype="FLOAT")
    files = [("files", (f"tone{i}.wav", clip("tone", i))) for i in range(3)]
    files.append(("files", ("nan.wav", nan.getvalue())))
    data = {"name": "racing", "labels": ["a", "b", "a", "b"]}
    for _ in range(5):
        assert_error(
            client.post("/v1/models", data=data, files=files), 422, "invalid_audio", "nan.wav"
        )
    time.sleep(1.0)  # a decode left running would fail on its closed file about now
    assert "I/O operation on closed file" not in server.log()


def test_replicas_sharing_the_folder_follow_each_other(
    client: httpx.Client, folder: Path, tmp_path: Path
) -> None:
    def wait_for(http: httpx.Client, name: str, present: bool) -> None:
        for _ in range(120):  # polls every 0.5 s; allow a loaded machine plenty of rounds
            if (http.get(f"/v1/models/{name}").status_code == 200) == present:
                return
            time.sleep(0.5)
        pytest.fail(f"{name} never became {'present' if present else 'absent'}")

    with (
        running_server(require_repository(), tmp_path, env=_env(folder)) as replica,
        httpx.Client(base_url=replica.url, timeout=300) as other,
    ):
        created = create(other, "shared", classifier="prototypes")
        assert created.status_code == 201, created.text
        wait_for(client, "shared", present=True)
        tags = tag(client, clip("clicks", 77), model="shared").json()["tags"]
        assert tags[0]["tag"] == "clicks"
        assert_error(create(client, "shared"), 409, "model_exists")
        assert client.delete("/v1/models/shared").status_code == 204
        wait_for(other, "shared", present=False)


def test_a_replica_without_a_models_bases_says_why_it_does_not_serve_it(
    client: httpx.Client, folder: Path, tmp_path: Path
) -> None:
    """A replica (or restart) loading fewer networks answered 'no model named' for a model of
    the shared folder that it cannot serve, and then 409 model_exists for the same name."""
    if "mfcc" not in loaded_models(require_repository()):
        pytest.skip("the repository has no mfcc feature extractor")
    created = create(client, "on_mfcc", features="mfcc", classifier="prototypes")
    assert created.status_code == 201, created.text
    env = {**_env(folder), "TAGGRAM_MODELS": "MTT_musicnn"}
    try:
        with (
            running_server(require_repository(), tmp_path, env=env) as replica,
            httpx.Client(base_url=replica.url, timeout=300) as other,
        ):
            why = (
                "the custom model 'on_mfcc' is in the custom-models folder but not served here: "
                "its base models ['mfcc'] are not loaded here (TAGGRAM_MODELS)"
            )
            assert_error(tag(other, clip("tone", 5), model="on_mfcc"), 404, "model_not_found", why)
            assert_error(other.get("/v1/models/on_mfcc"), 404, "model_not_found", why)
            assert_error(
                tag(other, clip("tone", 5), model="nowhere"),
                404,
                "model_not_found",
                "no model named",
            )
    finally:
        assert client.delete("/v1/models/on_mfcc").status_code == 204


def test_tagging_goes_on_while_a_model_is_created(client: httpx.Client) -> None:
    outcome: dict[str, httpx.Response] = {}
    data, files = form("busy", per_class=8, seed=5)

    def creation() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=300) as own:
            outcome["created"] = own.post("/v1/models", data=data, files=files)

    worker = threading.Thread(target=creation)
    worker.start()
    answered_during = 0
    while worker.is_alive():
        response = tag(client, clip("tone", 3))
        assert response.status_code == 200, response.text
        answered_during += worker.is_alive()
    worker.join()
    assert outcome["created"].status_code == 201, outcome["created"].text
    assert answered_during >= 1
    assert client.delete("/v1/models/busy").status_code == 204


def test_an_example_cut_short_is_used_and_its_warning_returned(client: httpx.Client) -> None:
    """A truncated example trained the model without a word: the creation's answer now says
    which example decoded short and why, as /v1/tag does; the stored record does not keep it."""
    data, files = form("cut_example")
    name, whole = files[0][1]
    files[0] = ("files", (name, whole[: len(whole) * 6 // 10]))
    created = client.post("/v1/models", data=data, files=files)
    assert created.status_code == 201, created.text
    try:
        # 1.8 s decoded: shorter than a patch too, which the next warning says.
        warning, padded = created.json()["warnings"]
        assert warning.startswith(f"example 1 ({name!r}): the file is truncated"), warning
        assert padded.startswith(f"example 1 ({name!r}): the audio (1.8 s) is shorter"), padded
        listed = client.get("/v1/models/cut_example").json()
        assert "warnings" not in listed["training"]
    finally:
        assert client.delete("/v1/models/cut_example").status_code == 204


def test_the_same_audio_twice_is_warned_of(client: httpx.Client) -> None:
    """The same file under two labels (a mix-up), or twice under one (a copy held out against
    itself), trained a model without a word; a creation from nothing but copies estimated no
    better than chance, silently too."""
    data, files = form("twice", per_class=2)
    labels = list(data["labels"])  # type: ignore[call-overload]
    files += [files[0], files[1]]  # tone_0 again, as noise; noise_0 again, as noise
    data["labels"] = [*labels, "noise", "noise"]
    created = client.post("/v1/models", data=data, files=files)
    assert created.status_code == 201, created.text
    try:
        mixed, copied = created.json()["warnings"]
        assert mixed.startswith(
            "examples 1 ('tone_0.wav') and 7 ('tone_0.wav') are the same audio to the tagger "
            "but labelled 'tone' and 'noise': no model can tell them apart"
        ), mixed
        assert copied.startswith(
            "examples 2 ('noise_0.wav') and 8 ('noise_0.wav') are the same audio to the tagger, "
            "all labelled 'noise'"
        ), copied
    finally:
        assert client.delete("/v1/models/twice").status_code == 204

    copies = [("files", (f"take_{i}.wav", files[0][1][1])) for i in range(4)]
    created = client.post(
        "/v1/models", data={"name": "copies", "labels": list("aabb")}, files=copies
    )
    assert created.status_code == 201, created.text
    try:
        body = created.json()
        same, chance = body["warnings"]
        assert same.startswith(
            "examples 1 ('take_0.wav'), 2 ('take_1.wav'), 3 ('take_2.wav') and 4 ('take_3.wav') "
            "are the same audio to the tagger but labelled 'a' and 'b'"
        ), same
        estimate = body["estimate"]
        assert estimate["value"] <= estimate["chance"] == 0.5
        assert (
            chance.startswith("the estimate (accuracy 0.") and "not above chance (0.500)" in chance
        )
    finally:
        assert client.delete("/v1/models/copies").status_code == 204


def test_labels_are_one_tag_as_they_look_and_case_twins_are_warned_of(
    client: httpx.Client,
) -> None:
    """'café' typed precomposed and with a combining accent made two classes that look the same
    (in the answer, the listing and every tagging); 'Noise' beside 'noise' made two classes
    without a word."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    data, files = form("spellings", per_class=2)
    data["labels"] = [composed, "noise", "clicks", decomposed, "Noise", "clicks"]
    data["classes"] = [decomposed, "noise", "Noise", "clicks"]
    created = client.post("/v1/models", data=data, files=files)
    assert created.status_code == 201, created.text
    try:
        body = created.json()
        assert body["classes"] == [composed, "noise", "Noise", "clicks"]
        assert body["examples_per_class"][composed] == 2
        assert body["warnings"] == [
            "classes ['noise', 'Noise'] differ only in case: they are separate tags, each with "
            "its own examples; give them one spelling if they are one"
        ]
        tags = tag(client, clip("tone", 1000), model="spellings").json()["tags"]
        assert {t["tag"] for t in tags} == {composed, "noise", "Noise", "clicks"}
    finally:
        assert client.delete("/v1/models/spellings").status_code == 204


def test_a_name_created_again_within_the_second_is_another_version(client: httpx.Client) -> None:
    """The version was the creation time to the second: a name deleted and created again within
    it answered with the old model's version, so a resumed catalogue run could not tell."""
    versions = []
    time.sleep(1.02 - time.time() % 1)  # both creations (about 0.2 s each) in one second
    for labels in (CLASSES, ("a", "b", "c")):
        data, files = form("again", per_class=2, features="mfcc", classifier="prototypes")
        data["labels"] = list(labels) * 2
        created = client.post("/v1/models", data=data, files=files)
        assert created.status_code == 201, created.text
        record = created.json()
        answer = tag(client, clip("tone", 0), model="again").json()
        assert answer["model"]["version"] == f"{record['created']}-{record['id'][:8]}"
        assert client.get("/v1/models/again").json()["version"] == answer["model"]["version"]
        versions.append(answer["model"]["version"])
        assert client.delete("/v1/models/again").status_code == 204
    assert versions[0] != versions[1]


def test_an_aac_example_cut_to_the_limit_is_taken(client: httpx.Client, tmp_path: Path) -> None:
    """A 30 s AAC clip (`ffmpeg -t 30`, as previews are cut) decodes whole AAC frames, 8 samples
    past 30 s, and was refused as running past the limit of 30 s; a clip a second too long still
    is."""
    source = test_audio.write_wav(tmp_path / "song.wav", test_audio.music(44100, 32.0), 44100)
    for seconds, status in (("30", 201), ("31", 413)):
        preview = tmp_path / f"preview_{seconds}.m4a"
        test_audio.ffmpeg("-i", source, "-t", seconds, "-c:a", "aac", preview)
        data, files = form(f"preview_{seconds}", per_class=2)
        files[0] = ("files", (preview.name, preview.read_bytes()))
        created = client.post("/v1/models", data=data, files=files)
        assert created.status_code == status, created.text
    assert_error(created, 413, "audio_too_long", "example 1 ('preview_31.m4a')")
    assert client.delete("/v1/models/preview_30").status_code == 204


def test_cli_creates_lists_and_deletes(server: Server, tmp_path: Path) -> None:
    rows = ["path,label"]
    for i in range(3):
        for j, kind in enumerate(CLASSES):
            (tmp_path / f"{kind}{i}.wav").write_bytes(clip(kind, 500 + 10 * i + j))
            rows.append(f"{kind}{i}.wav,{kind}")
    cut = tmp_path / "tone0.wav"  # an example that stops early: used, with a warning
    cut.write_bytes(cut.read_bytes()[:30_000])
    manifest = tmp_path / "examples.csv"
    manifest.write_text("\n".join(rows) + "\n")

    def taggram(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taggram", "models", *args, "--url", server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    typo = taggram("create", "from_cli", str(manifest), "--class=tone", "--class=noise")
    assert typo.returncode == 1 and "labels ['clicks'] are not among the classes" in typo.stderr
    classes = [f"--class={kind}" for kind in CLASSES]
    made = taggram("create", "from_cli", str(manifest), "--classifier", "knn", *classes)
    assert made.returncode == 0, made.stderr
    assert "from_cli: knn on" in made.stdout and "3 classes from 9 examples" in made.stdout
    assert made.stderr.startswith("warning: example 1 ('tone0.wav'): the file is truncated")
    assert "from_cli" in taggram("list").stdout
    again = taggram("create", "from_cli", str(manifest))
    assert again.returncode == 1 and "409 model_exists" in again.stderr
    assert taggram("delete", "from_cli").returncode == 0
    assert "from_cli" not in taggram("list").stdout
    # /v1 on the URL: list printed nothing (the 404 of /v1/v1/models unread), delete 'not_found'
    wrong = subprocess.run(
        [sys.executable, "-m", "taggram", "models", "list", "--url", f"{server.url}/v1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert wrong.returncode == 2 and "no taggram service answers there" in wrong.stderr


def test_creating_and_deleting_need_the_admin_scope(folder: Path, tmp_path: Path) -> None:
    tag_key, admin_key = "tag-scope-key-0123456789", "admin-scope-key-0123456789"
    env = {**_env(folder), "TAGGRAM_API_KEYS": f"{tag_key},{admin_key}:admin"}
    with (
        running_server(require_repository(), tmp_path, env=env) as keyed,
        httpx.Client(base_url=keyed.url, timeout=300) as http,
    ):
        data, files = form("guarded", per_class=2)

        def as_key(key: str | None) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"} if key else {}

        no_key = http.post("/v1/models", data=data, files=files)
        assert no_key.status_code == 401, no_key.text
        tag_only = http.post("/v1/models", data=data, files=files, headers=as_key(tag_key))
        assert tag_only.status_code == 403, tag_only.text
        made = http.post("/v1/models", data=data, files=files, headers=as_key(admin_key))
        assert made.status_code == 201, made.text
        listed = http.get("/v1/models/guarded", headers=as_key(tag_key))
        assert listed.status_code == 200 and listed.json()["kind"] == "custom"
        cli_list = subprocess.run(
            [sys.executable, "-m", "taggram", "models", "list", "--url", keyed.url],
            cwd=ROOT,
            env={**os.environ, "TAGGRAM_API_KEY": tag_key},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert cli_list.returncode == 0 and "guarded: " in cli_list.stdout, cli_list.stderr
        assert http.delete("/v1/models/guarded", headers=as_key(tag_key)).status_code == 403
        assert http.delete("/v1/models/guarded", headers=as_key(admin_key)).status_code == 204


def test_the_location_of_a_created_model_is_under_the_root_path(tmp_path: Path) -> None:
    """Behind a proxy serving the service under /taggram, the 201's ``Location`` was
    ``/v1/models/<name>``: a client following it left the service for the proxy's other paths
    (404 from the prefix proxy)."""
    env = {**_env(tmp_path / "models"), "TAGGRAM_ROOT_PATH": "/taggram"}
    with (
        running_server(require_repository(), tmp_path, env=env) as prefixed,
        prefix_proxy(prefixed.url, "/taggram") as proxy,
        httpx.Client(base_url=f"{proxy}/taggram", timeout=300) as http,
    ):
        created = create(http, "proxied")
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/taggram/v1/models/proxied"
        followed = httpx.get(httpx.URL(proxy).join(created.headers["Location"]))
    assert followed.status_code == 200 and followed.json()["name"] == "proxied", followed.text


def test_an_example_shorter_than_a_patch_is_warned_of(client: httpx.Client) -> None:
    """A one-second example was taught without a word, although two thirds of the patch its
    embedding came from was zero padding (a tagging of the same file says so)."""
    data, files = form("short_example", per_class=2)
    files[0] = ("files", ("tone_0.wav", clip("tone", 0, seconds=1.0)))
    created = client.post("/v1/models", data=data, files=files)
    assert created.status_code == 201, created.text
    try:
        # One warning for the example, not one per network that embedded it: the longest
        # patch's (the default features' networks all cut 2.99 s patches).
        (warning,) = created.json()["warnings"]
        assert warning.startswith(
            "example 1 ('tone_0.wav'): the audio (1.0 s) is shorter than one patch of "
        ), warning
        assert warning.endswith(
            " (2.99 s): it was zero-padded, so 66.6% of what the model heard was silence"
        ), warning
        tagged = tag(client, clip("tone", 0, seconds=1.0), model="short_example").json()
        assert any("(1.0 s) is shorter than one patch" in w for w in tagged["warnings"])
    finally:
        assert client.delete("/v1/models/short_example").status_code == 204


def test_padding_is_warned_of_only_for_the_networks_the_model_reads(
    folder: Path, tmp_path: Path
) -> None:
    """With MTT_sample_cnn (3.69 s patches) among the candidates, every 3 s example was warned
    of as 19 % padding, although the model chosen read only MTT_musicnn (2.99 s) and heard no
    padding at all: the warnings now follow the chosen members' networks."""
    repository = require_repository()
    if not (repository / "MTT_sample_cnn").is_dir():
        pytest.skip("the model repository has no MTT_sample_cnn")
    env = {**_env(folder), "TAGGRAM_MODELS": "MTT_musicnn,MTT_sample_cnn"}
    with (
        running_server(repository, tmp_path, env=env) as started,
        httpx.Client(base_url=started.url, timeout=300) as http,
    ):
        for seed in (0, 1):
            data, files = form(
                "padded_net",
                per_class=2,
                seed=seed,
                features="MTT_musicnn.penultimate,MTT_sample_cnn.embedding",
                classifier="prototypes",
            )
            created = http.post("/v1/models", data=data, files=files)
            assert created.status_code == 201, created.text
            try:
                body = created.json()
                chosen = body["features"].split(",")
                reads_student = any(f.startswith("MTT_sample_cnn.") for f in chosen)
                warnings = body["warnings"]
                padding = [w for w in warnings if "shorter than one patch" in w]
                assert len(padding) == (len(files) if reads_student else 0), (chosen, padding)
                for index, warning in enumerate(padding):
                    assert warning.startswith(f"example {index + 1} ("), warning
                    assert "one patch of MTT_sample_cnn (3.69 s)" in warning, warning
            finally:
                assert http.delete("/v1/models/padded_net").status_code == 204
