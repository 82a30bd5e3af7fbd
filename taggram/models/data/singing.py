"""Synthesised singing for training: random songs sung by Sinsy, mixed over the recipe's music.

Debian holds almost no sung audio (the Frets on Fire songs), so a student distilled on it learns
little of what its teacher says about voices. This writes songs of its own:

1. **Song** (:func:`random_song`, pure numpy): a key (any tonic, major or minor), a loop of four
   chords, a tempo of 66-135 quarter notes per minute and 8-12 bars of 4/4. Three *parts*: the
   *melody* (eighths to dotted halves, a chord tone on beats 1 and 3 and half the time elsewhere,
   a breath at the end of some four-bar phrases) and two *harmony* parts, *alto* and *tenor*
   (chord tones in half or whole notes). Each part moves to a near pitch within its range.
2. **Score** (:func:`musicxml`): one MusicXML score per part, a random Japanese syllable (kana) as
   the lyric of each sung note.
3. **Rendering** (:func:`render_song`): Sinsy, the HMM-based singing voice synthesiser (Oura et
   al., "Recent development of the HMM-based singing voice synthesis system — Sinsy", SSW 2010),
   through PyPI's ``pysinsy`` (the ``singing`` extra: ``pip install 'taggram[singing]'``, which
   compiles Sinsy's C++ with cmake), sings each part with the voice it bundles, Nitech's
   NIT SONG070 F001 (Japanese, female; CC-BY-3.0), each part with another frequency-warping
   constant (another singer): 48 kHz 16-bit stems.
4. **Mix** (:func:`mix_song`): an *arrangement* (solo: the melody; duet: melody and alto; choir:
   all three parts, each slightly late), a synthetic reverb, then either over a random excerpt of
   the recipe's music at a random vocal-to-music ratio (-4 to +8 dB), at the music's own loudness,
   or (15%, or when no music is given) a cappella at -26 to -16 dBFS RMS: mono 16 kHz float32.
5. **Singers** (optional, :func:`sung_by`): Sinsy has one voice, a woman's; so that no one
   timbre stands for singing, or for "woman" (docs/training.md measures what it changed), with
   ``voices`` each part
   is sung by a man (half the parts: an octave lower, formants 12-22 % lower) or another woman
   (formants -5 to +8 %), through Praat's "Change gender" (pitch-synchronous overlap-add;
   Boersma & Weenink, Praat) in ``praat-parselmouth``, before the parts are mixed.

Everything is seeded by the song's seed: the song by ``default_rng(seed)``, each part's
frequency-warping constant and the lyrics by ``default_rng(seed + 10_000)``, the mix by
``default_rng(seed + 20_000)``, the singers (``voices``) by ``default_rng(seed + 30_000)``, so a
song mixed with ``voices`` differs only in its voices; Sinsy itself is deterministic, so a seed
always gives the same stems and the same mix over the same music. The random draws are made in the
order of the experiment this module came from (issue 16), so the mixes it trained on are reproduced
exactly.

``taggram prepare-data --singing-songs N`` adds N mixes over the training split's music to the
manifest (package ``sinsy-singing``, kind ``music``, split ``train``);
``taggram validation-clips --singing-songs N --singing-seed S`` writes held-out mixes over the
validation split's music as a clip folder for ``benchmarks.student_vs_teacher``.
"""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import soundfile as sf

from taggram.models.data.clips import write_clip_manifest
from taggram.models.data.packages import ensure_trainable
from taggram.models.data.prepare import SAMPLE_RATE, ManifestRow, read_mono, write_wav

INSTALL_HINT = (
    "pip install 'taggram[singing]' (builds Sinsy from source: needs cmake and a C++ compiler)"
)
PACKAGE = "sinsy-singing"  # the manifest's package column for every mix
VOICE = "NIT SONG070 F001, CC-BY-3.0"  # pysinsy's bundled HTS voice (Nitech), and its licence
STEMS = Path("singing") / "stems"  # where the stems are kept, under the data folder

