"""The likely mistakes a creation's answer warns of: which examples count as the same audio."""

from __future__ import annotations

import numpy as np

from taggram.service.custom.advice import (
    case_warnings,
    chance_warning,
    one_shot_warnings,
    same_audio,
)


def test_same_audio_groups_copies_within_float_noise_only() -> None:
    rng = np.random.default_rng(0)
    mfcc = rng.normal(0, 3, (5, 40)).astype(np.float32)
    cnn = rng.normal(0, 0.01, (5, 960)).astype(np.float32)  # a feature of another scale
    # example 3 is example 0 embedded in another batch (last-bit noise, about 1e-6 relative);
    # example 4 is example 1 in mfcc only: another recording to the CNN
    mfcc[3] = mfcc[0] * (1 + 1e-6 * rng.standard_normal(40))
    cnn[3] = cnn[0] * (1 + 1e-6 * rng.standard_normal(960))
    mfcc[4] = mfcc[1]
    assert same_audio({"mfcc.statistics": mfcc, "random_vgg.features": cnn}) == [[0, 3]]
    assert same_audio({"mfcc.statistics": mfcc}) == [[0, 3], [1, 4]]
    silent = np.zeros((3, 40), np.float32)  # all-zero features: every example alike
    assert same_audio({"mfcc.statistics": silent}) == [[0, 1, 2]]


def test_case_twins_and_the_chance_level() -> None:
    assert case_warnings(["Rock", "rock", "jazz", "ROCK", "Jazz"]) == [
        "classes ['Rock', 'rock', 'ROCK'] differ only in case: they are separate tags, each "
        "with its own examples; give them one spelling if they are one",
        "classes ['jazz', 'Jazz'] differ only in case: they are separate tags, each with its "
        "own examples; give them one spelling if they are one",
    ]
    assert case_warnings(["rock", "jazz"]) == []
    assert chance_warning(None, "accuracy", 0.5) == []
    assert chance_warning(0.51, "accuracy", 0.5) == []
    (chance,) = chance_warning(0.5, "macro_f1", 0.5)
    assert chance.startswith("the estimate (macro_f1 0.500) is not above chance (0.500)")
    assert chance.endswith("more examples, or examples that differ more between classes, may help")


def test_the_one_shot_vote_warns_of_svm_and_knn_probabilities_only() -> None:
    auto = {"mfcc.statistics": 0.6, "MTT_musicnn.max_pool": 0.2, "MSD_musicnn.max_pool": 0.2}
    assert one_shot_warnings("logistic", auto) == []
    assert one_shot_warnings("prototypes", auto) == []
    assert "nearly even" in one_shot_warnings("svm", auto)[0]
    (knn,) = one_shot_warnings("knn", auto)
    assert knn.endswith(
        "not confidences, and mfcc.statistics (weight 0.6 of 1) outweighs the other members "
        "together: its nearest example alone decides the top tag"
    )
    # Members in balance (features= two of the vote's) or alone: no member decides alone.
    (even,) = one_shot_warnings("knn", {"MTT_musicnn.max_pool": 0.2, "MSD_musicnn.max_pool": 0.2})
    assert even.endswith("not confidences")
    assert one_shot_warnings("knn", {"random_vgg.features": 1.0})[0].endswith("not confidences")
