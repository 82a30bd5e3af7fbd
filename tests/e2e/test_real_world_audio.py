"""The audio people actually have, through a real server: damaged MP3s, M4A, WebM, unterminated
Opus, compressed bodies, and clear refusals for what is not audio.

Every generated file is made at test time from the ``music_wav`` fixture; the real-world
files of ``../shared/bugs`` are checked against the durations its README gives.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from taggram.service.api.content_encoding import MAX_GZIP_MEMBERS
from tests.e2e.conftest import excerpt, probabilities, tag_file
from tests.support import audio
from tests.support.paths import require_bugs
from tests.support.server import Server

# ../shared/bugs: file -> the duration ffmpeg decodes from it (its README), to ±0.05 s.
BUG_DURATIONS = {
    "01_mp3_cut_midframe.mp3": 30.01,
    "02_mp3_leading_zeros.mp3": 30.07,
    "06b_mp3_vbr_noxing_noise_intro_60s.mp3": 60.03,
    "20_conc_piano_vbr_xing.mp3": 60.00,
    "22_mp3_concatenated_xing.mp3": 38.09,
    "08_aac_lc.m4a": 30.00,
    "11_opus_no_eos.opus": 30.01,
}
TOLERANCE = 0.05


def _top(body: dict, k: int) -> list[str]:
    return [item["tag"] for item in body["tags"][:k]]


@pytest.mark.parametrize("name", list(BUG_DURATIONS))
def test_real_world_file_is_tagged_whole(name: str, client: httpx.Client) -> None:
    response = tag_file(client, require_bugs() / name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert abs(body["audio"]["duration_seconds"] - BUG_DURATIONS[name]) <= TOLERANCE
    # Every decoded second is tagged: the last patch ends at the end of the audio.
    assert body["patches"] == pytest.approx(BUG_DURATIONS[name] / 2.992, abs=1.0)
    if name == "11_opus_no_eos.opus":
        assert len(body["warnings"]) == 1 and "end-of-stream" in body["warnings"][0]
    else:
        assert body["warnings"] == []


def test_vbr_mp3_without_xing_tags_like_its_control(client: httpx.Client) -> None:
    folder = require_bugs()
    bodies = []
    for name in ("06b_mp3_vbr_noxing_noise_intro_60s.mp3", "20_conc_piano_vbr_xing.mp3"):
        response = tag_file(client, folder / name)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    without, control = (probabilities(body) for body in bodies)
    # The same audio; without a LAME/Xing header the encoder's delay (29 ms) is not trimmed, so
    # every patch starts 29 ms later: the same five leading tags, scores within 0.05.
    assert set(_top(bodies[0], 5)) == set(_top(bodies[1], 5))
    assert max(abs(without[tag] - control[tag]) for tag in control) < 0.05


@pytest.fixture(scope="module")
def clip_wav(music_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``music_wav``'s first 20 s (44.1 kHz stereo), the source of every generated file here."""
    folder = tmp_path_factory.mktemp("real_world")
    return excerpt(music_wav, folder / "clip.wav", 20)


@pytest.fixture(scope="module")
def clip_response(server: Server, clip_wav: Path) -> dict:
    with httpx.Client(base_url=server.url, timeout=300) as http:
        response = tag_file(http, clip_wav)
    assert response.status_code == 200, response.text
    return response.json()


def _assert_tags_like(body: dict, reference: dict) -> None:
    """A lossy or damaged copy of the same 20 s: most of the leading tags stay leading."""
    assert len(set(_top(reference, 3)) & set(_top(body, 5))) >= 2