# The lyrics: kana of single syllables (a vowel, or a consonant and a vowel), in the prototype's
# order (a syllable is drawn by its index). The moraic ん is left out: it is no syllable of its own.
SYLLABLES = list(
    "あいうえおかきくけこさしすせそたてとなにぬねのはひふへほまみむめもやゆよらりるれろわ"
)
MAJOR = [0, 2, 4, 5, 7, 9, 11]  # semitones above the tonic
MINOR = [0, 2, 3, 5, 7, 8, 10]  # natural minor
# Chord loops as scale degrees (0-based): I-V-vi-IV, vi-IV-I-V, I-vi-IV-V, I-IV-V-I, I-IV-I-V,
# vi-V-IV-V (in minor the same degrees give i-v-VI-iv, ...).
LOOPS = [[0, 4, 5, 3], [5, 3, 0, 4], [0, 5, 3, 4], [0, 3, 4, 0], [0, 3, 0, 4], [5, 4, 3, 4]]
# MIDI pitch ranges per part (inclusive). The one voice is a female singer: the parts stay in or
# near her range (the melody C4-G5, the alto G3-C5, the tenor E3-G4).
RANGES = {"melody": (60, 79), "alto": (55, 72), "tenor": (52, 67)}
HARMONY = ("alto", "tenor")
BAR = 8  # eighths in a bar of 4/4
# Note values in eighths: their MusicXML types (3 and 6 are dotted). There is no 5 or 7 (that
# would take a tie), so a melody note that would be 5 eighths long becomes an eighth.
NOTE_TYPES = {1: "eighth", 2: "quarter", 3: "quarter", 4: "half", 6: "half", 8: "whole"}
DOTTED = (3, 6)
DIVISIONS = 2  # MusicXML durations per quarter note: an eighth is 1, the shortest note
STEP_NAMES = ["C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B"]
STEP_ALTER = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]  # sharps for the black keys
# A singer per part: HTS's all-pass frequency-warping constant (alpha) moves the formants, as a
# longer or shorter vocal tract would (the voice's own is 0.55, its .htsvoice file says).
ALPHA = (0.50, 0.60)
SINSY_VOLUME_DB = -6.0  # the lower parts clipped at Sinsy's default volume (0 dB)
# Singers (``voices``): a part is a man's with this probability, an octave down (the harmony stays
# consonant) and with the formants lowered as by a longer vocal tract; otherwise another woman's.
MALE = 0.5
MALE_PITCH_RATIO = 0.5
MALE_FORMANT_RATIO = (0.78, 0.88)
FEMALE_FORMANT_RATIO = (0.95, 1.08)
# Praat's pitch analysis range for Sinsy's parts (E3-G5 sung, some vibrato above).
PITCH_FLOOR_HZ = 100.0
PITCH_CEILING_HZ = 1000.0

ARRANGEMENTS = {"solo": ("melody",), "duet": ("melody", "alto"), "choir": ("melody", *HARMONY)}
ARRANGEMENT_P = [0.4, 0.2, 0.4]  # solo, duet, choir
HARMONY_GAIN = 0.7  # a harmony part below the melody (-3 dB), before each part's random gain
PART_GAIN_DB = (-3.0, 3.0)  # nor are a choir's singers equally loud
CHOIR_DELAY_SECONDS = (0.0, 0.03)  # a choir's singers are not together to the sample
RT60_SECONDS = {"choir": (0.8, 2.0), "small": (0.2, 1.0)}  # a hall for a choir, rooms otherwise
WET = (0.15, 0.4)  # share of reverberated sound
A_CAPPELLA = 0.15  # share of mixes without music
A_CAPPELLA_DBFS = (-26.0, -16.0)  # their RMS level
VOCAL_TO_MUSIC_DB = (-4.0, 8.0)  # the voice's RMS over the music's excerpt
MUSIC_TRIES = 50  # draws of a music file longer than the song (plus a second) before giving up
PEAK = 0.99  # a mix louder than this is scaled down to it
# HTS's occasional bursts: a 10 ms frame peaking over this many times the median peak of the
# voiced frames (peak above -60 dBFS) is silenced, with two frames either side.
GLITCH_FRAME_SECONDS = 0.01
GLITCH_RATIO = 6.0
GLITCH_MARGIN_FRAMES = 2
VOICED_PEAK = 1e-3
# Sinsy pads a song with silence: a song is kept from its first to its last sample above this
# share of its peak (-40 dB).
TRIM = 1e-2


class SingingUnavailableError(RuntimeError):
    """pysinsy (the ``singing`` extra) is not installed."""


