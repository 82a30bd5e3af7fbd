"""Which Debian packages feed training, and which must never do so.

The evaluation-only packages hold the recordings the project measures its models on (``../shared``
and future benchmarks); training or validating on them would leak the test set, so every code path
that reads a package list or a manifest goes through :func:`ensure_trainable`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

EVALUATION_ONLY: frozenset[str] = frozenset(
    {
        "wesnoth-1.16-music",
        "wesnoth-1.16-data",
        "ufoai-music",
        "ufoai-sound",
        "warzone2100-music",
        "nexuiz-music",
        "singularity-music",
        "drascula-music",
        "asc-music",
        "asterisk-core-sounds-en-wav",
        # the packages of ../shared/audio
        "hyperrogue-music",
        "planetblupi-music-ogg",
        "xblast-tnt-musics",
        "asterisk-prompt-it-menardi-wav",
        "openttd-opensfx",
        # Fluid R3 SoundFont and the packages built on it: reserved for independent evaluation
        "fluid-soundfont-gm",
        "fluid-soundfont-gs",
        "fluidr3mono-gm-soundfont",
        "musescore-general-soundfont",
        "musescore-general-soundfont-lossless",
        "musescore-general-soundfont-small",
    }
)
# Whole families reserved for evaluation, whatever their current or future members are called.
EVALUATION_ONLY_PATTERNS: tuple[str, ...] = (
    "musescore-general-soundfont*",
    "asterisk-core-sounds-*",
    "asterisk-prompt-*",
    # Wesnoth's music and data are reserved above; its campaign packages (wesnoth-1.16-utbs,
    # -trow, ...) carry the same game's audio, so the whole family stays out of training.
    "wesnoth-*",
)


def evaluation_only(package: str) -> bool:
    """Whether ``package`` (a Debian binary package name) is reserved for evaluation."""
    return package in EVALUATION_ONLY or any(
        fnmatch.fnmatchcase(package, pattern) for pattern in EVALUATION_ONLY_PATTERNS
    )


# Audio inside a package counts as music when its path matches; game data mixes music with
# sound effects, and the paths (plus a minimum duration, see taggram.models.data.prepare)
# separate them.
MUSIC_PATH = re.compile(r"music|songs?/|soundtrack|theme", re.IGNORECASE)


@dataclass(frozen=True)
class Selection:
    """Which audio of a package the recipe uses, and as what.

    ``music``: whole files (at least ``prepare.MIN_SECONDS`` long) whose path inside the package
    matches (None: none). ``clips``: short files whose path matches (None: none), too short to be
    a training window on their own (speech samples, sound effects), concatenated per folder into
    reels of about a minute; ``clips_kind`` names what they are (``speech`` or ``effects``).
    ``modules``: tracker modules (.mod, .xm, .it, .s3m) whose path matches (None: none), rendered
    once through by libopenmpt (see ``prepare.render_module``) and kept, as music, when at least
    ``prepare.MIN_SECONDS`` long.
    ``archive``: path inside the package of a zip holding the audio (None: none); its members
    matching ``music`` or ``clips`` are extracted next to it, into a folder named like it without
    its suffix, and the patterns are matched against paths under the package as usual.
    """

    music: re.Pattern[str] | None = MUSIC_PATH
    clips: re.Pattern[str] | None = None
    clips_kind: str = "effects"
    reels_across_folders: bool = False  # one run of reels over the package, not one per folder
    modules: re.Pattern[str] | None = None
    archive: str | None = None


MUSIC = Selection()

# Package → what to take from it. Music from game soundtracks and songs; speech (recorded words
# and syllables in many languages, game character voices) and sound effects so that the voice and
# noise responses of the teacher are learnt too. Synthesised speech comes from flite
# (taggram.models.data.speech).
TRAINING_PACKAGES: dict[str, Selection] = {
    "supertuxkart-data": MUSIC,
    "hedgewars-data": Selection(clips=re.compile(r"Sounds/voices/.*\.ogg$"), clips_kind="speech"),
    "freedroidrpg-data": MUSIC,
    "widelands-data": MUSIC,
    "supertux-data": MUSIC,
    "megaglest-data": MUSIC,
    "flare-game": MUSIC,
    "warmux-data": MUSIC,
    "openclonk-data": MUSIC,
    "lincity-ng-data": MUSIC,
    "xmoto-data": MUSIC,
    "colobot-common-sounds": MUSIC,
    "extremetuxracer-data": MUSIC,
    "fillets-ng-data": MUSIC,
    "freedink-data": Selection(music=re.compile(r"dink/Sound/[^/]+\.ogg$")),
    "fretsonfire-songs-muldjord": MUSIC,
    "fretsonfire-songs-sectoid": MUSIC,
    "lugaru-data": MUSIC,
    "powermanga-data": MUSIC,
    "scorched3d-data": MUSIC,
    # speech: letters and syllables spoken by native speakers of about 25 languages
    "klettres-data": Selection(
        music=None, clips=re.compile(r"klettres/.*\.ogg$"), clips_kind="speech"
    ),
    # sound effects: nature, footsteps, fire, water, tools
    "minetest-data": Selection(music=None, clips=re.compile(r"sounds/.*\.ogg$")),
    "tuxtype-data": Selection(music=re.compile(r"sounds/.*\.ogg$"), clips=re.compile(r"sounds/")),
    # Added for issue 16: the rest of the free music in Debian main, more speech and effects.
    # 0 A.D.: about three hours of orchestral and world music in a zip, and unit voices
    # speaking Greek, Latin, Persian and Meroitic phrases
    "0ad-data": Selection(
        music=re.compile(r"audio/music/.*\.ogg$"),
        clips=re.compile(r"audio/voice/.*\.ogg$"),
        clips_kind="speech",
        archive="usr/share/games/0ad/mods/public/public.zip",
    ),
    "freecol": MUSIC,  # orchestral
    "marsshooter-data": MUSIC,  # orchestral and electronic
    "enigma-data": MUSIC,
    "redeclipse-data": Selection(  # electronic and rock music; wind, machine and cave ambiences
        music=re.compile(r"sounds/music/"), clips=re.compile(r"sounds/ambience/")
    ),
    "freeorion-data": Selection(music=re.compile(r"data/sound/[^/]+\.ogg$")),  # its theme
    "starfighter-data": MUSIC,
    "wizznic-data": MUSIC,
    "ardentryst": Selection(music=re.compile(r"ardentryst/Music/")),
    "zaz-data": Selection(music=re.compile(r"games/zaz/.*\.ogg$")),
    "lordsawar-data": MUSIC,
    "frozen-bubble-data": Selection(music=re.compile(r"snd/.*zik.*\.ogg$")),
    "neverball-common": Selection(music=re.compile(r"neverball/bgm/")),
    "btanks-data": Selection(  # music, and explosions, engines and shots
        music=re.compile(r"data/tunes/"), clips=re.compile(r"data/sounds/[^/]+\.ogg$")
    ),
    "pathological": MUSIC,
    "pinball-data": Selection(music=re.compile(r"pinball/(professor|tux)/.*\.ogg$")),
    "tuxmath-data": Selection(music=re.compile(r"tuxmath/sounds/.*\.ogg$")),
    "seahorse-adventures": MUSIC,
    "caveexpress-data": MUSIC,
    "funnyboat": Selection(music=re.compile(r"funnyboat/data/.*\.ogg$")),
    "freeciv-data": MUSIC,
    "solarwolf": Selection(modules=MUSIC_PATH),
    # Kenta Cho's shooters: short electronic tracks
    "noiz2sa-data": Selection(music=re.compile(r"sounds/.*\.ogg$")),
    "parsec47-data": Selection(music=re.compile(r"sounds/.*\.ogg$")),
    "rrootage-data": Selection(music=re.compile(r"sounds/.*\.ogg$")),
    "tumiki-fighters-data": Selection(music=re.compile(r"sounds/.*\.ogg$")),
    "gunroar-data": MUSIC,
    "mu-cade-data": MUSIC,
    "titanion-data": MUSIC,
    "torus-trooper-data": MUSIC,
    # speech: about 200 words spoken in each of about 25 languages (children's stamp toy)
    "ktuberling-data": Selection(
        music=None, clips=re.compile(r"ktuberling/sounds/.*\.(ogg|opus|wav)$"), clips_kind="speech"
    ),
    # speech: mahjong calls by six voices, English and German
    "kajongg": Selection(music=None, clips=re.compile(r"kajongg/voices/"), clips_kind="speech"),
    # sound effects: desktop events, weapons and engines, spaceship sounds
    "sound-theme-freedesktop": Selection(music=None, clips=re.compile(r"sounds/")),
    "oxygen-sounds": Selection(music=None, clips=re.compile(r"sounds/")),
    "netpanzer-data": Selection(music=None, clips=re.compile(r"netpanzer/sound/")),
    "bzflag-data": Selection(music=None, clips=re.compile(r"games/bzflag/.*\.wav$")),
    "heroes-sound-effects": Selection(music=None, clips=re.compile(r"heroes/sfx/")),
    "endless-sky-data": Selection(music=None, clips=re.compile(r"endless-sky/sounds/")),
    # Tracker modules (issue 16, after version 2.2.0): chiptune, techno and synth music from the
    # Amiga and DOS tradition, the electronic sounds the rest of the recipe has least of.
    "biniax2-data": Selection(modules=MUSIC_PATH),
    "bomberclone-data": Selection(modules=MUSIC_PATH),
    "circuslinux-data": Selection(modules=MUSIC_PATH),
    "fb-music-high": Selection(modules=re.compile(r"frozen-bubble/snd/")),
    "freedroid-data": Selection(modules=re.compile(r"freedroid/sound/")),
    "gl-117-data": Selection(modules=MUSIC_PATH),
    "heroes-sound-tracks": Selection(modules=re.compile(r"heroes/mod/")),
    "ironseed-data": Selection(modules=re.compile(r"ironseed/sound/")),
    "madbomber-data": Selection(modules=MUSIC_PATH),
    "monsterz-data": Selection(modules=MUSIC_PATH),
    "njam-data": Selection(modules=re.compile(r"njam/data/")),
    "pekka-kana-2-data": Selection(modules=MUSIC_PATH),
    "pingus-data": Selection(modules=MUSIC_PATH),
    "rafkill-data": Selection(modules=re.compile(r"rafkill/(music|data)/")),
    "ri-li-data": Selection(modules=re.compile(r"Ri-li/Sounds/")),
    "tecnoballz-data": Selection(modules=MUSIC_PATH),
}

# Whole packages held out for validation (never trained on): model selection reads only these.
# Orchestral, ambient and electronic music (naev), rock-ish music and arcade effects
# (wordwarvi), and English and Spanish spoken descriptions of pictures (tuxpaint).
VALIDATION_PACKAGES: dict[str, Selection] = {
    "naev-data": MUSIC,
    "wordwarvi-sound": Selection(
        music=re.compile(r"sounds/.*\.ogg$"), clips=re.compile(r"sounds/.*\.(ogg|wav)$")
    ),
    "tuxpaint-stamps-default": Selection(
        music=None,
        clips=re.compile(r"stamps/.*_desc(_es)?\.ogg$"),  # English and Spanish
        clips_kind="speech",
        reels_across_folders=True,
    ),
}


class EvaluationPackageError(ValueError):
    """A package reserved for evaluation was about to be used for training or validation."""


def ensure_trainable(packages: Iterable[str]) -> None:
    """Raise :class:`EvaluationPackageError` if any package is reserved for evaluation."""
    reserved = sorted(name for name in set(packages) if evaluation_only(name))
    if reserved:
        raise EvaluationPackageError(f"reserved for evaluation, never for training: {reserved}")


ensure_trainable([*TRAINING_PACKAGES, *VALIDATION_PACKAGES])
