"""Decoding: every accepted container, real-world damage, the true length, bounded cost."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.service.audio.decode import DecodeLimits, decode
from taggram.service.errors import (
    AudioTooLongError,
    EmptyAudioError,
    InvalidAudioError,
    PayloadTooLargeError,
    SampleRateTooHighError,
    UndecodableAudioError,
    UnsupportedFormatError,
)
from tests.support import audio
from tests.support.paths import SHARED_AUDIO, has_shared

LIMITS = DecodeLimits(max_bytes=50 * 1024 * 1024, max_duration_seconds=60)
# What the container reports for files libsndfile writes: (container, subtype) -> audio.format.
SOUNDFILE_FORMATS = {
    ("WAV", "PCM_U8"): "WAV/pcm_u8",
    ("WAV", "PCM_16"): "WAV/pcm_s16le",
    ("WAV", "PCM_24"): "WAV/pcm_s24le",
    ("WAV", "PCM_32"): "WAV/pcm_s32le",
    ("WAV", "FLOAT"): "WAV/pcm_f32le",
    ("WAV", "ULAW"): "WAV/pcm_mulaw",
    ("FLAC", "PCM_16"): "FLAC/flac",
    ("FLAC", "PCM_24"): "FLAC/flac",
    ("AIFF", "PCM_16"): "AIFF/pcm_s16be",
    ("OGG", "VORBIS"): "Ogg/vorbis",
    ("OGG", "OPUS"): "Ogg/opus",
    ("MP3", "MPEG_LAYER_III"): "MP3/mp3",
}
# A duration is right when it is within this of the audio that was encoded (the bugs/ README's
# tolerance); lossy encoders may add up to a frame of priming or padding.
DURATION_TOLERANCE = 0.05


def _encode(audio_: np.ndarray, rate: int, container: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio_, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _peak_hz(waveform: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.argmax(spectrum) * rate / len(waveform))


@pytest.fixture(scope="module")
def source_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of a 440 Hz stereo tone at 48 kHz, the source of every ffmpeg encoding."""
    folder = tmp_path_factory.mktemp("source")
    return audio.write_wav(folder / "tone.wav", audio.tone(48000, 2.0), 48000)


@pytest.mark.parametrize(("container", "subtype"), list(SOUNDFILE_FORMATS))
def test_every_libsndfile_format_decodes_to_mono_at_the_model_rate(
    container: str, subtype: str
) -> None:
    rate = 48000
    data = _encode(audio.tone(rate, 2.0), rate, container, subtype)
    decoded = decode(data, 16000, LIMITS)
    assert decoded.info.format == SOUNDFILE_FORMATS[(container, subtype)]
    assert (decoded.info.sample_rate, decoded.info.channels) == (rate, 2)
    assert decoded.waveform.dtype == np.float32 and decoded.waveform.ndim == 1
    assert abs(decoded.duration_seconds - 2.0) < 0.1
    assert abs(_peak_hz(decoded.waveform) - 440) < 5
    assert decoded.info.warnings == ()


@pytest.mark.parametrize("kind", list(audio.ENCODINGS))
def test_every_ffmpeg_encoding_decodes(kind: str, source_wav: Path, tmp_path: Path) -> None:
    suffix, _ = audio.ENCODINGS[kind]
    path = audio.encode(source_wav, tmp_path / f"tone{suffix}", kind)
    with path.open("rb") as handle:
        decoded = decode(handle, 16000, LIMITS)
    assert decoded.info.channels == 2
    # AAC and AC-3 keep their encoder's priming or last-frame padding (as ffmpeg decodes them).
    assert abs(decoded.duration_seconds - 2.0) < 0.1
    assert abs(_peak_hz(decoded.waveform) - 440) < 5
    assert decoded.info.warnings == ()


def test_channels_are_averaged() -> None:
    stereo = audio.tone(16000, 1.0)
    stereo[:, 1] *= -1  # right = -left: the mean is silence
    decoded = decode(_encode(stereo, 16000, "WAV", "FLOAT"), 16000, LIMITS)
    assert np.abs(decoded.waveform).max() == 0.0


def _channels(count: int, rate: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """``[frames, count]`` float32: a different tone and level in every channel."""
    t = np.arange(int(rate * seconds)) / rate
    columns = [0.9 / (1 + c) * np.sin(2 * np.pi * (100 + 37 * c) * t) for c in range(count)]
    return np.stack(columns, axis=1).astype(np.float32)


_CHANNEL_CASES = [
    *(("WAV", "FLOAT", count) for count in [1, 2, 6, 8, 9, 16, 32, 64]),
    *(("FLAC", "PCM_24", count) for count in [1, 2, 6, 8]),  # FLAC holds at most 8
    # Vorbis decodes to planar float: taken without the resampler below 8 channels.
    *(("OGG", "VORBIS", count) for count in [1, 2, 6, 7, 8, 9, 16]),
]


@pytest.mark.parametrize(("container", "subtype", "count"), _CHANNEL_CASES)
def test_any_channel_count_decodes_to_the_mean(container: str, subtype: str, count: int) -> None:
    # 8 channels and more once crashed the process inside PyAV (planar frames, 8 data pointers).
    samples = _channels(count)
    data = _encode(samples, 16000, container, subtype)
    decoded = decode(data, 16000, LIMITS)
    assert decoded.info.channels == count
    written = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0]
    mean = written.mean(axis=1, dtype=np.float64)
    if subtype == "VORBIS":
        # The decoders differ by ~1e-7; FFmpeg also ends libsndfile's mono and stereo Vorbis
        # streams one 256-sample block early (it trusts the last page's granule position).
        n = len(decoded.waveform)
        assert len(mean) - 256 <= n <= len(mean)
        np.testing.assert_allclose(decoded.waveform, mean[:n], rtol=0, atol=1e-5)
    elif count <= 2:  # one correctly rounded sum of halves: the mean exactly
        np.testing.assert_array_equal(decoded.waveform, mean.astype(np.float32))
    else:
        np.testing.assert_allclose(decoded.waveform, mean, rtol=0, atol=1e-7)


