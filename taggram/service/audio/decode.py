"""Decode any accepted container into mono float32 at the model's sample rate, block by block.

The container is recognised from the bytes (:mod:`taggram.formats`: signatures, then FFmpeg's
probe), checked against the allow-list, and decoded by FFmpeg's libraries through PyAV; the
per-format measurements behind that choice are in ``docs/audio.md``. The steps reproduce what the
original musicnn did through ``librosa.load(file, sr=16000)``: samples as float32 (integer PCM
divided by its full scale, as libsndfile does), channels averaged, soxr's ``HQ`` resampler
(librosa 0.11's default ``soxr_hq``), the result trimmed or zero-padded to
``ceil(frames * target / native)`` samples as librosa does. soxr's streaming resampler gives the
same samples as its one-shot call, so decoding holds only the 16 kHz output plus one block.

Limits, all counted while the audio streams:

* bytes: ``max_bytes`` of input;
* native sample rate: at most ``max_sample_rate`` (the cost of decoding and resampling grows
  with it, not with the file's size);
* length: the duration limit is enforced on the samples that decode. A header's length refuses
  early only where it is trustworthy (uncompressed PCM whose declared data fits in the file, a
  FLAC STREAMINFO whose frame count fits its byte size), so an estimate (an MP3 without a Xing
  header, two MP3s joined) never refuses a file, and a lying header never buys more than the
  limit.

A stream that breaks after some audio (truncated, or an Ogg stream without its end-of-stream page)
is returned with what decoded and a warning saying where and why it stopped; only when nothing
decodes is it refused. Decoding is blocking and CPU-bound: callers run :func:`decode` in a
worker thread.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import av
import numpy as np
import soxr

from taggram.formats import Container, by_demuxer, describe_unknown, id3_size, sniff, supported
from taggram.service.audio import matroska, mp3, mp4, wav
from taggram.service.audio.levels import Levels
from taggram.service.errors import (
    AudioTooLongError,
    EmptyAudioError,
    InvalidAudioError,
    PayloadTooLargeError,
    SampleRateTooHighError,
    UndecodableAudioError,
    UnsupportedFormatError,
)

AudioSource = bytes | BinaryIO
# Native frames gathered before each resampler call: bounds the per-block buffers to ~1 MB of
# float32 mono while keeping Python's per-call overhead negligible (MP3 frames are 1152 samples).
_BLOCK_FRAMES = 1 << 16
# Bytes read to recognise the container (room for an ID3v2 tag with a small cover image).
_HEAD_BYTES = 64 * 1024
# Ogg pages are at most 64 KiB: the last page header lies within this tail.
_OGG_TAIL_BYTES = 65536 + 27 + 255
# A header's length disagreeing with what decoded by more than this is reported as a truncation.
_TRUNCATION_TOLERANCE_SECONDS = 0.1
# Audio up to this much past the duration limit is accepted: lossy codecs decode whole frames,
# with encoder delay and padding a container does not always trim, so a clip cut to exactly the
# limit decodes a little longer (`ffmpeg -t 30` to AAC: 30.0002 s; MP3 without a LAME header at
# 8 kHz, WMA or AC-3 frames: up to a quarter of a second) and was refused by a hair.
FRAMING_GRACE_SECONDS = 0.5
# Containers whose header length, as FFmpeg reports it, is exact (not an estimate), for the
# truncation warning. An MP3's is exact only as its Xing/Info/VBRI frame counts it (``mp3``), a
# Matroska file's says how much of a cut file is missing (``matroska``).
_EXACT_LENGTH = frozenset({"WAV", "Wave64", "AIFF", "AU", "CAF", "FLAC", "MP4"})
# Most channels decoded: FFmpeg's resampler (libswresample's SWR_CH_MAX) refuses more.
MAX_CHANNELS = 64
# PyAV reads at most this many planes of a planar frame safely (AVFrame.data's 8 pointers).
_PLANAR_MAX_CHANNELS = 8
# FFmpeg errors that end a stream: broken data, a cut file, an unsupported variant.
_STREAM_ERRORS = (av.error.FFmpegError, ValueError, EOFError)


@dataclass(frozen=True)
class AudioInfo:
    """The upload as decoded: its own rate and channels, the native frames that decoded, the
    container and codec (e.g. ``MP3/mp3``, ``WAV/pcm_s16le``), and any decoding warnings."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    warnings: tuple[str, ...] = ()

    @property
    def duration_seconds(self) -> float:
        """Decoded length in seconds at the file's own sample rate."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class DecodedAudio:
    """The upload decoded: what it was (``info``) and its mono float32 waveform at
    ``sample_rate`` Hz (the model's).
    """

    info: AudioInfo
    waveform: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        """Length of ``waveform`` in seconds."""
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class DecodeLimits:
    """Input bounds: bytes, decoded seconds, native sample rate (Hz)."""

    max_bytes: int
    max_duration_seconds: float
    max_sample_rate: int = 192_000


def _as_file(source: AudioSource) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source


class _After(io.RawIOBase):
    """The bytes of ``handle`` from ``start`` on, as a seekable file of their own."""

    def __init__(self, handle: BinaryIO, start: int) -> None:
        super().__init__()
        self._handle, self._start = handle, start
        handle.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            offset += self._start
        position = self._handle.seek(offset, whence)
        if position < self._start:  # never before the window
            position = self._handle.seek(self._start)
        return position - self._start

    def tell(self) -> int:
        return self._handle.tell() - self._start


class _Unnamed:
    """The reading side of ``handle`` without its ``name``, for FFmpeg.

    PyAV gives FFmpeg a file object's ``name`` as the input's URL, and FFmpeg's probe scores the
    demuxer of a matching extension up: a file opened from disk (``taggram tag --local``, a
    local catalogue) was then read as what its name says where the same bytes uploaded, which
    carry no name, are read as what they are (random bytes called ``x.mp3``: 422 "no sample
    rate" in-process, 415 ``unsupported_format`` through the service). Only the bytes decide.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


def _byte_size(handle: BinaryIO) -> int:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    return size


def _output_size(native_frames: int, native_rate: int, target_rate: int) -> int:
    return int(np.ceil(native_frames * (float(target_rate) / native_rate)))


class _Output:
    """The resampled signal, written block by block into one buffer sized for the limit.

    The buffer is allocated once for the longest admissible output; pages the decoder never
    writes are never touched, so only the audio that decodes occupies memory, and no final
    concatenation doubles it.
    """

    def __init__(self, native_rate: int, target_rate: int, max_frames: int) -> None:
        self.native_rate, self.target_rate = native_rate, target_rate
        self.native_frames = 0
        self._stream = (
            None
            if native_rate == target_rate
            else soxr.ResampleStream(native_rate, target_rate, 1, dtype="float32", quality="HQ")
        )
        # soxr may hand back a few samples more than the ideal length before it is trimmed.
        capacity = _output_size(max_frames, native_rate, target_rate) + 4096
        self._buffer = np.empty(capacity, np.float32)
        self._size = 0

    def _store(self, chunk: np.ndarray) -> None:
        end = min(self._size + len(chunk), len(self._buffer))
        self._buffer[self._size : end] = chunk[: end - self._size]
        self._size = end

    def write(self, mono: np.ndarray, last: bool = False) -> None:
        self.native_frames += len(mono)
        if self._stream is None:
            self._store(mono)
        else:
            self._store(self._stream.resample_chunk(mono, last=last))

    def waveform(self) -> np.ndarray:
        self.write(np.zeros(0, np.float32), last=True)
        size = _output_size(self.native_frames, self.native_rate, self.target_rate)
        if self._size < size:
            self._buffer[self._size : size] = 0.0
        return self._buffer[:size]


@dataclass
class _Progress:
    """What the decode loop learnt on the way: frames seen, skipped packets, why it stopped, the
    levels of what it decoded."""

    frames: int = 0
    skipped_packets: int = 0
    stopped: str | None = None
    levels: Levels = field(default_factory=Levels)


def _reason(error: Exception) -> str:
    """FFmpeg's words for ``error``, without its errno and placeholder file name."""
    return getattr(error, "strerror", None) or str(error)


def _stop_reason(media: av.container.InputContainer, error: Exception) -> str:
    """Why demuxing stopped mid-stream, for the warning. FFmpeg's Ogg demuxer refuses a chained
    stream's next part whose channel count or sample rate differs ("Channel change is not
    supported") with only "Not yet implemented in FFmpeg, patches welcome": say what it means."""
    if media.format.name == "ogg" and isinstance(error, av.error.PatchWelcomeError):
        return (
            "the chained Ogg stream's next part (joined files, a radio capture) changes the "
            "channel count or sample rate, which FFmpeg cannot follow; the parts before it "
            "were tagged"
        )
    return _reason(error)


def _open(handle: BinaryIO, head: bytes) -> tuple[av.container.InputContainer, Container]:
    """Open ``handle`` with FFmpeg as the container its bytes show; refuse what is not allowed."""
    known = sniff(head)
    try:
        media = av.open(
            _Unnamed(handle),
            mode="r",
            format=known.demuxers[0] if known else None,
            # No protocol (a list naming none): the body is the only input. FFmpeg's concat
            # demuxer opened a file an upload named, relative to the working directory, before
            # the allow-list below refused it; the probe still names any container it finds.
            options={"protocol_whitelist": "none"},
            # Tags are not what is tagged: Latin-1 comments (older Ogg encoders, games' tracks)
            # made PyAV's strict UTF-8 reading refuse the whole file as unreadable.
            metadata_errors="replace",
        )
    except _STREAM_ERRORS as error:
        if known is None:
            raise UnsupportedFormatError(
                f"not a supported audio format: the body looks like {describe_unknown(head)}; "
                f"supported containers: {supported()}"
            ) from error
        if known.name == "MP4" and mp4.lacks_index(handle):
            raise UndecodableAudioError(
                "the MP4 file has no index (its moov box), so none of its audio can be found: "
                "it was cut short (or is still being written) before its end, where encoders "
                "write the index; send the whole file (with the index first, `ffmpeg -movflags "
                "+faststart`, a cut file decodes up to the cut)"
            ) from error
        raise UndecodableAudioError(
            f"{known.name} file that cannot be read: {_reason(error)}"
        ) from error
    container = known or by_demuxer(media.format.name)
    if container is None:
        media.close()
        raise UnsupportedFormatError(
            f"{media.format.long_name} ({media.format.name}) is not a supported audio format; "
            f"supported containers: {supported()}"
        )
    return media, container


def _trusted_frames(stream: av.AudioStream, container: Container, size: int) -> int | None:
    """The header's length in native frames where it agrees with the byte size, else ``None``."""
    context = stream.codec_context
    if container.name == "FLAC" and context.extradata and len(context.extradata) >= 34:
        # STREAMINFO: block sizes (16+16 bits), frame sizes (24+24), rate/channels/bits/total.
        _, max_block, min_frame = struct.unpack(">HH3s", context.extradata[:7])
        total = int.from_bytes(context.extradata[13:18], "big") & ((1 << 36) - 1)
        smallest = int.from_bytes(min_frame, "big") * math.ceil(total / max(max_block, 1))
        return total if total and min_frame != b"\0\0\0" and smallest <= size else None
    if (
        context.name.startswith("pcm_")
        and stream.duration
        and stream.time_base
        and context.bit_rate
    ):
        frames = int(stream.duration * stream.time_base * context.sample_rate)
        return frames if frames * context.bit_rate / 8 / context.sample_rate <= size else None
    return None


def _audio_stream(media: av.container.InputContainer, container: Container) -> av.AudioStream:
    """The stream to decode: FFmpeg's best audio stream, checked for a codec, a sample rate and
    a channel count it can decode and downmix.

    A stream whose codec FFmpeg does not know (a WAV format tag of no codec, or PCM of 0 bits per
    sample) has no codec context at all. FFmpeg passes over an audio stream without a sample
    rate or a channel count, the count a header declares being dropped when it is 0 or above 512
    (``FF_SANE_NB_CHANNELS``); its resampler handles at most ``MAX_CHANNELS`` (``SWR_CH_MAX``).
    Raises :class:`UndecodableAudioError` naming what is wrong.
    """
    best = media.streams.best("audio")
    stream = best if isinstance(best, av.AudioStream) else media.streams.audio[0]
    context = stream.codec_context
    if context is None:
        raise UndecodableAudioError(
            f"the {container.name} audio stream is in a codec FFmpeg does not know, so nothing "
            f"decodes (a format tag of no codec, or a sample size of 0 bits)"
        )
    if not context.sample_rate:
        raise UndecodableAudioError(f"the {container.name} audio stream has no sample rate")
    if best is None:
        raise UndecodableAudioError(
            f"the {container.name} audio stream declares no valid channel count (none, or more "
            f"than FFmpeg's 512); at most {MAX_CHANNELS} channels decode"
        )
    if context.channels > MAX_CHANNELS:
        raise UndecodableAudioError(
            f"the {container.name} audio stream has {context.channels} channels; at most "
            f"{MAX_CHANNELS} decode"
        )
    return stream


def _pcm_data_chunk(container: Container, codec: str, handle: BinaryIO) -> wav.DataChunk | None:
    """A PCM WAV's or Wave64's data chunk as its header declares it. FFmpeg sizes those streams
    by the data it finds, so a cut file would look whole: the header's own count tells. Reads
    ``handle``: call it once FFmpeg no longer does."""
    if not codec.startswith("pcm_"):
        return None
    if container.name == "WAV":
        return wav.data_chunk(handle)
    return wav.wave64_data_chunk(handle) if container.name == "Wave64" else None


def _declared_seconds(stream: av.AudioStream, container: Container) -> float | None:
    # FFmpeg's duration of a PCM CAF is the data it finds; the header's frame count is `frames`.
    if container.name == "CAF" and stream.frames:
        return stream.frames / stream.codec_context.sample_rate
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _ogg_unterminated(handle: BinaryIO, size: int) -> bool:
    """Whether the last Ogg page lacks the end-of-stream flag (an interrupted recording)."""
    handle.seek(max(0, size - _OGG_TAIL_BYTES))
    tail = handle.read()
    last = tail.rfind(b"OggS")
    return last < 0 or len(tail) <= last + 5 or not tail[last + 5] & 0x04


def _frames(
    media: av.container.InputContainer, stream: av.AudioStream, rate: int, progress: _Progress
) -> Iterator[np.ndarray]:
    """Decoded frames as float32 ``[n, channels]`` at ``rate``, until the stream ends or breaks.

    Frames the codec already gives as planar float at ``rate`` with fewer than
    ``_PLANAR_MAX_CHANNELS`` channels (Vorbis, Opus, MP3, AAC) are taken as they are; the others
    go through FFmpeg's resampler to packed (interleaved) ``flt``. Not planar ``fltp`` for all:
    PyAV's ``to_ndarray`` reads a planar frame's planes through ``AVFrame.data``, which holds
    only 8 pointers, and crashes the process on a frame of 8 channels or more (cf.
    pytorch/torchcodec#1166); a packed frame is one buffer whatever its channels. Not packed for
    all: interleaving every frame of a planar codec costs half the decoding again. A packet the
    codec rejects is skipped (as the ffmpeg tool does); a demuxing error ends the stream,
    recorded in ``progress.stopped``.
    """
    converter: av.AudioResampler | None = None
    packets = media.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except _STREAM_ERRORS as error:
            progress.stopped = _stop_reason(media, error)
            break
        try:
            frames = packet.decode()
        except _STREAM_ERRORS:
            progress.skipped_packets += 1
            continue
        for frame in frames:
            if (
                frame.format.name == "fltp"
                and frame.sample_rate == rate
                and frame.layout.nb_channels < _PLANAR_MAX_CHANNELS
            ):
                if converter is not None:  # what it still holds comes first
                    yield from map(_interleaved, converter.resample(None))
                    converter = None
                yield frame.to_ndarray().T
                continue
            if converter is None:
                converter = av.AudioResampler(format="flt", rate=rate)
            try:
                converted = converter.resample(frame)
            except ValueError:  # the layout or rate changed mid-stream (joined files)
                converter = av.AudioResampler(format="flt", rate=rate)
                converted = converter.resample(frame)
            yield from map(_interleaved, converted)
    if converter is not None:
        yield from map(_interleaved, converter.resample(None))


def _interleaved(frame: av.AudioFrame) -> np.ndarray:
    """A packed ``flt`` frame as float32 ``[samples, channels]`` (a view, no copy)."""
    return frame.to_ndarray().reshape(-1, frame.layout.nb_channels)


def _downmix(samples: np.ndarray) -> np.ndarray:
    """Mean of the channels of float32 ``[n, channels]``: a matrix-vector product over the
    planes (the transpose made contiguous, which keeps the samples bit for bit those of the
    planar decoding this replaced, for any channel count), exactly the mean for 1 and 2 channels
    and far cheaper than ``np.mean`` over a short axis."""
    planes = np.ascontiguousarray(samples.T)
    weights = np.full(planes.shape[0], 1.0 / planes.shape[0], dtype=np.float32)
    return np.asarray(weights @ planes, dtype=np.float32)


def _stream_into(
    output: _Output,
    blocks: Iterator[np.ndarray],
    max_frames: int,
    limit_seconds: float,
    progress: _Progress,
) -> None:
    """Downmix and resample ``blocks`` into ``output``, refusing once ``max_frames`` is passed.

    Frames are gathered into blocks of about ``_BLOCK_FRAMES`` before the downmix, so that its
    per-call cost is paid per block, not per (MP3-sized) frame; a change of channel count (files
    joined with ``cat``) closes the block.
    """
    pending: list[np.ndarray] = []
    pending_frames = 0

    def flush() -> None:
        samples = np.concatenate(pending)
        mono = _downmix(samples)
        progress.levels.add(samples, mono)
        # The sum is the cheap test: NaN or an infinity anywhere leaves it non-finite.
        if not math.isfinite(progress.levels.mono_sum):
            raise InvalidAudioError("the audio contains NaN or infinite samples")
        output.write(mono)

    for samples in blocks:
        progress.frames += len(samples)
        if progress.frames > max_frames:
            raise AudioTooLongError(
                f"the audio runs past the limit of {limit_seconds:g} s (refused while decoding)"
            )
        if pending and samples.shape[1] != pending[0].shape[1]:
            flush()
            pending, pending_frames = [], 0
        pending.append(samples)
        pending_frames += len(samples)
        if pending_frames >= _BLOCK_FRAMES:
            flush()
            pending, pending_frames = [], 0
    if pending:
        flush()


def _declared_length(
    media: av.container.InputContainer,
    stream: av.AudioStream,
    container: Container,
    head: bytes,
    cut: bool,
) -> float | None:
    """The header's length in seconds where it is a count, not an estimate, for the truncation
    warning; ``None`` where there is none (a PCM WAV's or Wave64's data chunk, read by the caller
    once FFmpeg is done with the file, overrides it). An MP3's is its Xing/Info/VBRI frame count
    (FFmpeg's own is a bitrate estimate when the file's size disagrees with the count), a
    Matroska file's its duration, only when ``cut`` (shorter than its Segment declares: the
    duration spans every track, so a whole file's says nothing of the audio's). Read while the
    container is open: the stream's fields live in FFmpeg's structures.
    """
    if container.name == "MP3":
        return mp3.declared_seconds(head[id3_size(head) :])
    if container.name == "Matroska":
        return media.duration / av.time_base if cut and media.duration else None
    return _declared_seconds(stream, container) if container.name in _EXACT_LENGTH else None


def _cut_matroska(container: Container, head: bytes, size: int) -> bool:
    """Whether a Matroska or WebM file is smaller than its Segment declares (cut short)."""
    end = matroska.segment_end(head) if container.name == "Matroska" else None
    return end is not None and end > size


def _unread_wav_data(handle: BinaryIO, size: int, chunk: wav.DataChunk, rate: int) -> str | None:
    """A warning when more than a moment of bytes that are not a chunk (so not metadata) follow
    the data chunk as its header declares it: FFmpeg, like libsndfile, stops where it declares."""
    room = size - chunk.end
    handle.seek(chunk.end)
    if wav.is_chunk(handle.read(8), room - 8):
        return None
    more = room // chunk.block_align / rate
    if more <= _TRUNCATION_TOLERANCE_SECONDS:
        return None
    declared = chunk.frames() / rate
    return (
        f"the WAV header declares {declared:.2f} s of audio but {more:.2f} s more data follow "
        f"it: tagged the declared {declared:.2f} s (FFmpeg and libsndfile read no further)"
    )


def _warnings(
    progress: _Progress, declared: float | None, rate: int, tail: bool, cut: bool
) -> list[str]:
    """What the user should know about the decoding; ``declared`` is the header's length in
    seconds where it is a count (not an estimate), ``cut`` whether a file of no such length
    (Matroska without a duration) is smaller than its header declares."""
    decoded = progress.frames / rate
    warnings = []
    if progress.stopped is not None:
        warnings.append(f"decoding stopped at {decoded:.2f} s: {progress.stopped}")
    if progress.skipped_packets:
        count = progress.skipped_packets
        packets = "1 damaged packet was" if count == 1 else f"{count} damaged packets were"
        warnings.append(f"{packets} skipped: the codec could not decode them")
    if declared is not None and declared - decoded > _TRUNCATION_TOLERANCE_SECONDS:
        warnings.append(
            f"the file is truncated: its header declares {declared:.2f} s, {decoded:.2f} s decoded"
        )
    elif cut and declared is None:
        warnings.append(
            f"the file is truncated: it ends before the size its header declares; tagged the "
            f"{decoded:.2f} s that decoded"
        )
    if tail:
        warnings.append(
            f"the Ogg stream ends without its end-of-stream page (an interrupted or live "
            f"recording): tagged the {decoded:.2f} s that decoded"
        )
    return warnings


def decode(source: AudioSource, target_rate: int, limits: DecodeLimits) -> DecodedAudio:
    """Decode ``source`` (bytes or a seekable binary file, read from its start) to float32 mono
    at ``target_rate`` Hz.

    Raises :class:`EmptyAudioError` (no bytes), :class:`PayloadTooLargeError` (over
    ``max_bytes``), :class:`UnsupportedFormatError` (not an accepted container),
    :class:`SampleRateTooHighError`, :class:`AudioTooLongError` (a trustworthy header, or the
    decoded audio, over ``max_duration_seconds`` by more than :data:`FRAMING_GRACE_SECONDS`),
    :class:`UndecodableAudioError` (an accepted container from which nothing decodes) and
    :class:`InvalidAudioError` (no samples, or NaN or infinite samples).
    """
    handle = _as_file(source)
    size = _byte_size(handle)
    if size == 0:
        raise EmptyAudioError("the request carried no audio")
    if size > limits.max_bytes:
        raise PayloadTooLargeError(
            f"upload of {size} bytes exceeds the limit of {limits.max_bytes}"
        )
    head = handle.read(_HEAD_BYTES)
    tag = id3_size(head)
    if tag >= size:
        raise UndecodableAudioError(
            f"the file holds no audio after its ID3v2 tag: the tag declares {tag} bytes (cover "
            f"art, most likely) and the file has {size}; was it cut short?"
        )
    if tag:
        handle.seek(tag)
        after = handle.read(_HEAD_BYTES)
        behind = sniff(after) if after else None
        if behind is not None and behind.name != "MP3":
            # A tagger put an ID3v2 tag before a file of another container (a WAV, an M4A):
            # FFmpeg's demuxers of those read the tag as their own header and fail, so the
            # file is opened as if the tag were not there.
            handle, size, head = io.BufferedReader(_After(handle, tag)), size - tag, after
        elif behind is None or tag > len(head) - 16:
            # No signature right after the tag (an MP3 cut mid-frame or behind junk, or no audio
            # at all), or a tag bigger than the head (cover art): the bytes after it decide,
            # through FFmpeg's probe, as they did only past a large tag; a small tag made the
            # file MP3, so text or an image behind it was a 422 "MP3 file that cannot be read"
            # where behind a large one it was a 415 saying what it is.
            head = after or head  # nothing after it: an ID3 tag means MP3
    handle.seek(0)
    media, container = _open(handle, head)
    with media:
        if not media.streams.audio:
            raise UndecodableAudioError(f"the {container.name} file holds no audio stream")
        stream = _audio_stream(media, container)
        context = stream.codec_context
        rate, channels = context.sample_rate, context.channels
        if rate > limits.max_sample_rate:
            raise SampleRateTooHighError(
                f"the audio's sample rate of {rate} Hz is above the limit of "
                f"{limits.max_sample_rate} Hz (TAGGRAM_MAX_SAMPLE_RATE)"
            )
        trusted = _trusted_frames(stream, container, size)
        accepted_seconds = limits.max_duration_seconds + FRAMING_GRACE_SECONDS
        if trusted is not None and trusted / rate > accepted_seconds:
            raise AudioTooLongError(
                f"audio declares {trusted / rate:.1f} s, more than the limit of "
                f"{limits.max_duration_seconds:g} s"
            )
        max_frames = math.floor(accepted_seconds * rate)
        output = _Output(rate, target_rate, max_frames)
        progress = _Progress()
        blocks = _frames(media, stream, rate, progress)
        _stream_into(output, blocks, max_frames, limits.max_duration_seconds, progress)
        codec = context.codec.name.removesuffix("float")
        cut = _cut_matroska(container, head, size)
        declared = _declared_length(media, stream, container, head, cut)
    chunk = _pcm_data_chunk(container, codec, handle)
    if chunk is not None:
        declared = chunk.frames() / rate
    if progress.frames == 0:
        if progress.stopped is not None or progress.skipped_packets:
            reason = progress.stopped or "every packet was damaged"
            raise UndecodableAudioError(
                f"no audio decodes from the {container.name} file: {reason}"
            )
        raise InvalidAudioError("the audio contains no samples")
    tail = container.name == "Ogg" and _ogg_unterminated(handle, size)
    warnings = _warnings(progress, declared, rate, tail, cut)
    warnings += progress.levels.warnings(rate, stored_float=codec.startswith("pcm_f"))
    unread = chunk and container.name == "WAV" and _unread_wav_data(handle, size, chunk, rate)
    info = AudioInfo(
        sample_rate=rate,
        channels=channels,
        frames=progress.frames,
        format=f"{container.name}/{codec}",
        warnings=(*warnings, *([unread] if unread else [])),
    )
    return DecodedAudio(info=info, waveform=output.waveform(), sample_rate=target_rate)