class Singer(NamedTuple):
    """Who sings a part (``voices``): a man or a woman, the pitch ratio to Sinsy's (1: unchanged),
    the formant ratio (below 1: a longer vocal tract), and the seed of Praat's random generator
    (its overlap-add jitters the pulses it places in unvoiced sound)."""

    male: bool
    pitch_ratio: float
    formant_ratio: float
    seed: int


class Note(NamedTuple):
    """A note of a part: its MIDI pitch (``None``: a rest) and its duration in eighths."""

    pitch: int | None
    eighths: int


@dataclass(frozen=True)
class Song:
    """A random song (:func:`random_song`): ``parts`` maps a part's name (``melody``, ``alto``,
    ``tenor``) to its bars, each a list of notes that fill 4/4 (8 eighths)."""

    seed: int
    tempo: int  # quarter notes per minute
    tonic: int  # pitch class, 0 = C
    minor: bool
    parts: dict[str, list[list[Note]]]


@dataclass(frozen=True)
class Mix:
    """A song arranged and mixed (:func:`mix_song`)."""

    audio: np.ndarray  # float32 [samples], mono, SAMPLE_RATE Hz, peak at most PEAK
    arrangement: str  # solo, duet or choir
    music: ManifestRow | None  # the accompaniment's file (None: a cappella)
    start: int  # the music excerpt's first sample (0 a cappella)
    vocal_to_music_db: float  # voice RMS over music RMS (nan a cappella)
    singers: tuple[Singer, ...] | None  # the arrangement's singers, by part (None: Sinsy's voice)

    @property
    def seconds(self) -> float:
        """The mix's duration in seconds."""
        return len(self.audio) / SAMPLE_RATE


def _nearest(
    candidates: Sequence[int], previous: int, low: int, high: int, rng: np.random.Generator
) -> int:
    """The pitch in [``low``, ``high``] of one of the ``candidates`` pitch classes (in any octave)
    nearest ``previous``, each distance lengthened by a random 0-4 semitones, so that a part
    mostly steps but sometimes leaps."""
    # Candidates are a tonic plus scale steps (0-22); octaves 0-9 cover MIDI's range. One draw
    # per option, in this order (the seeded songs depend on it).
    options = [p + 12 * k for p in candidates for k in range(0, 10) if low <= p + 12 * k <= high]
    options.sort(key=lambda p: abs(p - previous) + rng.uniform(0, 4))
    return options[0]