def test_more_channels_than_ffmpeg_resamples_are_refused_by_name() -> None:
    data = _encode(np.zeros((1000, 65), np.float32), 16000, "WAV", "PCM_16")
    with pytest.raises(UndecodableAudioError, match="65 channels; at most 64"):
        decode(data, 16000, LIMITS)


@pytest.mark.parametrize("declared", [0, 513, 65535])
def test_a_header_declaring_an_impossible_channel_count_is_undecodable(declared: int) -> None:
    data = bytearray(_encode(audio.tone(16000, 1.0), 16000, "WAV", "PCM_16"))
    data[22:24] = declared.to_bytes(2, "little")  # the fmt chunk's channel count
    with pytest.raises(UndecodableAudioError, match="WAV audio stream declares no valid channel"):
        decode(bytes(data), 16000, LIMITS)


def test_resampled_length_follows_librosa() -> None:
    decoded = decode(_encode(audio.tone(44100, 1.0, 1), 44100, "WAV", "PCM_16"), 16000, LIMITS)
    assert len(decoded.waveform) == int(np.ceil(44100 * 16000 / 44100))


@pytest.fixture(scope="module")
def music_copies(music_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The music in each kind of file the shared recordings come in, by suffix: what a fresh
    clone, which lacks them, decodes in their place."""
    return audio.copies(music_wav, tmp_path_factory.mktemp("music"))


@pytest.mark.parametrize(
    ("name", "tolerance"),
    # Lossless files decode to libsndfile's samples exactly, and the streaming resampler equals
    # soxr's one-shot call, so these match librosa bit for bit. Lossy files differ only by the
    # decoder (FFmpeg's vs libmpg123 / libvorbis), by the amounts measured in docs/audio.md.
    [
        ("clip_03.wav", 0.0),
        ("clip_07.wav", 0.0),
        ("clip_04.flac", 0.0),
        ("clip_09.flac", 0.0),
        ("clip_01.mp3", 5e-6),
        ("clip_11.mp3", 5e-6),
        ("clip_06.ogg", 1e-6),
        ("clip_02.ogg", 1e-6),
    ],
)
def test_matches_librosa_load_like_the_original(
    name: str, tolerance: float, music_copies: dict[str, Path]
) -> None:
    librosa = pytest.importorskip("librosa")
    path = SHARED_AUDIO / name if has_shared() else music_copies[Path(name).suffix]
    expected, _ = librosa.load(path, sr=16000)
    decoded = decode(path.read_bytes(), 16000, LIMITS)
    assert len(decoded.waveform) == len(expected)
    np.testing.assert_allclose(decoded.waveform, expected, rtol=0, atol=tolerance)


@pytest.fixture(scope="module")
def clean_mp3(source_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 30 s CBR MP3 without tags: the control for every damaged copy."""
    folder = tmp_path_factory.mktemp("mp3")
    wav = audio.write_wav(folder / "long.wav", audio.tone(44100, 30.0, 2, 330.0), 44100)
    return audio.mp3(wav, folder / "clean.mp3", "-b:a", "128k").read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        "cut_midframe",
        "leading_zeros",
        "leading_text",
        "id3v2.2",
        "id3v2.3",
        "id3v2.4",
        "id3v2.4_footer",
        "ape_tag",
        "id3v2.4_and_ape",
        "id3v2.3_cover_art",
    ],
)
def test_mp3_with_any_framing_decodes_to_its_length(clean_mp3: bytes, damage: str) -> None:
    expected = decode(clean_mp3, 16000, LIMITS).duration_seconds
    assert abs(expected - 30.0) < DURATION_TOLERANCE
    damaged = {
        "cut_midframe": clean_mp3[1000:],
        "leading_zeros": b"\x00" * 2048 + clean_mp3,
        "leading_text": b"GET /stream HTTP/1.0 capture\r\n" * 20 + clean_mp3,
        "id3v2.2": audio.id3v2(2) + clean_mp3,
        "id3v2.3": audio.id3v2(3) + clean_mp3,
        "id3v2.4": audio.id3v2(4) + clean_mp3,
        "id3v2.4_footer": audio.id3v2(4, footer=True) + clean_mp3,
        "ape_tag": clean_mp3 + audio.ape_tag(),
        "id3v2.4_and_ape": audio.id3v2(4) + clean_mp3 + audio.ape_tag(),
        "id3v2.3_cover_art": audio.id3v2(3, padding=300_000) + clean_mp3,
    }[damage]
    decoded = decode(damaged, 16000, LIMITS)
    assert decoded.info.format == "MP3/mp3"
    # A mid-frame cut loses the 1000 bytes' audio (26 ms at 128 kbit/s), nothing more.
    assert abs(decoded.duration_seconds - expected) < DURATION_TOLERANCE
    assert abs(_peak_hz(decoded.waveform) - 330) < 5


