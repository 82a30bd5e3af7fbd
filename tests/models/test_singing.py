"""Synthesised singing (taggram/models/data/singing.py): songs, scores, mixes; Sinsy where built.

The song generator, the scores and the mixing are pure numpy and run everywhere; rendering needs
pysinsy (the ``singing`` extra, compiled from source, which CI leaves out), and its test skips
without it.
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.models.data.packages import EvaluationPackageError
from taggram.models.data.prepare import SAMPLE_RATE, ManifestRow, prepare, write_wav
from taggram.models.data.singing import (
    A_CAPPELLA_DBFS,
    ARRANGEMENTS,
    BAR,
    MALE_PITCH_RATIO,
    NOTE_TYPES,
    PACKAGE,
    RANGES,
    SYLLABLES,
    VOCAL_TO_MUSIC_DB,
    Note,
    Singer,
    SingingUnavailableError,
    accompaniment,
    describe,
    lyrics,
    mix_song,
    music_rows,
    musicxml,
    over_music,
    random_song,
    require_parselmouth,
    require_pysinsy,
    stem_path,
    sung_by,
    without_glitches,
)


def _pysinsy_missing() -> str | None:
    """Why pysinsy cannot be imported, or None when it can."""
    try:
        require_pysinsy()
    except SingingUnavailableError as error:
        return str(error)
    return None


PYSINSY_MISSING = _pysinsy_missing()
try:
    PARSELMOUTH = require_parselmouth()
except SingingUnavailableError as missing:  # the dev extra installs it: CI runs these tests
    PARSELMOUTH, PARSELMOUTH_MISSING = None, str(missing)
else:
    PARSELMOUTH_MISSING = ""
needs_parselmouth = pytest.mark.skipif(PARSELMOUTH is None, reason=PARSELMOUTH_MISSING)
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
STEM_RATE = 48000  # Sinsy's
MUSIC_HZ, VOICE_HZ = 250.0, 1000.0  # whole periods in a second at 16 kHz: orthogonal tones


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _db(x: float) -> float:
    return 20 * math.log10(x)


def _tone(hz: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def _row(path: str, package: str = "supertuxkart-data", split: str = "train") -> ManifestRow:
    return ManifestRow(path, package, "1", "music/x.ogg", "GPL-3", 30.0, package, "music", split)


@pytest.mark.parametrize("seed", [0, 7, 1017, 100000])
def test_a_song_is_the_same_for_its_seed_and_its_parts_fill_their_bars_within_their_ranges(
    seed: int,
) -> None:
    song = random_song(seed)
    assert song == random_song(seed)
    assert song != random_song(seed + 1)
    assert list(song.parts) == ["melody", "alto", "tenor"]
    assert 66 <= song.tempo <= 135 and 0 <= song.tonic < 12
    bars = {len(measures) for measures in song.parts.values()}
    assert len(bars) == 1 and 8 <= bars.pop() <= 12
    for part, measures in song.parts.items():
        low, high = RANGES[part]
        for bar in measures:
            assert sum(note.eighths for note in bar) == BAR  # 4/4
            for note in bar:
                assert note.eighths in NOTE_TYPES
                if note.pitch is not None:
                    assert low <= note.pitch <= high
        if part != "melody":  # harmony: sung whole or half notes, no rests
            assert all(n.pitch is not None and n.eighths in (4, 8) for b in measures for n in b)


def test_the_seeds_of_the_first_mixes_give_the_songs_they_were_made_from() -> None:
    # From the manifest rows of the experiment (issue 16) this generator was ported from:
    # "song 0 (duet, 87 bpm)", "song 7 (choir, 106 bpm) a cappella", "song 1017 (solo, 117 bpm)".
    assert [random_song(seed).tempo for seed in (0, 7, 1017)] == [87, 106, 117]


def _midi(pitch: ET.Element) -> int:
    step, alter = pitch.findtext("step"), pitch.findtext("alter")
    octave = pitch.findtext("octave")
    assert step is not None and octave is not None
    return 12 * (int(octave) + 1) + STEPS[step] + int(alter or 0)


def test_the_score_parses_and_has_a_lyric_for_each_sung_note_and_none_for_a_rest() -> None:
    song = random_song(3)
    rng = np.random.default_rng(0)
    for measures in song.parts.values():
        sung = lyrics(measures, rng)
        root = ET.fromstring(musicxml(measures, song.tempo, sung).encode())
        sound = root.find(".//sound")
        assert sound is not None and sound.get("tempo") == str(song.tempo)
        xml_bars = root.findall("./part/measure")
        assert len(xml_bars) == len(measures)
        written = []
        for xml_bar, bar in zip(xml_bars, measures, strict=True):
            xml_notes = xml_bar.findall("note")
            assert [int(n.findtext("duration") or 0) for n in xml_notes] == [n.eighths for n in bar]
            for xml_note, note in zip(xml_notes, bar, strict=True):
                pitch = xml_note.find("pitch")
                if note.pitch is None:
                    assert xml_note.find("rest") is not None and xml_note.find("lyric") is None
                else:
                    assert pitch is not None and _midi(pitch) == note.pitch
                    written.append(xml_note.findtext("lyric/text"))
        assert written == sung


def test_lyrics_draw_a_syllable_for_every_note_rests_included() -> None:
    # The seeded stems depend on one draw per note, a rest's too.
    bars = [[Note(60, 4), Note(None, 2), Note(62, 2)]]
    rng, reference = np.random.default_rng(5), np.random.default_rng(5)
    drawn = lyrics(bars, rng)
    assert len(drawn) == 2 and set(drawn) <= set(SYLLABLES)
    for _ in range(3):
        reference.choice(SYLLABLES)
    assert rng.random() == reference.random()
    with pytest.raises(ValueError, match="1 syllables for 2 sung notes"):
        musicxml(bars, 100, drawn[:1])


def test_glitch_removal_silences_a_burst_and_keeps_the_voice_around_it() -> None:
    voice = _tone(220.0, 2.0, SAMPLE_RATE, 0.1)
    frame = SAMPLE_RATE // 100
    burst = 100 * frame
    glitched = voice.copy()
    glitched[burst : burst + frame] = 0.9
    cleaned = without_glitches(glitched)
    assert cleaned.dtype == glitched.dtype and len(cleaned) == len(glitched)
    assert not cleaned[burst - 2 * frame : burst + 3 * frame].any()
    np.testing.assert_array_equal(cleaned[: burst - 2 * frame], voice[: burst - 2 * frame])
    np.testing.assert_array_equal(cleaned[burst + 3 * frame :], voice[burst + 3 * frame :])
    np.testing.assert_array_equal(without_glitches(voice), voice)  # nothing to remove
    silence = np.zeros(SAMPLE_RATE, np.float32)
    assert without_glitches(silence) is silence


@pytest.mark.parametrize("ratio_db", [-4.0, 0.0, 8.0])
def test_over_music_sets_the_vocal_to_music_ratio_at_the_musics_loudness(ratio_db: float) -> None:
    music = _tone(MUSIC_HZ, 3.0, SAMPLE_RATE, 0.2).astype(np.float64)
    vocal = _tone(VOICE_HZ, 3.0, SAMPLE_RATE, 0.7).astype(np.float64)
    mix = over_music(vocal, music, ratio_db)
    assert _rms(mix) == pytest.approx(_rms(music), rel=1e-9)
    # The tones are orthogonal: the music's share of the mix is its projection.
    scale = np.dot(mix, music) / np.dot(music, music)
    voice = mix / scale - music
    assert _db(_rms(voice) / _rms(music)) == pytest.approx(ratio_db, abs=1e-6)


def _vowel(f0: float, seconds: float, rate: int, formant: float) -> np.ndarray:
    """A sung vowel: the harmonics of ``f0`` falling as 1/k, boosted around one ``formant``."""
    t = np.arange(round(seconds * rate)) / rate
    k = np.arange(1, int(7000 // f0))
    gain = (1 + 4 / (1 + ((k * f0 - formant) / 300) ** 2)) / k
    return (0.05 * gain @ np.sin(2 * np.pi * f0 * np.outer(k, t))).astype(np.float32)


def _pitch_hz(x: np.ndarray) -> float:
    """Median pitch of the voiced frames (Praat's autocorrelation, 75-1000 Hz)."""
    assert PARSELMOUTH is not None
    sound = PARSELMOUTH.Sound(x.astype(np.float64), sampling_frequency=SAMPLE_RATE)
    frequency = sound.to_pitch(pitch_floor=75, pitch_ceiling=1000).selected_array["frequency"]
    return float(np.median(frequency[frequency > 0]))


def _strongest_hz(x: np.ndarray, above: float) -> float:
    """Frequency of the strongest bin above ``above`` Hz (the formant, for a vowel)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    hz = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(hz[hz > above][np.argmax(spectrum[hz > above])])


def _fake_stems(stems_dir: Path, seed: int, sung: bool = False) -> dict[str, Path]:
    """A steady tone (``sung``: a vowel on A4) per part, padded with silence like Sinsy's, as
    48 kHz 16-bit stems."""
    pad = np.zeros(STEM_RATE // 2, np.float32)
    stems = {}
    for part in ARRANGEMENTS["choir"]:
        tone = (
            _vowel(440.0, 3.0, STEM_RATE, 2200.0) if sung else _tone(VOICE_HZ, 3.0, STEM_RATE, 0.3)
        )
        voice = np.concatenate([pad, tone, pad])
        stems[part] = stem_path(stems_dir, seed, part)
        stems_dir.mkdir(parents=True, exist_ok=True)
        sf.write(str(stems[part]), voice, STEM_RATE, subtype="PCM_16")
    return stems


@pytest.fixture()
def music(tmp_path: Path) -> list[ManifestRow]:
    write_wav(_tone(MUSIC_HZ, 30.0, SAMPLE_RATE, 0.1), tmp_path / "audio" / "m.wav")
    return [_row("audio/m.wav")]


def test_a_mix_over_music_has_the_excerpts_loudness_and_its_vocal_to_music_ratio(
    tmp_path: Path, music: list[ManifestRow]
) -> None:
    song = random_song(0)  # over music, whatever the stems (the draw precedes the music's)
    mix = mix_song(song, _fake_stems(tmp_path / "stems", 0), music, tmp_path)
    assert mix.audio.dtype == np.float32 and mix.music == music[0]
    assert VOCAL_TO_MUSIC_DB[0] <= mix.vocal_to_music_db <= VOCAL_TO_MUSIC_DB[1]
    # Sinsy's padding is trimmed: about the 3 s of sound (the choir's delays add at most 30 ms).
    assert 2.95 <= mix.seconds <= 3.05
    excerpt, _ = sf.read(
        str(tmp_path / "audio" / "m.wav"), start=mix.start, frames=len(mix.audio), dtype="float64"
    )
    assert _rms(mix.audio) == pytest.approx(_rms(excerpt), rel=1e-5)
    scale = np.dot(mix.audio, excerpt) / np.dot(excerpt, excerpt)
    voice = mix.audio / scale - excerpt
    assert _db(_rms(voice) / _rms(excerpt)) == pytest.approx(mix.vocal_to_music_db, abs=0.1)
    assert describe(song, mix).startswith(f"song 0 ({mix.arrangement}, {song.tempo} bpm) over ")
    again = mix_song(song, _fake_stems(tmp_path / "stems", 0), music, tmp_path)
    np.testing.assert_array_equal(again.audio, mix.audio)


@pytest.mark.parametrize("seed", [0, 7])
def test_a_cappella_without_music_or_when_drawn_at_a_set_level(
    tmp_path: Path, music: list[ManifestRow], seed: int
) -> None:
    song = random_song(seed)
    stems = _fake_stems(tmp_path / "stems", seed)
    # Seed 0 goes over music when there is some; seed 7 is drawn a cappella even then.
    mix = mix_song(song, stems, [] if seed == 0 else music, tmp_path)
    assert mix.music is None and math.isnan(mix.vocal_to_music_db) and mix.start == 0
    assert A_CAPPELLA_DBFS[0] - 1e-6 <= _db(_rms(mix.audio)) <= A_CAPPELLA_DBFS[1] + 1e-6
    assert describe(song, mix).endswith(" a cappella")


@needs_parselmouth
def test_a_man_sings_an_octave_lower_through_a_longer_vocal_tract() -> None:
    vowel = _vowel(440.0, 2.0, SAMPLE_RATE, 2200.0)
    man = sung_by(vowel, Singer(True, MALE_PITCH_RATIO, 0.8, seed=1))
    assert man.dtype == np.float64 and len(man) == len(vowel)
    assert _pitch_hz(vowel) == pytest.approx(440.0, rel=0.01)
    assert _pitch_hz(man) == pytest.approx(220.0, rel=0.02)
    # The formant moves with the vocal tract: 2200 Hz to about 1760 Hz.
    assert _strongest_hz(man, above=1000.0) == pytest.approx(0.8 * 2200.0, rel=0.03)
    assert _rms(man) > 0.5 * _rms(vowel)


@needs_parselmouth
def test_a_mix_with_voices_differs_from_sinsys_only_in_its_singers(
    tmp_path: Path, music: list[ManifestRow]
) -> None:
    song = random_song(0)
    stems = _fake_stems(tmp_path / "stems", 0, sung=True)
    sinsy = mix_song(song, stems, music, tmp_path)
    sung = mix_song(song, stems, music, tmp_path, voices=True)
    assert (sung.arrangement, sung.music) == (sinsy.arrangement, sinsy.music)
    assert sung.vocal_to_music_db == sinsy.vocal_to_music_db and sinsy.singers is None
    assert sung.singers is not None and len(sung.singers) == len(ARRANGEMENTS[sung.arrangement])
    assert not np.allclose(sung.audio[: len(sinsy.audio)], sinsy.audio[: len(sung.audio)])
    who = re.findall(r"(woman|man) \(formants x(\d\.\d\d)\)", describe(song, sung))
    expected = [("man" if s.male else "woman", f"{s.formant_ratio:.2f}") for s in sung.singers]
    assert who == expected and "man" not in describe(song, sinsy)
    again = mix_song(song, stems, music, tmp_path, voices=True)
    assert again.singers == sung.singers
    np.testing.assert_array_equal(again.audio, sung.audio)


@pytest.mark.parametrize("command", ["prepare-data", "validation-clips"])
def test_singing_voices_without_songs_is_a_usage_error(tmp_path: Path, command: str) -> None:
    from typer.testing import CliRunner

    from taggram.models.training.cli import app

    result = CliRunner().invoke(app, [command, "--singing-voices"])
    assert result.exit_code == 2
    assert "--singing-voices needs --singing-songs" in " ".join(result.output.split())


def test_the_accompaniment_is_the_splits_music_and_the_denylist_holds(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    rows = [
        _row("a.wav"),
        _row("b.wav", split="validation"),
        ManifestRow("c.wav", "flite", "1", "alice", "PD", 60.0, "flite/awb", "speech", "train"),
        _row("d.wav", package=PACKAGE),  # an earlier mix is no accompaniment
    ]
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ManifestRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(vars(row) for row in rows)
    assert music_rows(manifest, "train") == [rows[0]]
    assert music_rows(manifest, "validation") == [rows[1]]
    with pytest.raises(EvaluationPackageError, match="hyperrogue-music"):
        accompaniment([_row("e.wav", package="hyperrogue-music")], "train")


@pytest.mark.skipif(not PYSINSY_MISSING, reason="pysinsy is installed: no error to show")
def test_singing_without_pysinsy_is_a_usage_error_naming_the_extra(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from taggram.models.training.cli import app

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,package,version,source,licence,seconds,group,kind,split\n")
    command = ["validation-clips", "--manifest", str(manifest), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*command, "--singing-songs", "1", "--singing-a-cappella"])
    assert result.exit_code == 2
    assert "taggram[singing]" in " ".join(result.output.split())


def test_prepare_refuses_a_negative_number_of_songs_and_songs_without_pysinsy(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="at least 0"):
        prepare(tmp_path, {}, {}, speech=False, singing_songs=-1)
    if PYSINSY_MISSING is not None:
        with pytest.raises(SingingUnavailableError, match=r"taggram\[singing\]"):
            prepare(tmp_path, {}, {}, speech=False, singing_songs=1)
        assert not (tmp_path / "manifest.csv").exists()


@pytest.mark.skipif(PYSINSY_MISSING is not None, reason=str(PYSINSY_MISSING))
def test_sinsy_sings_each_part_and_the_recipe_and_clips_mix_them(tmp_path: Path) -> None:
    from taggram.models.data.singing import synthesise_singing, write_singing_clips

    seed = 12
    music_file = tmp_path / "audio" / "m.wav"
    write_wav(_tone(MUSIC_HZ, 120.0, SAMPLE_RATE, 0.1), music_file)
    rows = synthesise_singing(tmp_path, [_row("audio/m.wav")], 1, seed)
    stems = {part: stem_path(tmp_path / "singing" / "stems", seed, part) for part in RANGES}
    for stem in stems.values():
        info = sf.info(str(stem))
        assert info.samplerate == STEM_RATE and info.subtype == "PCM_16" and info.channels == 1
        voice, _ = sf.read(str(stem), dtype="float32")
        assert _rms(voice) > 1e-3  # sung (HTS's bursts may still reach full scale)
    [row] = rows
    assert (row.package, row.kind, row.split) == (PACKAGE, "music", "train")
    assert row.path == f"audio/sinsy/mix_{seed:05d}.wav" and row.version.startswith("pysinsy ")
    assert "NIT SONG070 F001, CC-BY-3.0" in row.licence
    assert sf.info(str(tmp_path / row.path)).duration == pytest.approx(row.seconds, abs=1e-3)
    if PARSELMOUTH is not None:  # the same song by other singers, from the same stems
        [sung] = synthesise_singing(tmp_path, [_row("audio/m.wav")], 1, seed, voices=True)
        assert sung.path == f"audio/sinsy_voices/mix_{seed:05d}.wav"
        assert re.search(r"bpm; (wo)?man \(formants x", sung.source)
    # The held-out clip folder, a cappella, reuses the stems already rendered.
    clips = write_singing_clips(tmp_path / "manifest.csv", tmp_path / "clips", 1, seed, True)
    with clips.open(newline="") as handle:
        [clip] = list(csv.DictReader(handle))
    assert (clip["file"], clip["kind"]) == (f"mix_{seed:05d}.wav", "music")
    assert clip["source_path_in_package"].endswith("a cappella")
    assert sf.info(str(clips.parent / clip["file"])).samplerate == SAMPLE_RATE
