"""Every bad request gets a 4xx problem+json naming the problem; the server stays healthy."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.e2e.conftest import tag_file
from tests.support import audio
from tests.support.paths import require_repository
from tests.support.server import Server, running_server

PROBLEM_JSON = "application/problem+json"


def _wav(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    # /v2 serves the problem as application/json, as Open Inference Protocol servers do.
    v2 = response.request.url.path.startswith("/v2/")
    assert response.headers["Content-Type"] == ("application/json" if v2 else PROBLEM_JSON)
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["type"] == f"urn:taggram:problem:{code}"
    assert problem["title"] and problem["detail"]
    assert problem["instance"] == response.request.url.path
    assert problem["request_id"] == response.headers["X-Request-ID"]


def _raw(
    client: httpx.Client, content: bytes, media_type: str, **params: str | int | float
) -> httpx.Response:
    return client.post(
        "/v1/tag", content=content, headers={"Content-Type": media_type}, params=params
    )


def test_each_bad_request_names_its_problem(client: httpx.Client) -> None:
    tone = np.sin(np.arange(16000) / 10).astype(np.float32)[:, None]
    good = _wav(tone, 16000)
    long = _wav(np.resize(tone, (20 * 16000, 1)), 16000)  # 17,000 patches at a 1 ms hop
    nan = tone.copy()
    nan[5] = np.nan
    cases = [
        (_raw(client, b"", "audio/wav"), 400, "empty_body"),
        (client.post("/v1/tag", files={"other": ("a.wav", good)}), 400, "empty_body"),
        (_raw(client, b"ID3 but no mp3 frames" * 50, "audio/mpeg"), 422, "undecodable_audio"),
        (_raw(client, _wav(nan, 16000, "FLOAT"), "audio/wav"), 422, "invalid_audio"),
        # 40 kB declaring 5.5 hours (2 Hz): refused from the header, never resampled.
        (_raw(client, _wav(np.zeros((20000, 1)), 2), "audio/wav"), 413, "audio_too_long"),
        (_raw(client, good, "text/plain"), 415, "unsupported_media_type"),
        (_raw(client, good, "audio/wav", model="no_such_model"), 404, "model_not_found"),
        (_raw(client, good, "audio/wav", top_k=0), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", threshold=2), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", taggram="maybe"), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", embeddings="no_layer"), 422, "invalid_options"),
        # a feature extractor has no tags: without an embedding its answer was an empty 200
        (_raw(client, good, "audio/wav", model="mfcc"), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", hop=10), 422, "invalid_options"),
        # Non-finite numbers are options out of range, not server errors.
        (_raw(client, good, "audio/wav", hop="inf"), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", hop="nan"), 422, "invalid_options"),
        (_raw(client, good, "audio/wav", threshold="-inf"), 422, "invalid_options"),
        # An option in the query and the form must agree.
        (
            client.post(
                "/v1/tag", params={"top_k": 3}, data={"top_k": "4"}, files={"file": ("a.wav", good)}
            ),
            422,
            "invalid_options",
        ),
        # Batch options are checked once for the request, not per file.
        (
            client.post("/v1/tag/batch", params={"hop": 10}, files={"files": ("a.wav", good)}),
            422,
            "invalid_options",
        ),
        (
            client.post("/v1/tag/batch", content=good, headers={"Content-Type": "audio/wav"}),
            415,
            "unsupported_media_type",
        ),
        (_raw(client, good, "audio/wav", unknown="1"), 422, "invalid_options"),
        (_raw(client, long, "audio/wav", hop=0.001), 422, "too_many_patches"),
        (client.get("/v1/models/no_such_model"), 404, "model_not_found"),
        (client.get("/v2/nothing"), 404, "not_found"),
    ]
    for response, status, code in cases:
        _assert_error(response, status, code)
    assert _raw(client, good, "audio/wav").status_code == 200


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("video/mp4", "m4a_aac"),
        ("video/quicktime", "m4a_aac"),
        ("video/webm", "webm_opus"),
        ("video/x-matroska", "mka_vorbis"),
        ("application/ogg", "ogg_opus"),
        ("application/mp4", "m4a_aac"),
    ],
)
def test_a_raw_body_typed_as_its_video_container_is_tagged(
    client: httpx.Client, media_type: str, kind: str, tmp_path: Path
) -> None:
    """What a browser's File.type or Python's mimetypes says of a .mp4, .mov, .webm or .mkv
    (video/*), and the registered Ogg and MP4 types: the bytes decide, as for audio/*."""
    wav = audio.write_wav(tmp_path / "tone.wav", audio.tone(44100, 2.0), 44100)
    suffix, _ = audio.ENCODINGS[kind]
    data = audio.encode(wav, tmp_path / f"tone{suffix}", kind).read_bytes()
    response = _raw(client, data, media_type)
    assert response.status_code == 200, response.text
    assert abs(response.json()["audio"]["duration_seconds"] - 2.0) < 0.05


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/MTT_musicnn,MTT_vgg",
        "/v1/models/%2C",
        "/v1/models/%20",
        "/v1/models/%20MTT_musicnn",
        "/v2/models/MTT_musicnn,MTT_vgg",
        "/v2/models/%2C/config",
        "/v2/models/%20/ready",
    ],
)
def test_a_model_path_names_exactly_one_model(client: httpx.Client, path: str) -> None:
    """A model's path was read as the ``model`` option's comma-separated list: /v1/models/A,B
    answered A's metadata, and a blank or "," name the default model's (/v2 said it was ready),
    for a model that does not exist."""
    _assert_error(client.get(path), 404, "model_not_found")


@pytest.mark.parametrize("path", ["/v1/tag", "/v1/tag/batch", "/v1/models"])
@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Type", "")],
        [("Content-Type", ";")],
        [("Content-Type", ";;;")],
        [("Content-Type", "; charset=utf-8")],
        [("Content-Type", "audio/")],
        [("Content-Type", "audio/mp eg")],
        [("Content-Type", "audio/wav, text/plain")],
        [("Content-Type", "audio/wav"), ("Content-Type", "text/plain")],
    ],
)
def test_a_content_type_that_names_no_media_type_is_refused(
    client: httpx.Client, path: str, headers: list[tuple[str, str]]
) -> None:
    """A Content-Type header that is there but blank or broken (``;;;``, ``audio/``, a list, two
    different ones) was read as no header at all, or as its first value: /v1/tag then tagged the
    body as application/octet-stream, where only an absent header means that (RFC 9110), and
    the client's mistake went unseen. Every upload route now refuses it, quoting it."""
    good = _wav(np.zeros((16000, 1)), 16000)
    response = client.post(path, content=good, headers=headers)
    _assert_error(response, 415, "unsupported_media_type")
    assert "Content-Type" in response.json()["detail"]
    # A header left out is still the raw body typed application/octet-stream.
    if path == "/v1/tag":
        assert client.post(path, content=good).status_code == 200


@pytest.mark.parametrize("path", ["/v1/tag", "/v1/tag/batch"])
def test_bad_options_are_described_alike_in_the_query_and_the_form(
    client: httpx.Client, path: str
) -> None:
    good = _wav(np.zeros((16000, 1)), 16000)
    field = "file" if path == "/v1/tag" else "files"
    bad = {"top_k": "abc", "unknown": "1"}
    query = client.post(path, params=bad, files={field: ("a.wav", good)})
    form = client.post(path, data=bad, files={field: ("a.wav", good)})
    for response in (query, form):
        _assert_error(response, 422, "invalid_options")
        assert "pydantic" not in response.text  # no library's help links, as the query has none
    query_errors, form_errors = query.json()["errors"], form.json()["errors"]
    assert [e["location"] for e in query_errors] == [["query", "top_k"], ["query", "unknown"]]
    assert [e["location"] for e in form_errors] == [["form", "top_k"], ["form", "unknown"]]
    assert [e["message"] for e in query_errors] == [e["message"] for e in form_errors]
    assert form.json()["detail"] == query.json()["detail"].replace("query.", "form.")


def test_thousands_of_unknown_options_are_listed_a_few_and_counted(client: httpx.Client) -> None:
    """A 422 named every one of thousands of unknown query parameters, in its detail and its
    ``errors``: the first ten are listed, then how many more there are."""
    unknown = {f"p{i:04d}": "1" for i in range(2000)}
    for path in ("/v1/tag", "/v1/tag/batch"):
        refused = client.post(path, params=unknown)
        problem = refused.json()
        assert (refused.status_code, problem["code"]) == (422, "invalid_options"), refused.text
        assert len(problem["errors"]) == 10, path
        assert problem["detail"].startswith("query.p0000: "), problem["detail"]
        assert "p0009" in problem["detail"] and "p0010" not in problem["detail"]
        assert problem["detail"].endswith("; and 1990 more"), problem["detail"][-80:]
        assert len(refused.content) < 4096, path
    models = client.post("/v1/models", params=unknown)
    assert models.status_code == 422, models.text
    detail = models.json()["detail"]
    assert detail.endswith("p0008, p0009, and 1990 more") and len(detail) < 200, detail


@pytest.mark.parametrize("path", ["/v1/tag", "/v1/tag/batch"])
def test_audio_sent_as_a_text_field_is_refused_saying_to_send_a_file(
    client: httpx.Client, path: str
) -> None:
    """``curl -F file=<song.wav`` (``<`` for ``@``) sends the bytes as a text field. It was
    "no file field named 'file'" on /v1/tag, while a batch dropped it without a word and tagged
    the other files; past 1 MiB it was Starlette's bare "Part exceeded maximum size", then a
    400 ``malformed_request``, where README.md's error table (and a smaller one) say ``empty_body``.
    """
    good = _wav(np.zeros((16000, 1)), 16000)
    field = "file" if path == "/v1/tag" else "files"
    files = [] if path == "/v1/tag" else [(field, ("a.wav", good))]
    # a part without a filename is a text field
    small = client.post(path, files=[*files, (field, (None, good))])
    large = client.post(path, files=[*files, (field, (None, b"x" * (1 << 21)))])
    for response in (small, large):
        _assert_error(response, 400, "empty_body")
        assert response.json()["detail"] == (
            f"the multipart field {field!r} is text, not a file; send the audio as a file part "
            f"(curl -F {field}=@song.mp3)"  # a batch's field is files: file= was the wrong hint
        )


@pytest.mark.parametrize(
    ("path", "parts", "hint"),
    [
        # curl -F file=@a.wav -F top_k=@k.txt: the option became a second file part
        ("/v1/tag", [("top_k", 1)], "('top_k' is a file part: options are text fields"),
        # curl -F file=@a.wav -F file=@b.wav: two files to the one-file route
        ("/v1/tag", [("file", 1)], "(one file per request; POST /v1/tag/batch takes several"),
        # a batch over TAGGRAM_MAX_BATCH_FILES (32)
        ("/v1/tag/batch", [("files", 32)], "(TAGGRAM_MAX_BATCH_FILES: split the files among"),
    ],
)
def test_a_file_part_too_many_is_refused_saying_which_and_why(
    client: httpx.Client, path: str, parts: list[tuple[str, int]], hint: str
) -> None:
    """Starlette's bare "Too many files. Maximum number of files is N." got one hint for every
    case, that options are text fields: wrong for two `file` parts or a batch over its limit."""
    good = _wav(np.zeros((16000, 1)), 16000)
    first = "file" if path == "/v1/tag" else "files"
    files = [(first, ("a.wav", good))]
    files += [(name, ("b.wav", good)) for name, count in parts for _ in range(count)]
    response = client.post(path, files=files)
    _assert_error(response, 400, "malformed_request")
    detail = response.json()["detail"]
    assert detail.startswith("Too many files. Maximum number of files is ")
    assert hint in detail
    assert ("options are text fields" in detail) == (parts[0][0] == "top_k")


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/v1/tag", "(options are text fields, each given once: model, top_k, threshold, "),
        ("/v1/tag/batch", "(options are text fields, each given once: model, top_k, threshold, "),
        ("/v1/models", "(one 'labels' field per file, at most "),
    ],
)
def test_text_fields_past_the_limit_are_refused_saying_which_fields_are_read(
    client: httpx.Client, path: str, hint: str
) -> None:
    """More text fields than a route reads was python-multipart's bare "Too many fields.
    Maximum number of fields is 7.": a count, but not what those fields are (/v1/tag has 6
    options) nor that the rest of the form was never looked at."""
    # past /v1/models' limit too: TAGGRAM_MAX_CUSTOM_EXAMPLES + TAGGRAM_MAX_CUSTOM_CLASSES + 8
    fields = {f"field_{i:03d}": "1" for i in range(400)}
    first = "file" if path == "/v1/tag" else "files"
    response = client.post(path, data=fields, files=[(first, ("a.wav", b"RIFF"))])
    _assert_error(response, 400, "malformed_request")
    detail = response.json()["detail"]
    assert detail.startswith("too many text fields: the form is read up to "), detail
    assert "'field_" in detail, detail  # names the first field past the limit
    assert hint in detail, detail


@pytest.mark.parametrize("name", ["file", "top_k"])
def test_a_batch_file_part_under_another_name_is_refused_saying_where_files_go(
    client: httpx.Client, name: str
) -> None:
    """A batch given a ``file`` part (the one-file route's name) or an option as a file part
    answered pydantic's "form.file: Extra inputs are not permitted"."""
    good = _wav(np.zeros((16000, 1)), 16000)
    response = client.post(
        "/v1/tag/batch", files=[("files", ("a.wav", good)), (name, ("b.wav", good))]
    )
    _assert_error(response, 422, "invalid_options")
    assert response.json()["detail"] == (
        f"file parts [{name!r}] are not read: the audio goes in 'files' fields, and options are "
        "text fields (curl -F top_k=5)"
    )


def test_the_hop_range_is_the_chosen_models_in_the_schema_and_the_refusals(
    client: httpx.Client,
) -> None:
    tag = client.get("/openapi.json").json()["paths"]["/v1/tag"]["post"]
    hop = next(p for p in tag["parameters"] if p["name"] == "hop")["schema"]
    assert (hop["minimum"], hop["maximum"]) == (1 / 16000, 59049 / 16000)  # the longest patch
    assert "2.992 s: MSD_musicnn" in hop["description"]
    assert "3.69056 s: MTT_sample_cnn" in hop["description"]
    good = _wav(np.zeros((16000, 1)), 16000)
    assert _raw(client, good, "audio/wav", model="MTT_sample_cnn", hop=3.5).status_code == 200
    refusals = {
        ("MTT_musicnn", 3.5): ("2.992", "3.5"),
        ("MTT_musicnn", 1e9): ("2.992", "1000000000"),
        ("MTT_musicnn", 2.9920001): ("2.992", "2.9920001"),  # not "got 2.992", the bound itself
        ("MTT_sample_cnn", 1e9): ("3.6905625", "1000000000"),
    }
    for (model, value), (span, got) in refusals.items():
        refused = _raw(client, good, "audio/wav", model=model, hop=value)
        _assert_error(refused, 422, "invalid_options")
        assert refused.json()["detail"] == (
            f"hop must be between 6.25e-05 and {span} seconds (one sample to one patch of "
            f"{model}), got {got}"
        )


def test_empty_model_names_and_repeated_options_are_refused(client: httpx.Client) -> None:
    good = _wav(np.zeros((16000, 1)), 16000)
    for model in ("", ",", "MTT_musicnn,,MTT_vgg", " , MTT_vgg"):
        refused = _raw(client, good, "audio/wav", model=model)
        _assert_error(refused, 422, "invalid_options")
        (problem,) = refused.json()["errors"]
        assert problem["location"] == ["query", "model"]
        assert f"{model!r} names an empty model" in problem["message"]
    cases = [
        (client.post("/v1/tag?top_k=3&top_k=5", files={"file": ("a.wav", good)}), "query"),
        (
            client.post("/v1/tag?hop=1&hop=1", content=good, headers={"Content-Type": "audio/wav"}),
            "query",
        ),
        (client.post("/v1/tag/batch?top_k=3&top_k=5", files={"files": ("a.wav", good)}), "query"),
        (
            client.post("/v1/tag", data={"top_k": ["3", "5"]}, files={"file": ("a.wav", good)}),
            "form",
        ),
    ]
    for response, where in cases:
        _assert_error(response, 422, "invalid_options")
        (problem,) = response.json()["errors"]
        assert problem["location"] == [where, problem["location"][1]]
        assert problem["message"] == "given 2 times: give it once"
    # Several files in a batch are the one field that repeats.
    two = [("files", ("a.wav", good)), ("files", ("b.wav", good))]
    assert client.post("/v1/tag/batch", params={"top_k": 1}, files=two).status_code == 200


def test_float_audio_far_outside_the_unit_range_is_refused_not_scored_null(
    client: httpx.Client,
) -> None:
    """A float WAV may hold any finite value; samples around 100 and beyond (float audio that
    was never normalised, integers written as floats) overflow the networks into NaN, which JSON
    has no number for: a 422 saying so, never a 200 whose probabilities are null."""
    tone = np.sin(2 * np.pi * 440 * np.arange(5 * 16000) / 16000).astype(np.float32)[:, None]
    for peak in (1e2, 1e30):
        loud = _wav(peak * tone, 16000, "FLOAT")
        refused = _raw(client, loud, "audio/wav", model="MTT_musicnn")
        _assert_error(refused, 422, "invalid_audio")
        assert f"peak at {peak:.3g}" in refused.json()["detail"], refused.text
        features = _raw(client, loud, "audio/wav", model="mfcc", embeddings="statistics")
        _assert_error(features, 422, "invalid_audio")
        batch = client.post(
            "/v1/tag/batch",
            files=[("files", ("ok.wav", _wav(tone, 16000))), ("files", ("loud.wav", loud))],
        )
        assert batch.status_code == 200, batch.text
        ok, bad = batch.json()["results"]
        assert ok["error"] is None and bad["error"]["code"] == "invalid_audio"
    # Clipped but sane float audio is tagged as before.
    hot = _raw(client, _wav(1.5 * tone, 16000, "FLOAT"), "audio/wav", model="MTT_musicnn")
    assert hot.status_code == 200, hot.text
    assert all(isinstance(item["probability"], float) for item in hot.json()["tags"])


@pytest.mark.parametrize(
    ("offset", "value"),
    [(20, 0x1234), (34, 0)],  # the fmt chunk's format tag; its bits per sample
    ids=["unknown-format-tag", "zero-bits-per-sample"],
)
def test_a_wav_in_a_codec_ffmpeg_does_not_know_is_undecodable(
    client: httpx.Client, offset: int, value: int
) -> None:
    """FFmpeg opens such a WAV with a stream but no codec context: a 422 naming it, never the
    500 an AttributeError on that missing context once gave (alone and inside a batch)."""
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)[:, None]
    good = _wav(0.5 * tone, 16000)
    bad = bytearray(good)
    bad[offset : offset + 2] = value.to_bytes(2, "little")
    refused = _raw(client, bytes(bad), "audio/wav")
    _assert_error(refused, 422, "undecodable_audio")
    assert "codec FFmpeg does not know" in refused.json()["detail"]
    batch = client.post(
        "/v1/tag/batch", files=[("files", ("bad.wav", bytes(bad))), ("files", ("ok.wav", good))]
    )
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["results"]
    assert (first["error"]["code"], first["error"]["status"]) == ("undecodable_audio", 422)
    assert second["result"]["audio"]["duration_seconds"] == pytest.approx(1.0)


@pytest.mark.parametrize("size", [2**40, 2**63, 2**64 - 1])
def test_an_mp4_box_declaring_more_than_the_file_holds_is_undecodable(
    client: httpx.Client, size: int
) -> None:
    """A 64-bit box size past what a seek takes (2**63 and up) gave a 500 while the service
    looked for the index FFmpeg could not find; any size past the end is a box cut short."""
    ftyp = (20).to_bytes(4, "big") + b"ftypM4A " + bytes(4) + b"M4A "
    mdat = (1).to_bytes(4, "big") + b"mdat" + size.to_bytes(8, "big") + bytes(64)
    refused = _raw(client, ftyp + mdat, "audio/mp4")
    _assert_error(refused, 422, "undecodable_audio")
    assert refused.json()["detail"].startswith("the MP4 file has no index")


@pytest.mark.parametrize(("path", "field"), [("/v1/tag/batch", "files"), ("/v1/tag", "file")])
def test_a_multipart_body_cut_short_is_refused_not_tagged_in_part(
    client: httpx.Client, path: str, field: str
) -> None:
    """A body that ends before its closing boundary (a client or proxy that stopped mid-upload)
    parsed as the parts complete before the cut: a batch of two files answered 200 with one
    result, the other dropped without a word, and /v1/tag said it had no 'file' field."""
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)[:, None]
    wav = _wav(0.5 * tone, 16000)

    def part(name: str) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{field}"; filename="{name}"'
        return f"--B\r\n{disposition}\r\n\r\n".encode() + wav + b"\r\n"

    whole = part("a.wav") + (part("b.wav") if field == "files" else b"") + b"--B--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    for cut in (len(whole) - 30, len(whole) - 9, len(whole) - 4):  # in a part, before "--"
        response = client.post(path, content=whole[:cut], headers=headers)
        _assert_error(response, 400, "malformed_request")
        assert "ends before its closing boundary" in response.json()["detail"]
    answered = client.post(path, content=whole, headers=headers)
    assert answered.status_code == 200, answered.text
    if field == "files":
        assert [item["filename"] for item in answered.json()["results"]] == ["a.wav", "b.wav"]


def test_upload_over_the_byte_limit_is_refused(client: httpx.Client, server: Server) -> None:
    limit = 32 * 1024 * 1024  # SERVER_ENV's TAGGRAM_MAX_UPLOAD_BYTES

    def chunks() -> Iterator[
        bytes
    ]:  # streamed without Content-Length: the server counts as it reads
        for _ in range(limit // (1 << 20) + 2):
            yield b"\x00" * (1 << 20)

    response = client.post("/v1/tag", content=chunks(), headers={"Content-Type": "audio/wav"})
    _assert_error(response, 413, "payload_too_large")
    # A declared Content-Length over the limit is refused before any of the body is read.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/tag HTTP/1.1\r\nHost: test\r\nContent-Type: audio/wav\r\n"
            + f"Content-Length: {limit + 1}\r\n\r\n".encode()
        )
        answer = b""
        while b"}}" not in answer and (chunk := connection.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b'"payload_too_large"' in answer


@pytest.fixture(scope="module")
def small_queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One model, one patch per batch and room for 20 queued patches: easy to overload."""
    env = {
        "TAGGRAM_MODELS": "MTT_vgg",
        "TAGGRAM_DEFAULT_MODEL": "MTT_vgg",
        "TAGGRAM_MAX_BATCH_SIZE": "1",
        "TAGGRAM_MAX_QUEUE_PATCHES": "20",
        "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
    }
    with running_server(require_repository(), tmp_path_factory.mktemp("logs"), env=env) as server:
        yield server


def test_full_queue_answers_429_with_retry_after(
    small_queue_server: Server, music_wav: Path
) -> None:
    clip = music_wav  # 30 s: 11 patches

    def run(_: int) -> httpx.Response:
        with httpx.Client(base_url=small_queue_server.url, timeout=300) as http:
            return tag_file(http, clip)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(run, range(8)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses, statuses
    for response in responses:
        if response.status_code == 429:
            _assert_error(response, 429, "overloaded")
            assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/v1/models/MTT_musicnn"), ("DELETE", "/v1/models/none")],
)
def test_the_model_routes_refuse_query_parameters_they_do_not_read(
    client: httpx.Client, method: str, path: str
) -> None:
    """``GET /v1/models?kind=custom`` answered 200 with every model, as if it had filtered;
    the model routes read no query parameter, so one is refused as an unknown tag option is.
    A parameter with no name (``?=1``) is named ``''`` (its detail once read ``query.:``)."""
    params = [("kind", "custom"), ("kind", "x"), ("q", ""), ("", "1")]
    refused = client.request(method, path, params=params)
    problem = refused.json()
    assert (refused.status_code, problem["code"]) == (422, "invalid_options"), refused.text
    assert [e["location"] for e in problem["errors"]] == [
        ["query", "kind"],
        ["query", "q"],
        ["query", ""],
    ]
    assert problem["detail"].startswith("query.kind: Extra inputs are not permitted"), problem
    assert "; query.'': Extra inputs are not permitted" in problem["detail"], problem
    if method == "GET":
        assert client.get(path).status_code == 200