def test_flac_behind_a_large_id3_tag_is_still_flac() -> None:
    flac = _encode(audio.tone(48000, 2.0), 48000, "FLAC", "PCM_16")
    tagged = audio.id3v2(4, padding=300_000) + flac  # some taggers put ID3 (and art) on FLAC
    decoded = decode(tagged, 16000, LIMITS)
    assert decoded.info.format == "FLAC/flac"
    assert abs(decoded.duration_seconds - 2.0) < 1e-3


@pytest.mark.parametrize(
    ("kind", "expected_format"),
    [
        ("rf64", "WAV/pcm_s24le"),
        ("aiff", "AIFF/pcm_s16be"),
        ("m4a_aac", "MP4/aac"),
        ("webm_opus", "Matroska/opus"),
        ("wma", "ASF/wmav2"),
        ("caf_alac", "CAF/alac"),
        ("wave64", "Wave64/pcm_f32le"),
    ],
)
def test_any_container_behind_an_id3_tag_decodes(
    kind: str, expected_format: str, source_wav: Path, tmp_path: Path
) -> None:
    """Taggers that write ID3v2 to every file (`id3v2`, `eyeD3`) put it before a WAV or an M4A
    too, whose FFmpeg demuxers then fail ("Invalid data found"): the tag is passed over."""
    suffix, _ = audio.ENCODINGS[kind]
    data = audio.encode(source_wav, tmp_path / f"tone{suffix}", kind).read_bytes()
    for tag in (audio.id3v2(3), audio.id3v2(4, padding=300_000)):
        decoded = decode(tag + data, 16000, LIMITS)
        assert decoded.info.format == expected_format
        assert abs(decoded.duration_seconds - 2.0) < DURATION_TOLERANCE
        assert abs(_peak_hz(decoded.waveform) - 440) < 5 and decoded.info.warnings == ()


@pytest.mark.parametrize(
    ("behind", "looks_like"),
    [
        (b"just some text, not audio at all\n" * 20, "the body looks like text"),
        (np.random.default_rng(0).bytes(50_000), "the body looks like unrecognised data"),
        (b"%PDF-1.7\n" + bytes(5000), "PDF"),
    ],
)
def test_what_is_not_audio_behind_an_id3_tag_is_refused_whatever_the_tags_size(
    behind: bytes, looks_like: str
) -> None:
    """The bytes after the tag decide: behind a small tag they were taken for MP3 (a 422 "MP3
    file that cannot be read"), behind one larger than the 64 KiB read to recognise the file
    for what they are (415 saying so)."""
    messages = set()
    for tag in (audio.id3v2(3), audio.id3v2(4, padding=300_000)):
        with pytest.raises(UnsupportedFormatError, match=looks_like) as refused:
            decode(tag + behind, 16000, LIMITS)
        messages.add(str(refused.value))
    assert len(messages) == 1


def test_adts_aac_cut_mid_frame_behind_an_id3_tag_decodes(source_wav: Path, tmp_path: Path) -> None:
    """A captured AAC stream that starts mid-frame behind an ID3 tag was forced into FFmpeg's MP3
    demuxer ('the MP3 audio stream has no sample rate'); FFmpeg's probe finds the ADTS frames."""
    suffix, _ = audio.ENCODINGS["adts_aac"]
    data = audio.encode(source_wav, tmp_path / f"tone{suffix}", "adts_aac").read_bytes()
    decoded = decode(audio.id3v2(3) + data[555:], 16000, LIMITS)
    assert decoded.info.format == "AAC/aac"
    assert abs(decoded.duration_seconds - 2.0) < 0.1
    assert abs(_peak_hz(decoded.waveform) - 440) < 5


def test_a_cut_wav_behind_an_id3_tag_is_still_told_cut() -> None:
    data = _encode(audio.tone(44100, 30.0), 44100, "WAV", "PCM_16")
    decoded = decode(audio.id3v2(3) + data[:2_000_000], 16000, LIMITS)
    assert decoded.info.warnings == (
        "the file is truncated: its header declares 30.00 s, 11.34 s decoded",
    )


def test_a_file_cut_inside_its_id3_tag_says_so(clean_mp3: bytes) -> None:
    tagged = audio.id3v2(3, padding=300_000) + clean_mp3  # a large cover image, then the audio
    with pytest.raises(UndecodableAudioError, match=r"^the file holds no audio after its ID3v2"):
        decode(tagged[:200_000], 16000, LIMITS)