@pytest.mark.parametrize(
    ("kind", "expected_format"),
    [
        ("m4a_aac", "MP4/aac"),
        ("m4a_alac", "MP4/alac"),
        ("adts_aac", "AAC/aac"),
        ("webm_opus", "Matroska/opus"),
        ("wma", "ASF/wmav2"),
        ("ac3", "AC-3/ac3"),
    ],
)
def test_formats_libsndfile_lacks_are_tagged(
    kind: str, expected_format: str, client: httpx.Client, clip_wav: Path, clip_response: dict
) -> None:
    suffix, _ = audio.ENCODINGS[kind]
    path = audio.encode(clip_wav, clip_wav.with_name(f"clip_{kind}{suffix}"), kind)
    response = tag_file(client, path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audio"]["format"] == expected_format
    # AAC and AC-3 keep their encoders' priming and padding (tens of ms), as ffmpeg decodes them.
    assert abs(body["audio"]["duration_seconds"] - 20.0) < 0.1
    _assert_tags_like(body, clip_response)


@pytest.fixture(scope="module")
def clip_mp3(clip_wav: Path) -> bytes:
    return audio.mp3(clip_wav, clip_wav.with_name("clip.mp3"), "-b:a", "128k").read_bytes()


@pytest.mark.parametrize("damage", ["cut_midframe", "leading_junk", "id3v2.4_footer_and_ape"])
def test_damaged_mp3_is_tagged_whole(
    damage: str, client: httpx.Client, clip_mp3: bytes, clip_response: dict
) -> None:
    data = {
        "cut_midframe": clip_mp3[1000:],
        "leading_junk": b"\x00" * 2048 + clip_mp3,
        "id3v2.4_footer_and_ape": audio.id3v2(4, footer=True) + clip_mp3 + audio.ape_tag(),
    }[damage]
    response = client.post("/v1/tag", content=data, headers={"Content-Type": "audio/mpeg"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert abs(body["audio"]["duration_seconds"] - 20.0) < TOLERANCE
    _assert_tags_like(body, clip_response)


def test_vbr_without_xing_and_joined_mp3s_are_tagged_whole(
    client: httpx.Client, clip_wav: Path
) -> None:
    folder = clip_wav.parent
    intro = audio.write_wav(folder / "intro.wav", audio.noise_then_tone(44100, 4.0, 6.0), 44100)
    vbr = audio.mp3(intro, folder / "vbr_noxing.mp3", "-q:a", "4", "-write_xing", "0")
    response = tag_file(client, vbr)
    assert response.status_code == 200, response.text
    assert abs(response.json()["audio"]["duration_seconds"] - 10.0) < TOLERANCE
    joined = vbr.read_bytes() + audio.mp3(clip_wav, folder / "xing.mp3", "-q:a", "2").read_bytes()
    response = client.post("/v1/tag", content=joined, headers={"Content-Type": "audio/mpeg"})
    assert response.status_code == 200, response.text
    # Two parts' lengths, plus the second's Xing frame, delay and padding (under 0.1 s).
    assert abs(response.json()["audio"]["duration_seconds"] - 30.0) < 0.1


def test_unterminated_opus_is_tagged_with_a_warning(client: httpx.Client, clip_wav: Path) -> None:
    opus = audio.encode(clip_wav, clip_wav.with_name("clip.opus"), "ogg_opus").read_bytes()
    response = client.post(
        "/v1/tag", content=audio.without_end_of_stream(opus), headers={"Content-Type": "audio/ogg"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert abs(body["audio"]["duration_seconds"] - 20.0) < TOLERANCE
    assert len(body["warnings"]) == 1 and "end-of-stream" in body["warnings"][0]


def _post_first_half(
    client: httpx.Client, clip_wav: Path, name: str, encoding: str, content_type: str
) -> httpx.Response:
    """The clip encoded as ``encoding``, cut in half (a download that broke off), tagged."""
    data = audio.encode(clip_wav, clip_wav.with_name(name), encoding).read_bytes()
    return client.post(
        "/v1/tag", content=data[: len(data) // 2], headers={"Content-Type": content_type}
    )


def test_cut_webm_is_tagged_with_a_warning_and_joined_mp3s_without_one(
    client: httpx.Client, clip_wav: Path
) -> None:
    response = _post_first_half(client, clip_wav, "clip.webm", "webm_opus", "audio/webm")
    assert response.status_code == 200, response.text
    body = response.json()
    assert 8.0 < body["audio"]["duration_seconds"] < 12.0
    # The header's 20 s plus Opus's priming (a few ms), then what decoded.
    (warning,) = body["warnings"]
    assert warning.startswith("the file is truncated: its header declares 20.0")
    assert warning.endswith(f", {body['audio']['duration_seconds']:.2f} s decoded")
    # A 32 kbit/s part before a 320 kbit/s one: FFmpeg's bitrate estimate claims over 50 s.
    folder = clip_wav.parent
    intro = audio.write_wav(folder / "intro8.wav", audio.tone(44100, 8.0), 44100)
    joined = (
        audio.mp3(intro, folder / "intro8.mp3", "-b:a", "32k").read_bytes()
        + audio.mp3(clip_wav, folder / "clip320.mp3", "-b:a", "320k").read_bytes()
    )
    response = client.post("/v1/tag", content=joined, headers={"Content-Type": "audio/mpeg"})
    assert response.status_code == 200, response.text
    assert abs(response.json()["audio"]["duration_seconds"] - 28.0) < 0.1
    assert not [w for w in response.json()["warnings"] if "truncated" in w]


def test_a_cut_m4a_without_its_index_is_a_422_saying_so(
    client: httpx.Client, clip_wav: Path
) -> None:
    response = _post_first_half(client, clip_wav, "clip_cut.m4a", "m4a_aac", "audio/mp4")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "undecodable_audio"
    assert problem["detail"].startswith("the MP4 file has no index (its moov box)")
    assert "-movflags +faststart" in problem["detail"]


def test_music_with_an_inverted_channel_or_silence_is_tagged_with_a_warning(
    client: httpx.Client, clip_wav: Path, clip_response: dict
) -> None:
    music, rate = sf.read(clip_wav, dtype="float32")
    inverted = np.stack([music[:, 0], -music[:, 0]], axis=1)  # one channel's polarity flipped
    for signal, warning in (
        (inverted, "the channels cancel out when averaged to mono (one has inverted polarity?)"),
        (np.zeros_like(music), "the audio is silent (every sample is zero)"),
    ):
        path = audio.write_wav(clip_wav.with_name("suspect.wav"), signal, rate)
        response = tag_file(client, path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["audio"]["duration_seconds"] == clip_response["audio"]["duration_seconds"]
        (said,) = body["warnings"]
        assert said.startswith(warning)
    # The same music with its channels in phase: no warning.
    assert clip_response["warnings"] == []


def test_high_rate_flac_is_refused_naming_the_cap(client: httpx.Client, clip_wav: Path) -> None:
    flac = clip_wav.with_name("high_rate.flac")
    audio.ffmpeg("-f", "lavfi", "-i", "anullsrc=r=384000:cl=mono", "-t", "60", flac)
    response = client.post(
        "/v1/tag", content=flac.read_bytes(), headers={"Content-Type": "audio/flac"}
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "sample_rate_too_high"
    assert "TAGGRAM_MAX_SAMPLE_RATE" in error["message"]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(
    coding: str, client: httpx.Client, clip_wav: Path, clip_response: dict
) -> None:
    data = clip_wav.read_bytes()
    compressed = {
        "gzip": gzip.compress(data),
        "deflate": zlib.compress(data),
        "raw-deflate": zlib.compress(data, wbits=-zlib.MAX_WBITS),
    }[coding]
    headers = {"Content-Type": "audio/wav", "Content-Encoding": coding.removeprefix("raw-")}
    raw = client.post("/v1/tag", content=compressed, headers=headers)
    assert raw.status_code == 200, raw.text
    assert raw.json()["tags"] == clip_response["tags"]
    # A multipart request compressed as a whole is decoded the same way.
    request = client.build_request("POST", "/v1/tag", files={"file": ("clip.wav", data)})
    body = request.read()
    multipart_headers = {
        "Content-Type": request.headers["Content-Type"],
        "Content-Encoding": headers["Content-Encoding"],
    }
    encoded = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    multipart = client.post("/v1/tag", content=encoded, headers=multipart_headers)
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["tags"] == clip_response["tags"]


def test_a_gzip_body_of_several_members_is_decoded_whole(client: httpx.Client) -> None:
    """``cat a.gz b.gz`` (or a client compressing as it streams) makes a gzip body of several
    members, which ``gzip -d`` reads whole. Only the first was inflated: of a 4 s WAV sent as
    two members, 2 s were tagged and the rest dropped without a word. What follows the end of a
    stream and begins no member is refused now, not ignored."""
    tone = np.sin(np.arange(4 * 16000) / 10).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 16000, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    half = len(data) // 2
    members = gzip.compress(data[:half]) + gzip.compress(data[half:])
    headers = {"Content-Type": "audio/wav", "Content-Encoding": "gzip"}

    def chunked(size: int) -> Iterator[bytes]:  # members' boundaries inside and across chunks
        yield from (members[start : start + size] for start in range(0, len(members), size))

    for content in (members, chunked(1000)):
        response = client.post("/v1/tag", content=content, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["audio"]["duration_seconds"] == pytest.approx(4.0)
    refused = {
        "gzip": gzip.compress(data) + b"trailing bytes",
        "deflate": zlib.compress(data) + zlib.compress(data),
    }
    for coding, content in refused.items():
        response = client.post(
            "/v1/tag", content=content, headers={**headers, "Content-Encoding": coding}
        )
        assert response.status_code == 415, response.text
        assert response.json()["code"] == "unsupported_content_encoding"
        assert "after the end of" in response.json()["detail"]
    # Members cost a decompressor each: a body of empty ones, no audio, is cut short.
    empty = gzip.compress(b"") * (MAX_GZIP_MEMBERS + 1)
    response = client.post("/v1/tag", content=gzip.compress(data) + empty, headers=headers)
    assert response.status_code == 415, response.text
    assert f"more than {MAX_GZIP_MEMBERS} members" in response.json()["detail"]


def test_compression_bomb_and_unknown_codings_are_refused(client: httpx.Client) -> None:
    # 64 MiB of zeros in 64 kB: inflates past the server's 32 MiB upload limit.
    bomb = gzip.compress(bytes(64 * 1024 * 1024))
    response = client.post(
        "/v1/tag", content=bomb, headers={"Content-Type": "audio/wav", "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    response = client.post(
        "/v1/tag",
        content=b"x" * 100,
        headers={"Content-Type": "audio/wav", "Content-Encoding": "br"},
    )
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and "'br'" in error["message"]
    response = client.post(
        "/v1/tag",
        content=b"not gzip at all" * 10,
        headers={"Content-Type": "audio/wav", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415, response.text


def test_not_audio_answers_415_listing_the_supported_containers(
    client: httpx.Client, clip_wav: Path
) -> None:
    response = client.post(
        "/v1/tag", content=b"a text file\n" * 100, headers={"Content-Type": "audio/mpeg"}
    )
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_format"
    assert "text" in error["message"] and "MP4" in error["message"]
    # The file name and Content-Type are no help to a body that is not audio.
    response = client.post("/v1/tag", files={"file": ("song.m4a", b"\x89PNG\r\n\x1a\n" * 50)})
    assert response.status_code == 415, response.text
    # Nor is an ID3 tag before it, small or as large as cover art: it was a 422 "MP3 file that
    # cannot be read" behind a small tag, a 415 behind a large one.
    for tag in (audio.id3v2(3), audio.id3v2(4, padding=300_000)):
        response = client.post("/v1/tag", files={"file": ("song.mp3", tag + b"a text\n" * 100)})
        assert response.status_code == 415, response.text
        assert "looks like text" in response.json()["detail"]
    # A game's tracker module is notes and samples: the 415 says so and how to render it.
    response = client.post("/v1/tag", files={"file": ("song.mod", audio.protracker_module(5))})
    assert response.status_code == 415, response.text
    assert "a tracker module" in response.json()["error"]["message"]
    # An allowed container with no audio in it is a 422.
    video = clip_wav.with_name("video.mp4")
    audio.ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "1", "-c:v", "mpeg4", video
    )
    response = tag_file(client, video)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "undecodable_audio"
