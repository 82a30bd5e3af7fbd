"""Which Debian packages feed training, and which must never do so.

The evaluation-only packages hold the recordings the project measures its models on (``../shared``
and future benchmarks); training or validating on them would leak the test set, so every code path
that reads a package list or a manifest goes through :func:`ensure_trainable`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

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
)


def evaluation_only(package: str) -> bool:
    """Whether ``package`` (a Debian binary package name) is reserved for evaluation."""
    return package in EVALUATION_ONLY or any(
        fnmatch.fnmatchcase(package, pattern) for pattern in EVALUATION_ONLY_PATTERNS
    )

# Audio inside a package counts as music when its path matches; game data mixes music with
# sound effects, and the paths (plus a minimum duration, see taggram.models.data.prepare) separate them.
MUSIC_PATH = re.compile(r"music|songs?/|soundtrack|theme", re.IGNORECASE)

# Package → path pattern of its music files (None: the generic MUSIC_PATH rule).
TRAINING_PACKAGES: dict[str, re.Pattern[str] | None] = {
    "supertuxkart-data": None,
    "hedgewars-data": None,
    "freedroidrpg-data": None,
    "widelands-data": None,
    "supertux-data": None,
    "megaglest-data": None,
    "flare-game": None,
    "warmux-data": None,
    "openclonk-data": None,
    "lincity-ng-data": None,
    "xmoto-data": None,
    "colobot-common-sounds": None,
    "extremetuxracer-data": None,
    "fillets-ng-data": None,
    "freedink-data": re.compile(r"dink/Sound/[^/]+\.ogg$"),
    "fretsonfire-songs-muldjord": None,
    "fretsonfire-songs-sectoid": None,
    "lugaru-data": None,
    "powermanga-data": None,
    "scorched3d-data": None,
}


class EvaluationPackageError(ValueError):
    """A package reserved for evaluation was about to be used for training or validation."""


def ensure_trainable(packages: Iterable[str]) -> None:
    """Raise :class:`EvaluationPackageError` if any package is reserved for evaluation."""
    reserved = sorted(name for name in set(packages) if evaluation_only(name))
    if reserved:
        raise EvaluationPackageError(f"reserved for evaluation, never for training: {reserved}")


ensure_trainable(TRAINING_PACKAGES)