def test_vbr_mp3_without_xing_header_decodes_whole(tmp_path: Path) -> None:
    wav = audio.write_wav(tmp_path / "intro.wav", audio.noise_then_tone(44100, 5.0, 25.0), 44100)
    path = audio.mp3(wav, tmp_path / "vbr.mp3", "-q:a", "4", "-write_xing", "0")
    # The kind of file that fools a header estimate (libsndfile's is several seconds short).
    assert abs(sf.info(path).duration - 30.0) > 2.0
    decoded = decode(path.read_bytes(), 16000, LIMITS)
    assert abs(decoded.duration_seconds - 30.0) < DURATION_TOLERANCE


def test_joined_mp3s_decode_to_their_sum(tmp_path: Path) -> None:
    parts = []
    for seconds, frequency in ((8.0, 330.0), (20.0, 550.0)):
        wav = audio.write_wav(
            tmp_path / f"{seconds}.wav", audio.tone(44100, seconds, 2, frequency), 44100
        )
        parts.append(audio.mp3(wav, tmp_path / f"{seconds}.mp3", "-q:a", "2").read_bytes())
    decoded = decode(b"".join(parts), 16000, LIMITS)
    # The second part's own Xing frame, encoder delay and padding decode as well (as ffmpeg
    # decodes them): up to three MP3 frames, 78 ms, beyond the two lengths.
    assert abs(decoded.duration_seconds - 28.0) < 0.1
    # The second part's tone is there: its half of the signal peaks at 550 Hz.
    assert abs(_peak_hz(decoded.waveform[-16000 * 10 :]) - 550) < 5