def random_song(seed: int) -> Song:
    """The song of ``seed`` (deterministic; numpy's ``default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    loop = LOOPS[int(rng.integers(len(LOOPS)))]
    tempo = int(rng.integers(66, 136))
    bars = int(rng.integers(8, 13))
    chords = [loop[b % len(loop)] for b in range(bars)]

    def chord_tones(degree: int) -> list[int]:
        """The triad on a scale degree: its pitch classes above C (0-22)."""
        return [tonic + scale[(degree + i) % 7] for i in (0, 2, 4)]

    parts: dict[str, list[list[Note]]] = {}
    # Melody: chord tones on the strong beats (1 and 3), scale or chord tones elsewhere.
    low, high = RANGES["melody"]
    previous = (low + high) // 2
    melody = []
    for bar, degree in enumerate(chords):
        notes: list[Note] = []
        left = BAR
        while left:
            eighths = min(int(rng.choice([1, 2, 2, 2, 3, 4, 4, 6])), left)
            if eighths not in NOTE_TYPES:
                eighths = 1
            strong = left in (BAR, BAR // 2)
            # The draws are conditional (and the conditions short-circuit) as in the seeded songs.
            if bar % 4 == 3 and left <= 2 and rng.random() < 0.5:
                notes.append(Note(None, eighths))  # a breath at the end of a phrase
            else:
                scale_tones = [tonic + s for s in scale]
                pool = chord_tones(degree) if strong or rng.random() < 0.5 else scale_tones
                previous = _nearest(pool, previous, low, high, rng)
                notes.append(Note(previous, eighths))
            left -= eighths
        melody.append(notes)
    parts["melody"] = melody
    # Harmony: chord tones in whole or half notes, each part within its own range.
    for name in HARMONY:
        low, high = RANGES[name]
        previous = (low + high) // 2
        measures = []
        for degree in chords:
            rhythm = [BAR] if rng.random() < 0.5 else [BAR // 2, BAR // 2]
            notes = []
            for eighths in rhythm:
                previous = _nearest(chord_tones(degree), previous, low, high, rng)
                notes.append(Note(previous, eighths))
            measures.append(notes)
        parts[name] = measures
    return Song(seed=seed, tempo=tempo, tonic=tonic, minor=scale is MINOR, parts=parts)


def lyrics(measures: Sequence[Sequence[Note]], rng: np.random.Generator) -> list[str]:
    """One random syllable per sung note of a part, in order."""
    # A syllable is drawn for every note, rests too (and dropped): the seeded stems depend on it.
    drawn = [(note, str(rng.choice(SYLLABLES))) for bar in measures for note in bar]
    return [syllable for note, syllable in drawn if note.pitch is not None]


def _pitch_xml(midi: int) -> str:
    pitch_class, octave = midi % 12, midi // 12 - 1  # MIDI 60 is C4
    alter = f"<alter>{STEP_ALTER[pitch_class]}</alter>" if STEP_ALTER[pitch_class] else ""
    return f"<pitch><step>{STEP_NAMES[pitch_class]}</step>{alter}<octave>{octave}</octave></pitch>"


def _note_xml(note: Note, lyric: str | None) -> str:
    kind = NOTE_TYPES[note.eighths]
    value = f"<duration>{note.eighths}</duration><type>{kind}</type>"
    value += "<dot/>" if note.eighths in DOTTED else ""
    if note.pitch is None:
        return f"<note><rest/>{value}</note>"
    return f"<note>{_pitch_xml(note.pitch)}{value}<lyric><text>{lyric}</text></lyric></note>"


def musicxml(measures: Sequence[Sequence[Note]], tempo: int, sung: Sequence[str]) -> str:
    """A part as a MusicXML (partwise) score in 4/4 at ``tempo`` quarter notes per minute, the
    ``sung`` syllables (one per sung note, :func:`lyrics`) as its lyrics.

    Raises ``ValueError`` when ``sung`` does not hold one syllable per sung note.
    """
    syllables = iter(sung)
    body = []
    for number, notes in enumerate(measures, start=1):
        attributes = ""
        if number == 1:
            attributes = (
                f"<attributes><divisions>{DIVISIONS}</divisions><key><fifths>0</fifths></key>"
                "<time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
                f'<direction><sound tempo="{tempo}"/></direction>'
            )
        xml_notes = "".join(
            _note_xml(note, None if note.pitch is None else next(syllables, None)) for note in notes
        )
        body.append(f'<measure number="{number}">{attributes}{xml_notes}</measure>')
    sung_notes = sum(note.pitch is not None for bar in measures for note in bar)
    if len(sung) != sung_notes:
        raise ValueError(f"{len(sung)} syllables for {sung_notes} sung notes")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><score-partwise><part-list>'
        '<score-part id="P1"><part-name>voice</part-name></score-part></part-list>'
        f'<part id="P1">{"".join(body)}</part></score-partwise>'
    )


def require_pysinsy() -> ModuleType:
    """The ``pysinsy`` module. Raises :class:`SingingUnavailableError` (naming the extra to
    install) when it is missing."""
    try:
        return importlib.import_module("pysinsy")
    except ImportError as error:  # pysinsy itself imports pkg_resources (setuptools < 81)
        raise SingingUnavailableError(
            f"synthesised singing needs pysinsy, which is not installed ({error}): {INSTALL_HINT}"
        ) from error


def require_parselmouth() -> ModuleType:
    """The ``parselmouth`` module (Praat, for singers). Raises :class:`SingingUnavailableError`
    (naming the extra to install) when it is missing."""
    try:
        return importlib.import_module("parselmouth")
    except ImportError as error:
        raise SingingUnavailableError(
            f"singers need praat-parselmouth, which is not installed ({error}): {INSTALL_HINT}"
        ) from error


def random_singer(rng: np.random.Generator, seed: int) -> Singer:
    """A random :class:`Singer` (Praat's ``seed`` given): a man with probability ``MALE``, else
    another woman."""
    if rng.random() < MALE:
        return Singer(True, MALE_PITCH_RATIO, float(rng.uniform(*MALE_FORMANT_RATIO)), seed)
    return Singer(False, 1.0, float(rng.uniform(*FEMALE_FORMANT_RATIO)), seed)


def sung_by(x: np.ndarray, singer: Singer) -> np.ndarray:
    """``x`` (a part: mono float, SAMPLE_RATE Hz) as ``singer`` would sing it: Praat's "Change
    gender" (pitch-synchronous overlap-add) moves the pitch by ``singer.pitch_ratio`` and the
    formants by ``singer.formant_ratio``, keeping the duration; Praat's random generator seeded
    with ``singer.seed``, so a singer always sings a part the same. float64, same length as ``x``.

    Raises :class:`SingingUnavailableError` without ``praat-parselmouth`` (the singing extra).
    """
    parselmouth = require_parselmouth()
    call = parselmouth.praat.call
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({singer.seed})")
    sound = parselmouth.Sound(np.asarray(x, np.float64), sampling_frequency=SAMPLE_RATE)
    median = 0.0  # Praat's "no change" of pitch
    if singer.pitch_ratio != 1.0:
        pitch = call(sound, "To Pitch", 0.0, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
        median = call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")
        median = 0.0 if np.isnan(median) else median * singer.pitch_ratio
    changed = call(
        sound,
        "Change gender",
        PITCH_FLOOR_HZ,
        PITCH_CEILING_HZ,
        singer.formant_ratio,
        median,
        1.0,
        1.0,
    )
    y = np.asarray(changed.values[0], np.float64)[: len(x)]
    return np.pad(y, (0, len(x) - len(y)))


def renderer_version() -> str:
    """The manifest's version column: pysinsy's version. Raises
    :class:`SingingUnavailableError` when it is missing."""
    require_pysinsy()
    return f"pysinsy {importlib.metadata.version('pysinsy')}"


def stem_path(stems_dir: Path, seed: int, part: str) -> Path:
    """Where a part of the song of ``seed`` is (or will be) rendered."""
    return stems_dir / f"song_{seed:05d}_{part}.wav"


def render_song(song: Song, stems_dir: Path) -> dict[str, Path]:
    """Sing each part of ``song`` with Sinsy; return part → its stem (16-bit WAV, mono, 48 kHz,
    Sinsy's rate). Stems already there are kept (a rerun only renders what is missing).

    Raises :class:`SingingUnavailableError` without pysinsy and ``RuntimeError`` when Sinsy
    refuses its dictionary, voice or a score.
    """
    stems = {part: stem_path(stems_dir, song.seed, part) for part in song.parts}
    if all(path.is_file() for path in stems.values()):
        return stems
    pysinsy = require_pysinsy()
    rng = np.random.default_rng(song.seed + 10_000)
    # A new synthesiser per song, as the seeded stems were made (the voice loads in milliseconds).
    sinsy = pysinsy.sinsy.Sinsy()
    if not sinsy.setLanguages("j", pysinsy.get_default_dic_dir()):
        raise RuntimeError("Sinsy could not load its Japanese dictionary")
    if not sinsy.loadVoices(pysinsy.get_default_htsvoice()):
        raise RuntimeError("Sinsy could not load its voice")
    sinsy.setVolume(SINSY_VOLUME_DB)
    stems_dir.mkdir(parents=True, exist_ok=True)
    # Every part is rendered again: each part's draws depend on the parts before it.
    for part, measures in song.parts.items():
        sinsy.setAlpha(float(rng.uniform(*ALPHA)))
        score = musicxml(measures, song.tempo, lyrics(measures, rng))
        with tempfile.NamedTemporaryFile("w", suffix=".xml", encoding="utf-8") as xml:
            xml.write(score)
            xml.flush()
            if not sinsy.loadScoreFromMusicXML(xml.name):
                raise RuntimeError(f"Sinsy refused the score of song {song.seed}'s {part}")
            wav, rate = sinsy.synthesize()  # float64 on the 16-bit scale, Sinsy's rate
            sinsy.clearScore()
        partial = stems[part].with_suffix(".partial.wav")
        # soundfile's default for WAV: 16-bit PCM (what the seeded mixes were made from).
        sf.write(str(partial), (wav / 32768.0).astype(np.float32), int(rate), format="WAV")
        partial.replace(stems[part])
    return stems


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def without_glitches(x: np.ndarray) -> np.ndarray:
    """Silence HTS's occasional bursts in a part (mono, SAMPLE_RATE Hz): 10 ms frames whose peak
    is over ``GLITCH_RATIO`` times the median peak of the voiced frames, with
    ``GLITCH_MARGIN_FRAMES`` frames either side. Returns a copy (``x`` itself when nothing is
    voiced), same dtype and length."""
    frame = round(SAMPLE_RATE * GLITCH_FRAME_SECONDS)
    n = len(x) // frame
    peaks = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)
    voiced = peaks[peaks > VOICED_PEAK]
    if voiced.size == 0:
        return x
    bad = np.flatnonzero(peaks > GLITCH_RATIO * np.median(voiced))
    x = x.copy()
    for b in bad:
        start = max(0, (b - GLITCH_MARGIN_FRAMES) * frame)
        x[start : (b + GLITCH_MARGIN_FRAMES + 1) * frame] = 0.0
    return x


def reverb(x: np.ndarray, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` (mono, SAMPLE_RATE Hz) through a synthetic room: an impulse response of Gaussian
    noise decaying by 60 dB over ``rt60`` seconds, faded in over 10 ms (no direct click).
    The reverberated sound, at ``x``'s RMS, makes up ``wet`` of the result. float64, same
    length as ``x``."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # e^-6.9 = 1/1000: -60 dB at rt60
    fade = int(0.01 * SAMPLE_RATE)
    ir[:fade] *= np.linspace(0, 1, fade)
    ir /= np.sqrt(np.sum(ir**2))
    size = 1 << int(np.ceil(np.log2(len(x) + n)))  # FFT convolution: np.convolve takes minutes
    tail = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return (1 - wet) * x + wet * tail * (_rms(x) / max(_rms(tail), 1e-9))


def _arranged_vocal(
    stems: dict[str, Path],
    parts: Sequence[str],
    choir: bool,
    rng: np.random.Generator,
    singers: dict[str, Singer] | None,
) -> np.ndarray:
    """The ``parts`` resampled, cleaned, sung by their ``singers`` (None: Sinsy's voice),
    aligned, balanced and summed, trimmed to the sound: float64 [samples] at SAMPLE_RATE Hz."""
    voices = []
    for part in parts:
        wav = without_glitches(read_mono(stems[part]))
        if singers is not None:
            wav = sung_by(wav, singers[part])
        delay = int(rng.uniform(*CHOIR_DELAY_SECONDS) * SAMPLE_RATE) if choir else 0
        # Unit RMS before the delay's silence is added (the level is the singer's own).
        level = max(_rms(wav), 1e-9)
        wav = np.concatenate([np.zeros(delay, np.float32), wav]) / level
        gain = 10 ** (rng.uniform(*PART_GAIN_DB) / 20)
        voices.append(wav * gain * (1.0 if part == "melody" else HARMONY_GAIN))
    vocal = np.zeros(max(len(v) for v in voices))
    for voice in voices:
        vocal[: len(voice)] += voice
    sounding = np.flatnonzero(np.abs(vocal) > TRIM * np.max(np.abs(vocal)))
    return vocal[sounding[0] : sounding[-1] + 1]


def over_music(vocal: np.ndarray, music: np.ndarray, vocal_to_music_db: float) -> np.ndarray:
    """``vocal`` set to ``vocal_to_music_db`` (its RMS over ``music``'s) and added to ``music``,
    the sum then brought back to ``music``'s RMS (the track's own loudness). Both mono, the same
    length; float64 [samples]."""
    vocal = vocal / _rms(vocal) * _rms(music) * 10 ** (vocal_to_music_db / 20)
    mix = music + vocal
    mix *= _rms(music) / _rms(mix)
    return mix


def _excerpt(
    music: Sequence[ManifestRow], data_dir: Path, length: int, rng: np.random.Generator
) -> tuple[ManifestRow, int, np.ndarray]:
    """A random file of ``music`` (preferably longer than ``length`` samples plus a second) and a
    random excerpt of it of ``length`` samples: (its row, first sample, float64 audio).

    Raises ``ValueError`` when the last file drawn is not longer than ``length``.
    """
    for _ in range(MUSIC_TRIES):
        row = music[int(rng.integers(len(music)))]
        frames = sf.info(str(data_dir / row.path)).frames
        if frames > length + SAMPLE_RATE:
            break
    if frames <= length:
        raise ValueError(f"no music file long enough for a song of {length / SAMPLE_RATE:.1f} s")
    start = int(rng.integers(0, frames - length))
    audio, _ = sf.read(str(data_dir / row.path), start=start, frames=length, dtype="float64")
    return row, start, audio


def mix_song(
    song: Song,
    stems: dict[str, Path],
    music: Sequence[ManifestRow],
    data_dir: Path,
    voices: bool = False,
) -> Mix:
    """Arrange, reverberate and mix ``song`` (its rendered ``stems``, :func:`render_song`) over a
    random excerpt of a random file of ``music`` (rows of a manifest, 16 kHz mono files under
    ``data_dir``), or a cappella (15% of songs; every song when ``music`` is empty).

    Over music, the voice is set to a random vocal-to-music ratio (RMS over RMS, -4 to +8 dB)
    and the mix brought back to the excerpt's RMS, the track's own loudness; a cappella, the
    voice is set to -26 to -16 dBFS RMS. The mix is as long as the song's sound (Sinsy's padding
    trimmed) and scaled down where it would peak above 0.99. With ``voices``, each part is sung by
    a random singer (:func:`random_singer`, :func:`sung_by`); the other draws are unchanged.

    Raises ``ValueError`` when no music file drawn is longer than the song, and
    :class:`SingingUnavailableError` for ``voices`` without ``praat-parselmouth``.
    """
    rng = np.random.default_rng(song.seed + 20_000)
    arrangement = str(rng.choice(list(ARRANGEMENTS), p=ARRANGEMENT_P))
    choir = arrangement == "choir"
    singers = None
    if voices:
        singer_rng = np.random.default_rng(song.seed + 30_000)
        singers = {
            part: random_singer(singer_rng, seed=len(song.parts) * song.seed + i)
            for i, part in enumerate(song.parts)
        }
    vocal = _arranged_vocal(stems, ARRANGEMENTS[arrangement], choir, rng, singers)
    rt60 = rng.uniform(*RT60_SECONDS["choir" if choir else "small"])
    vocal = reverb(vocal, rt60, rng.uniform(*WET), rng)
    if rng.random() < A_CAPPELLA or not music:
        mix = vocal / _rms(vocal) * 10 ** (rng.uniform(*A_CAPPELLA_DBFS) / 20)
        row, start, ratio_db = None, 0, float("nan")
    else:
        row, start, background = _excerpt(music, data_dir, len(vocal), rng)
        ratio_db = rng.uniform(*VOCAL_TO_MUSIC_DB)
        mix = over_music(vocal, background, ratio_db)
    peak = np.max(np.abs(mix))
    if peak > PEAK:
        mix *= PEAK / peak
    sung = None if singers is None else tuple(singers[p] for p in ARRANGEMENTS[arrangement])
    return Mix(mix.astype(np.float32), arrangement, row, start, float(ratio_db), sung)


def describe(song: Song, mix: Mix) -> str:
    """The manifest's source column: the song, its arrangement and what it is mixed over."""
    sung = "" if mix.singers is None else "; " + ", ".join(_singer(s) for s in mix.singers)
    what = f"song {song.seed} ({mix.arrangement}, {song.tempo} bpm{sung})"
    if mix.music is None:
        return f"{what} a cappella"
    music = f"{mix.music.package}:{mix.music.source}"
    return (
        f"{what} over {music} from {mix.start / SAMPLE_RATE:.1f} s, {mix.vocal_to_music_db:+.1f} dB"
    )


def _singer(singer: Singer) -> str:
    who = "man" if singer.male else "woman"
    return f"{who} (formants x{singer.formant_ratio:.2f})"


def licence(version: str, mix: Mix) -> str:
    """The manifest's licence column: the voice's, and the accompaniment's."""
    text = f"singing synthesised by Sinsy ({version}; voice {VOICE})"
    return text if mix.music is None else f"{text}; accompaniment {mix.music.licence}"


def music_rows(manifest: Path, split: str) -> list[ManifestRow]:
    """The ``kind == music`` rows of ``split`` in a data recipe's manifest, in its order, without
    earlier singing mixes. Raises ``EvaluationPackageError`` when one comes from a package
    reserved for evaluation."""
    with manifest.open(newline="") as handle:
        rows = [
            ManifestRow(
                path=row["path"],
                package=row["package"],
                version=row["version"],
                source=row["source"],
                licence=row["licence"],
                seconds=float(row["seconds"]),
                group=row["group"],
                kind=row["kind"],
                split=row["split"],
            )
            for row in csv.DictReader(handle)
        ]
    return accompaniment(rows, split)


def accompaniment(rows: Iterable[ManifestRow], split: str) -> list[ManifestRow]:
    """The music of ``split`` among ``rows`` (earlier singing mixes left out), denylist checked."""
    music = [r for r in rows if r.kind == "music" and r.split == split and r.package != PACKAGE]
    ensure_trainable(r.package for r in music)
    return music


def _songs(first_seed: int, songs: int) -> range:
    if songs < 0:
        raise ValueError(f"songs must be at least 0, not {songs}")
    return range(first_seed, first_seed + songs)


def synthesise_singing(
    data_dir: Path,
    music: Sequence[ManifestRow],
    songs: int,
    first_seed: int = 0,
    voices: bool = False,
) -> list[ManifestRow]:
    """Render (once) and mix the songs of seeds ``first_seed`` ... ``first_seed + songs - 1``
    over ``music`` (the training split's rows) into ``data_dir/audio/sinsy/mix_SEED.wav``
    (``voices``, :func:`mix_song`: ``data_dir/audio/sinsy_voices``); return their manifest rows
    (split ``train``). Stems are kept in ``data_dir/singing/stems``; a mix already written is kept.

    Raises :class:`SingingUnavailableError` without pysinsy (or, for ``voices``,
    praat-parselmouth), ``ValueError`` for a negative ``songs`` and ``EvaluationPackageError``
    when ``music`` holds an evaluation package.
    """
    seeds = _songs(first_seed, songs)
    ensure_trainable(r.package for r in music)
    version = renderer_version()
    folder = "sinsy_voices" if voices else "sinsy"
    rows = []
    for seed in seeds:
        song = random_song(seed)
        mixed = mix_song(song, render_song(song, data_dir / STEMS), music, data_dir, voices)
        target = data_dir / "audio" / folder / f"mix_{seed:05d}.wav"
        if not target.is_file():
            write_wav(mixed.audio, target)
        rows.append(
            ManifestRow(
                path=str(target.relative_to(data_dir)),
                package=PACKAGE,
                version=version,
                source=describe(song, mixed),
                licence=licence(version, mixed),
                seconds=round(mixed.seconds, 3),
                # Ten songs to a group (groups keep related files on one side of a split).
                group=f"sinsy/{folder}/{seed // 10}",
                kind="music",
                split="train",
            )
        )
    return rows


def write_singing_clips(
    manifest: Path,
    out: Path,
    songs: int,
    first_seed: int,
    a_cappella: bool = False,
    voices: bool = False,
) -> Path:
    """Held-out singing for measurement: the songs of seeds ``first_seed`` ...
    ``first_seed + songs - 1`` mixed over the ``validation`` split's music of ``manifest`` (or,
    ``a_cappella``, all a cappella) as a clip folder (``out/mix_SEED.wav``, mono 16 kHz float
    WAV, whole songs; ``out/manifest.csv`` with the columns of ``taggram validation-clips``,
    ``kind`` ``music``), for ``benchmarks.student_vs_teacher --audio``; with ``voices``, sung by
    random singers (:func:`mix_song`). Stems are kept next to the manifest, in ``singing/stems``.
    Returns ``out/manifest.csv``.

    Raises :class:`SingingUnavailableError` without pysinsy, ``ValueError`` when ``songs`` is
    below 1 or the manifest has no validation music, ``EvaluationPackageError`` as
    :func:`music_rows`.
    """
    if songs < 1:
        raise ValueError(f"songs must be at least 1, not {songs}")
    music = [] if a_cappella else music_rows(manifest, "validation")
    if not a_cappella and not music:
        raise ValueError(f"{manifest}: no music with split == validation")
    version = renderer_version()
    out.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, object]] = []
    for track, seed in enumerate(_songs(first_seed, songs)):
        song = random_song(seed)
        stems = render_song(song, manifest.parent / STEMS)
        mixed = mix_song(song, stems, music, manifest.parent, voices)
        name = f"mix_{seed:05d}.wav"
        write_wav(mixed.audio, out / name)
        written.append(
            {
                "file": name,
                "set": "singing",
                "package": PACKAGE,
                "source_path_in_package": describe(song, mixed),
                "license": licence(version, mixed),
                "start_s": 0.0,
                "duration_s": round(mixed.seconds, 2),
                "kind": "music",
                "track": track,
            }
        )
    return write_clip_manifest(out, written)
