"""The container allow-list: recognition from the first bytes, and what refusals say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taggram.catalogue.sources import load_source
from taggram.formats import AUDIO_EXTENSIONS, CONTAINERS, by_demuxer, describe_unknown, sniff
from taggram.service.audio.decode import DecodeLimits, decode
from tests.support.audio import ape_tag, ffmpeg, id3v2
from tests.support.paths import ROOT

MP3_FRAME = bytes.fromhex("fffb9064") + bytes(100)  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
ADTS_FRAME = bytes.fromhex("fff15080") + bytes(100)


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "WAV"),
        (b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb", "Wave64"),
        (b"FORM\x00\x00\x00\x00AIFC", "AIFF"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"OggS\x00\x02", "Ogg"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "MP4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "Matroska"),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "ASF"),
        (b"\x0b\x77\x00\x00", "AC-3"),
        (b"caff\x00\x01", "CAF"),
        (b".snd\x00\x00\x00\x18", "AU"),
        (MP3_FRAME, "MP3"),
        (ADTS_FRAME, "AAC"),
        (id3v2(3) + MP3_FRAME, "MP3"),
        (id3v2(4, footer=True) + MP3_FRAME, "MP3"),
        (id3v2(2) + ADTS_FRAME, "AAC"),
        (id3v2(4) + b"fLaC\x00\x00\x00\x22", "FLAC"),  # some taggers put ID3 on FLAC
        (id3v2(3)[:40], "MP3"),  # a tag running past what was read
    ],
)
def test_signatures(head: bytes, name: str) -> None:
    found = sniff(head)
    assert found is not None and found.name == name


@pytest.mark.parametrize(
    "head",
    [
        b"\x00" * 64,  # leading padding: FFmpeg's probe looks further
        b"RIFF\x24\x00\x00\x00AVI LIST",  # RIFF, but a video
        b"plain text",
        ape_tag(),
        b"",
    ],
)
def test_no_signature_leaves_it_to_the_probe(head: bytes) -> None:
    assert sniff(head) is None


def test_every_container_is_reachable_by_its_demuxers_and_extensions() -> None:
    for container in CONTAINERS:
        assert all(by_demuxer(name) is container for name in container.demuxers)
        assert set(container.extensions) <= AUDIO_EXTENSIONS
    assert by_demuxer("avi") is None and by_demuxer("png_pipe") is None


@pytest.mark.parametrize(
    ("head", "said"),
    [
        (b"\x1f\x8b\x08\x00", "Content-Encoding: gzip"),
        (b"\x89PNG\r\n", "PNG image"),
        (b"  <html><body>", "markup"),
        (b"id,path\nsong,a.mp3\n", "text"),
        (b"\x01\x02\x03\xff", "unrecognised data starting 01 02 03 ff"),
        (b"Extended Module: title", "a tracker module"),
        (b"IMPMsong", "a tracker module"),
        (b'--XyZ\r\nContent-Disposition: form-data; name="file"', "a multipart/form-data body"),
    ],
)
def test_refusals_say_what_was_sent(head: bytes, said: str) -> None:
    assert said in describe_unknown(head)


def test_the_web_page_offers_every_accepted_extension() -> None:
    """The page's file picker greys out what its accept list lacks: every extension the service
    decodes must be in it (.mov and .spx were missing when they joined the allow-list)."""
    page = (ROOT / "taggram" / "service" / "web" / "static" / "index.html").read_text()
    accept = re.search(r'accept="([^"]*)"', page)
    assert accept is not None
    assert set(AUDIO_EXTENSIONS) <= set(accept.group(1).split(","))


def test_the_readme_format_table_lists_every_container_and_extension() -> None:
    """The README's table is what users read (docs/catalogue.md links it): the same containers
    and extensions as the allow-list, which the catalogue scans for."""
    table = (
        (ROOT / "README.md")
        .read_text()
        .split("| container | extensions | codecs |", 1)[1]
        .split("\n\n", 1)[0]
    )
    rows = re.findall(r"^\| [^|]+ \| `([^`]+)` \|", table, flags=re.M)
    assert [row.split() for row in rows] == [list(c.extensions) for c in CONTAINERS]


@pytest.mark.parametrize(
    ("suffix", "codec", "container"), [(".mov", "aac", "MP4"), (".spx", "libspeex", "Ogg")]
)
def test_a_file_the_service_decodes_is_one_the_catalogue_takes(
    tmp_path: Path, short_wav: Path, suffix: str, codec: str, container: str
) -> None:
    """QuickTime ``.mov`` and Ogg Speex ``.spx`` decoded at /v1/tag but ``taggram catalogue``
    skipped them as not audio, by extension."""
    path = tmp_path / f"clip{suffix}"
    ffmpeg("-i", short_wav, "-c:a", codec, "-ar", "16000", "-ac", "1", path)
    with path.open("rb") as handle:
        decoded = decode(handle, 16000, DecodeLimits(1 << 30, 900.0, 192_000))
    assert decoded.info.format.startswith(f"{container}/") and decoded.duration_seconds > 1
    assert [track.id for track in load_source(tmp_path).tracks] == [path.name]