def test_joined_mp3s_of_rising_bitrate_are_not_called_truncated(tmp_path: Path) -> None:
    # FFmpeg drops the first part's Xing count when the file's size disagrees with it and
    # estimates the length from the first frame's bitrate instead: 32 kbit/s over a file that is
    # mostly 320 kbit/s claims over 70 s for these 28 s, which is no truncation.
    parts = []
    for seconds, bitrate in ((8.0, "32k"), (20.0, "320k")):
        wav = audio.write_wav(tmp_path / f"{seconds}.wav", audio.tone(44100, seconds), 44100)
        parts.append(audio.mp3(wav, tmp_path / f"{seconds}.mp3", "-b:a", bitrate).read_bytes())
    decoded = decode(b"".join(parts), 16000, LIMITS)
    assert abs(decoded.duration_seconds - 28.0) < 0.1
    assert not [w for w in decoded.info.warnings if "truncated" in w]
    # Zeros after the last frame (a preallocated download) change nothing but the size either.
    padded = decode(parts[1] + bytes(100_000), 16000, LIMITS)
    assert not [w for w in padded.info.warnings if "truncated" in w]


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (11025, 2), (22050, 1), (48000, 2)])
def test_an_mp3_header_declares_its_length_less_the_encoders_delay_and_padding(
    rate: int, channels: int, tmp_path: Path
) -> None:
    """The Xing count alone overstates the audio by the encoder's delay and padding (0.17 s at
    8 kHz, past the truncation tolerance): the LAME tag's figures are taken off, as FFmpeg
    skips them, so a whole phone-rate MP3 is not called truncated and a cut one is, exactly."""
    wav = audio.write_wav(tmp_path / "t.wav", audio.tone(rate, 10.0, channels), rate)
    data = audio.mp3(wav, tmp_path / "t.mp3", "-q:a", "5").read_bytes()
    assert decode(data, 16000, LIMITS).info.warnings == ()
    cut = decode(data[: len(data) // 2], 16000, LIMITS)
    assert cut.info.warnings == (
        f"the file is truncated: its header declares 10.00 s, "
        f"{cut.info.duration_seconds:.2f} s decoded",
    )


def test_unterminated_ogg_opus_is_decoded_with_a_warning(source_wav: Path, tmp_path: Path) -> None:
    opus = audio.encode(source_wav, tmp_path / "tone.opus", "ogg_opus").read_bytes()
    complete = decode(opus, 16000, LIMITS)
    assert complete.info.warnings == ()
    decoded = decode(audio.without_end_of_stream(opus), 16000, LIMITS)
    assert abs(decoded.duration_seconds - complete.duration_seconds) < DURATION_TOLERANCE
    assert len(decoded.info.warnings) == 1 and "end-of-stream" in decoded.info.warnings[0]


@pytest.mark.parametrize(
    "kind", ["ogg_opus", "mp3", "m4a_alac", "wav_mulaw", "webm_opus", "mka_vorbis"]
)
def test_truncated_stream_keeps_what_decoded(kind: str, tmp_path: Path) -> None:
    wav = audio.write_wav(tmp_path / "ten.wav", audio.tone(48000, 10.0), 48000)
    suffix, _ = audio.ENCODINGS[kind]
    if kind == "m4a_alac":  # the index at the front, so a cut file still opens
        audio.ffmpeg("-i", wav, "-c:a", "alac", "-movflags", "+faststart", tmp_path / "t.m4a")
        data = (tmp_path / "t.m4a").read_bytes()
    else:
        data = audio.encode(wav, tmp_path / f"t{suffix}", kind).read_bytes()
    decoded = decode(data[: len(data) * 6 // 10], 16000, LIMITS)
    assert 4.0 < decoded.duration_seconds < 7.0
    # The MP3 has a Xing frame (as encoders write by default), which counts its frames; a
    # Matroska file declares its Segment's size, which the cut file falls short of.
    assert decoded.info.warnings, kind


def test_a_cut_mp4_without_its_index_says_why_nothing_decodes(tmp_path: Path) -> None:
    """Encoders write an MP4's index (moov) at its end: cut short, none of the audio can be
    found, and FFmpeg's "Invalid data found" alone would not tell the user why."""
    wav = audio.write_wav(tmp_path / "ten.wav", audio.tone(48000, 10.0), 48000)
    data = audio.encode(wav, tmp_path / "t.m4a", "m4a_aac").read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")
    with pytest.raises(UndecodableAudioError, match=r"^the MP4 file has no index \(its moov box\)"):
        decode(data[: len(data) * 6 // 10], 16000, LIMITS)
    # A whole file whose index is there but damaged is not called cut.
    at = data.index(b"moov") + 4
    with pytest.raises(UndecodableAudioError) as raised:
        decode(data[:at] + bytes(len(data) - at), 16000, LIMITS)
    assert "no index" not in str(raised.value)


def test_a_whole_matroska_file_and_a_cut_live_one_give_no_warning(tmp_path: Path) -> None:
    wav = audio.write_wav(tmp_path / "ten.wav", audio.tone(48000, 10.0), 48000)
    whole = audio.encode(wav, tmp_path / "t.webm", "webm_opus").read_bytes()
    assert decode(whole, 16000, LIMITS).info.warnings == ()
    # A live recording (a browser's MediaRecorder) declares no size: a cut one looks whole.
    audio.ffmpeg("-i", wav, "-c:a", "libopus", "-live", "1", tmp_path / "live.webm")
    live = (tmp_path / "live.webm").read_bytes()
    decoded = decode(live[: len(live) * 6 // 10], 16000, LIMITS)
    assert 4.0 < decoded.duration_seconds < 7.0 and decoded.info.warnings == ()


def test_truncated_flac_is_tagged_up_to_the_cut_with_a_warning() -> None:
    data = _encode(audio.tone(44100, 10.0), 44100, "FLAC", "PCM_16")
    decoded = decode(data[: len(data) * 6 // 10], 16000, LIMITS)
    assert 4.0 < decoded.duration_seconds < 7.0
    assert any("stopped" in w or "truncated" in w for w in decoded.info.warnings)


def _declaring_data_bytes(data: bytes, size: int) -> bytearray:
    """A WAV from libsndfile with its data chunk's size set to ``size``."""
    patched = bytearray(data)
    at = patched.index(b"data") + 4
    patched[at : at + 4] = size.to_bytes(4, "little")
    return patched


def test_truncated_wav_is_tagged_up_to_the_cut_with_a_warning() -> None:
    """FFmpeg sizes a WAV by the data it finds: the header's own count tells the cut."""
    data = _encode(audio.tone(44100, 30.0), 44100, "WAV", "PCM_16")
    decoded = decode(data[:2_000_000], 16000, LIMITS)
    assert abs(decoded.info.duration_seconds - (2_000_000 - 44) / 4 / 44100) < 1e-3
    assert decoded.info.warnings == (
        "the file is truncated: its header declares 30.00 s, 11.34 s decoded",
    )
    assert decode(data, 16000, LIMITS).info.warnings == ()


def test_a_large_chunk_before_the_wav_data_still_lets_the_cut_be_told() -> None:
    """Chunks of any size before the samples (cover art, an XMP or iXML packet, ``JUNK``
    padding) are passed over to the data chunk's declared size, however far it lies."""
    data = _encode(audio.tone(44100, 30.0), 44100, "WAV", "PCM_16")
    at = data.index(b"data")
    art = b"JUNK" + (200_000).to_bytes(4, "little") + bytes(200_000)
    padded = data[:at] + art + data[at:]
    assert decode(padded, 16000, LIMITS).info.warnings == ()
    decoded = decode(padded[:2_000_000], 16000, LIMITS)
    assert decoded.info.warnings == (
        f"the file is truncated: its header declares 30.00 s, "
        f"{decoded.info.duration_seconds:.2f} s decoded",
    )
    declaring = _declaring_data_bytes(padded, 44100 * 4)  # 1 s of the 30 s it holds
    assert (
        decode(bytes(declaring), 16000, LIMITS)
        .info.warnings[0]
        .startswith("the WAV header declares 1.00 s of audio but 29.00 s more data follow it")
    )


@pytest.mark.parametrize("container", ["W64", "CAF"])
def test_truncated_wave64_and_caf_are_tagged_up_to_the_cut_with_a_warning(container: str) -> None:
    """Like WAV, FFmpeg sizes a PCM Wave64 or CAF by the data it finds: the header's own count
    (the data chunk's size, CAF's frame count) tells the cut, as docs/audio.md promises."""
    data = _encode(audio.tone(44100, 30.0), 44100, container, "PCM_16")
    decoded = decode(data[:2_000_000], 16000, LIMITS)
    assert abs(decoded.info.duration_seconds - 11.3) < 0.1
    assert decoded.info.warnings == (
        f"the file is truncated: its header declares 30.00 s, "
        f"{decoded.info.duration_seconds:.2f} s decoded",
    )
    assert decode(data, 16000, LIMITS).info.warnings == ()


def test_a_wave64_chunk_of_another_guid_before_the_data_is_passed_over() -> None:
    """Wave64 writers put chunks of their own GUIDs (``levl``, ``list``) before the data: the
    header's length is still read past them, so the cut is still told."""
    data = _encode(audio.tone(44100, 30.0), 44100, "W64", "PCM_16")
    at = data.index(b"data\xf3\xac\xd3\x11")
    foreign = bytes(16) + (24 + 16).to_bytes(8, "little") + bytes(16)  # GUID, size, body
    decoded = decode((data[:at] + foreign + data[at:])[:2_000_000], 16000, LIMITS)
    assert decoded.info.warnings == (
        f"the file is truncated: its header declares 30.00 s, "
        f"{decoded.info.duration_seconds:.2f} s decoded",
    )


def test_wav_holding_more_than_its_header_declares_is_tagged_as_declared_with_a_warning() -> None:
    data = _encode(audio.tone(16000, 10.0, 1), 16000, "WAV", "PCM_16")
    one_second = _declaring_data_bytes(data, 32000)
    decoded = decode(bytes(one_second), 16000, LIMITS)
    assert decoded.duration_seconds == 1.0  # as FFmpeg and libsndfile read it
    assert decoded.info.warnings == (
        "the WAV header declares 1.00 s of audio but 9.00 s more data follow it: tagged the "
        "declared 1.00 s (FFmpeg and libsndfile read no further)",
    )
    # Metadata chunks after the samples are no reason to warn.
    listed = data + b"LIST" + (12).to_bytes(4, "little") + b"INFOINAM\0\0\0\0"
    assert decode(listed, 16000, LIMITS).info.warnings == ()
    # A size declared unknown (a streamed WAV) is read to the end, as both libraries do.
    streamed = decode(bytes(_declaring_data_bytes(data, 0xFFFFFFFF)), 16000, LIMITS)
    assert (streamed.duration_seconds, streamed.info.warnings) == (10.0, ())


def test_trustworthy_header_refuses_before_decoding() -> None:
    # 40 kB of 16-bit samples declared at 2 Hz: 5.5 hours, refused from the WAV header.
    data = _encode(np.zeros((20000, 1), np.float32), 2, "WAV", "PCM_16")
    assert len(data) < 50_000
    with pytest.raises(AudioTooLongError, match="declares"):
        decode(data, 16000, LIMITS)


def test_length_limit_is_enforced_on_decoded_audio(tmp_path: Path) -> None:
    """A VBR MP3 whose header estimate is under the limit and whose audio is over it."""
    wav = audio.write_wav(tmp_path / "intro.wav", audio.noise_then_tone(44100, 5.0, 25.0), 44100)
    path = audio.mp3(wav, tmp_path / "vbr.mp3", "-q:a", "4", "-write_xing", "0")
    estimate = sf.info(path).duration
    limit = (estimate + 30.0) / 2
    with pytest.raises(AudioTooLongError, match="while decoding"):
        decode(path.read_bytes(), 16000, DecodeLimits(LIMITS.max_bytes, limit))
    # Under a limit above its true length the same file decodes whole.
    whole = decode(path.read_bytes(), 16000, DecodeLimits(LIMITS.max_bytes, 31.0))
    assert abs(whole.duration_seconds - 30.0) < DURATION_TOLERANCE


def test_a_header_claiming_less_buys_nothing() -> None:
    """A FLAC whose STREAMINFO says 1 s but which holds 20 s: the count stops it at the limit."""
    data = bytearray(_encode(audio.tone(8000, 20.0, 1), 8000, "FLAC", "PCM_16"))
    data[21] &= 0xF0  # STREAMINFO's 36-bit total sample count (bytes 21-25), set to 8000
    data[22:26] = (8000).to_bytes(4, "big")
    with pytest.raises(AudioTooLongError, match="while decoding"):
        decode(bytes(data), 16000, DecodeLimits(LIMITS.max_bytes, 10.0))
    assert abs(decode(bytes(data), 16000, LIMITS).duration_seconds - 20.0) < 1e-3


def test_native_sample_rate_is_capped(tmp_path: Path) -> None:
    data = _encode(audio.tone(384000, 1.0, 1), 384000, "FLAC", "PCM_16")
    with pytest.raises(SampleRateTooHighError, match="TAGGRAM_MAX_SAMPLE_RATE"):
        decode(data, 16000, LIMITS)
    raised = DecodeLimits(LIMITS.max_bytes, LIMITS.max_duration_seconds, max_sample_rate=400000)
    decoded = decode(data, 16000, raised)
    assert len(decoded.waveform) == 16000
    assert abs(_peak_hz(decoded.waveform) - 440) < 5


def test_memory_is_the_output_plus_a_block(tmp_path: Path) -> None:
    """60 s of 48 kHz stereo decode within the 16 kHz output buffer plus a constant: never the
    native signal (23 MB as float32 stereo, 11.5 MB as mono)."""
    path = tmp_path / "long.flac"
    sf.write(path, audio.tone(48000, 60.0), 48000, format="FLAC", subtype="PCM_16")
    limits = DecodeLimits(LIMITS.max_bytes, 90.0)
    output_capacity = 90 * 16000 * 4
    native_mono = 60 * 48000 * 4
    constant = 2 * 1024 * 1024
    assert output_capacity + constant < native_mono
    with path.open("rb") as handle:
        tracemalloc.start()
        try:
            decoded = decode(handle, 16000, limits)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert abs(decoded.duration_seconds - 60.0) < 1e-3
    assert peak < output_capacity + constant, peak


def test_unsupported_containers_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"text.*supported containers: WAV"):
        decode(b"just some text, not audio at all\n" * 20, 16000, LIMITS)
    with pytest.raises(UnsupportedFormatError, match="Content-Encoding: gzip"):
        decode(b"\x1f\x8b\x08\x00" + bytes(200), 16000, LIMITS)
    # A container FFmpeg reads but the allow-list leaves out is named as FFmpeg knows it.
    wav = audio.write_wav(tmp_path / "a.wav", audio.tone(16000, 1.0), 16000)
    audio.ffmpeg("-i", wav, "-c:a", "pcm_s16le", "-f", "avi", tmp_path / "a.avi")
    with pytest.raises(UnsupportedFormatError, match=r"\(avi\) is not a supported audio format"):
        decode((tmp_path / "a.avi").read_bytes(), 16000, LIMITS)


@pytest.mark.parametrize("suffix", [".mp3", ".mp2", ".flac", ".ac3", ".aac"])
@pytest.mark.parametrize("kind", ["noise", "text"])
def test_a_files_name_does_not_decide_its_container(kind: str, suffix: str, tmp_path: Path) -> None:
    """An open file (``taggram tag --local``, a local catalogue) is read by its bytes, as the
    nameless upload of the same bytes: PyAV gave FFmpeg the file's name, whose extension made
    FFmpeg's probe take these for MP3, FLAC, AC-3 or AAC and fail as 'no sample rate' (422)."""
    data = np.random.default_rng(0).bytes(100_000) if kind == "noise" else b"hello world\n" * 100
    path = tmp_path / f"not_audio{suffix}"
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormatError) as uploaded:
        decode(data, 16000, LIMITS)
    with path.open("rb") as handle, pytest.raises(UnsupportedFormatError) as opened:
        decode(handle, 16000, LIMITS)
    assert str(opened.value) == str(uploaded.value)


def test_allowed_container_without_audio_is_undecodable(tmp_path: Path) -> None:
    video = tmp_path / "video.mp4"
    audio.ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "1", "-c:v", "mpeg4", video
    )
    with pytest.raises(UndecodableAudioError, match="no audio stream"):
        decode(video.read_bytes(), 16000, LIMITS)


def test_limits_and_bad_input() -> None:
    wav = _encode(audio.tone(16000, 1.0, 1), 16000, "WAV", "PCM_16")
    with pytest.raises(EmptyAudioError):
        decode(b"", 16000, LIMITS)
    with pytest.raises(PayloadTooLargeError):
        decode(wav, 16000, DecodeLimits(max_bytes=len(wav) - 1, max_duration_seconds=60))
    with pytest.raises(UndecodableAudioError):
        decode(b"RIFF\x00\x10\x00\x00WAVE" + b"garbage" * 30, 16000, LIMITS)
    with pytest.raises(UndecodableAudioError):
        decode(b"ID3 but no mp3 frames" * 50, 16000, LIMITS)
    broken = audio.tone(16000, 1.0, 1)
    broken[100] = np.nan
    with pytest.raises(InvalidAudioError, match="NaN"):
        decode(_encode(broken, 16000, "WAV", "FLOAT"), 16000, LIMITS)
    with pytest.raises(InvalidAudioError, match="no samples"):
        decode(_encode(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16"), 16000, LIMITS)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_infinities_of_both_signs_are_refused_without_a_numpy_warning() -> None:
    """+inf and -inf together sum to NaN, which numpy reports as a RuntimeWarning on stderr (a
    stray line in the service's JSON log): the finiteness check keeps quiet and refuses."""
    broken = audio.tone(16000, 1.0, 1).astype(np.float64)
    broken[100], broken[200] = np.inf, -np.inf
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        decode(_encode(broken, 16000, "WAV", "DOUBLE"), 16000, LIMITS)


def _suspect(kind: str) -> np.ndarray:
    """3 s of stereo 48 kHz audio whose tags would describe nothing a listener hears."""
    tone = audio.tone(48000, 3.0)
    rng = np.random.default_rng(0)
    return {
        "digital_silence": np.zeros_like(tone),
        "dithered_silence": rng.integers(-2, 3, tone.shape) / 32768,
        "inverted_channel": np.stack([tone[:, 0], -tone[:, 0]], axis=1),
        "unnormalised_float": 8.0 * tone,
        "dc_offset": 0.3 * tone + 0.5,
    }[kind].astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "warning"),
    [
        ("digital_silence", "the audio is silent (every sample is zero): its tags describe no "),
        ("dithered_silence", "the audio is silent (-84 dBFS): its tags describe no sound"),
        ("inverted_channel", "the channels cancel out when averaged to mono (one has inverted "),
        ("unnormalised_float", "the samples peak at 4 (+12 dBFS), far outside [-1, 1] (float au"),
        ("dc_offset", "the audio has a DC offset of +0.50 (-6 dBFS): the signal is shifted off "),
    ],
)
def test_audio_whose_tags_are_suspect_is_tagged_with_a_warning(kind: str, warning: str) -> None:
    decoded = decode(_encode(_suspect(kind), 48000, "WAV", "FLOAT"), 16000, LIMITS)
    assert decoded.duration_seconds == 3.0
    assert len(decoded.info.warnings) == 1 and decoded.info.warnings[0].startswith(warning)


def test_a_fraction_of_a_second_has_no_dc_offset() -> None:
    """Over less than a second, a mean away from zero is part of a note, not an offset."""
    part = audio.tone(48000, 0.0002, 1)  # 10 samples of a rising sine
    assert part.mean() > 0.05
    assert decode(_encode(part, 48000, "WAV", "FLOAT"), 16000, LIMITS).info.warnings == ()


@pytest.mark.parametrize("name", sorted(audio.ENCODINGS))
def test_ordinary_audio_gets_no_level_warning(name: str, source_wav: Path, tmp_path: Path) -> None:
    """Uncorrelated channels (-3 dB in mono) and a lossy decoder's overshoot past 1.0 (over 2.0
    for Opus and WMA on this clipped noise) are ordinary: only what makes the tags describe
    nothing the listener hears is warned of."""
    rate, rng = 48000, np.random.default_rng(1)
    loud = np.clip(rng.normal(0, 0.5, (rate * 2, 2)), -1, 1).astype(np.float32)  # clipped noise
    wav = audio.write_wav(tmp_path / "source.wav", loud, rate)
    suffix, _ = audio.ENCODINGS[name]
    decoded = decode(
        audio.encode(wav, tmp_path / f"loud{suffix}", name).read_bytes(), 16000, LIMITS
    )
    assert decoded.info.warnings == ()


def test_a_chained_ogg_is_decoded_whole_or_says_where_its_parameters_change() -> None:
    """Ogg files joined (``cat``, a radio capture) are one chained stream: decoded whole when
    the parts agree; where the next part changes channels or rate FFmpeg stops, and the warning
    says so rather than FFmpeg's "Not yet implemented in FFmpeg, patches welcome"."""
    first = _encode(audio.tone(44100, 4.0, 2), 44100, "OGG", "VORBIS")
    same = decode(first + _encode(audio.tone(44100, 6.0, 2), 44100, "OGG", "VORBIS"), 16000, LIMITS)
    assert abs(same.duration_seconds - 10.0) < DURATION_TOLERANCE and same.info.warnings == ()
    mono = _encode(audio.tone(22050, 6.0, 1), 22050, "OGG", "VORBIS")
    changed = decode(first + mono, 16000, LIMITS)
    assert abs(changed.duration_seconds - 4.0) < DURATION_TOLERANCE
    assert changed.info.warnings == (
        "decoding stopped at 4.00 s: the chained Ogg stream's next part (joined files, a radio "
        "capture) changes the channel count or sample rate, which FFmpeg cannot follow; the "
        "parts before it were tagged",
    )


@pytest.mark.parametrize(
    ("container", "subtype"), [("OGG", "VORBIS"), ("OGG", "OPUS"), ("FLAC", "PCM_16")]
)
def test_tags_in_latin1_do_not_stop_the_audio_decoding(container: str, subtype: str) -> None:
    """Vorbis comments are UTF-8 by the spec, but older encoders and games' tracks (Warmux's
    music) wrote Latin-1: the audio decodes all the same."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 48000, 2, format=container, subtype=subtype) as file:
        file.title = "Ete en fete"
        file.write(audio.tone(48000, 3.0))
    utf8 = buffer.getvalue()
    latin1 = "Été en fête".encode("latin-1")
    if container == "OGG":
        damaged = audio.replaced_in_ogg(utf8, b"Ete en fete", latin1)
    else:  # FLAC's metadata blocks carry no checksum
        damaged = utf8.replace(b"Ete en fete", latin1)
    decoded = decode(damaged, 16000, LIMITS)
    assert abs(decoded.duration_seconds - 3.0) < DURATION_TOLERANCE
    assert decoded.info.warnings == ()
    np.testing.assert_array_equal(decoded.waveform, decode(utf8, 16000, LIMITS).waveform)


def test_reads_open_files() -> None:
    data = _encode(audio.tone(22050, 1.0, 1), 22050, "FLAC", "PCM_16")
    with io.BytesIO(data) as handle:
        assert decode(handle, 16000, LIMITS).info.sample_rate == 22050


def test_a_body_naming_another_file_never_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ffconcat list names a file relative to the working directory; FFmpeg's concat demuxer
    opened it (here a FIFO, whose opening blocks until a writer comes) before the allow-list
    refused the list. Only the allowed demuxers may be picked now."""
    fifo = tmp_path / "probe"
    os.mkfifo(fifo)
    monkeypatch.chdir(tmp_path)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            decode(b"ffconcat version 1.0\nfile probe\n", 16000, LIMITS)
        except BaseException as error:  # kept for the assertion below
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=10)
    opened = worker.is_alive()
    if opened:  # a writer lets the blocked open return, so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join()
    assert not opened, "FFmpeg opened the file the body named"
    assert len(outcome) == 1 and isinstance(outcome[0], UnsupportedFormatError)
