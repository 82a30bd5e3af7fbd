"""Which features a custom model may be built on, with the repository's real model metadata."""

from __future__ import annotations

import pytest

from taggram.repository import load_repository
from taggram.service.custom.features import available, parse_features
from taggram.service.errors import InvalidOptionsError
from tests.support.paths import require_repository


@pytest.mark.parametrize("asked", ["MTT_musicnn_int8", "MTT_musicnn_int8.penultimate"])
def test_a_quantised_copys_features_are_refused_saying_whose_to_ask_for(asked: str) -> None:
    """Beside its float model an _int8 copy offers no features (they repeat the float model's):
    asking for them was a bare "unknown features 'MTT_musicnn_int8'" although it is served."""
    entries = load_repository(require_repository(), verify_hashes=False)
    models = {name: entries[name].metadata for name in ("MTT_musicnn", "MTT_musicnn_int8")}
    with pytest.raises(InvalidOptionsError) as refused:
        parse_features(asked, models)
    assert (
        f"unknown features {asked!r} (MTT_musicnn_int8 is a quantised copy of MTT_musicnn: ask "
        "for MTT_musicnn's, the same features)"
    ) in str(refused.value)
    alone = {"MTT_musicnn_int8": models["MTT_musicnn_int8"]}  # without its float model: offered
    assert parse_features(asked, alone) == [
        f for f in available(alone) if asked in (f, f.split(".")[0])
    ]
