"""The service's tags agree with the original musicnn's outputs in ``../shared/audio/reference``.

The service covers the trailing partial patch that the original drops, and weighs patches by the
audio they cover, so its clip scores are not the original's plain mean. The comparison is made
where it is exact: every patch the original scored is also cut by the service with the same
samples, so (1) those taggram rows must match, (2) the original's clip rule (mean of those rows)
must give the reference's top-5 in the same order, and (3) where the uncovered tail is a sliver
of the clip, the service's own clip-level top-5 must be the reference's top-5 set.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import tag_file
from tests.support.paths import REFERENCE
from tests.support.server import Server

MODELS = ["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"]
PATCH_SECONDS = 47872 / 16000
# Converted networks reproduce the original within float32 noise; this leaves room for
# summation order across batch sizes, not for any real difference.
ROW_TOLERANCE = 1e-4
SMALL_TAIL = 0.05


def _cases(shared_audio: Path) -> list[tuple[str, Path, dict]]:
    cases = []
    for model in MODELS:
        for facts_path in sorted(REFERENCE.glob(f"*.{model}.json")):
            facts = json.loads(facts_path.read_text())
            cases.append((model, shared_audio / facts["audio_name"], facts))
    return cases


def test_tags_agree_with_the_original(server: Server, shared_audio: Path) -> None:
    cases = _cases(shared_audio)
    assert cases, f"no reference outputs in {REFERENCE}"

    def run(case: tuple[str, Path, dict]) -> httpx.Response:
        model, audio, _ = case
        with httpx.Client(base_url=server.url, timeout=300) as http:
            return tag_file(http, audio, model=model, taggram="true")

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(run, cases))
    failures = []
    for (model, audio, facts), response in zip(cases, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        label = f"{audio.name} {model}"
        reference = np.load(REFERENCE / f"{audio.stem}.{model}.npz")
        tags = body["taggram"]["tags"]
        assert tags == reference["tags"].tolist(), label
        patches = body["taggram"]["patches"]
        # (1) The original's patches k = 0 .. n-1 start at k * 2.992 s in the service too.
        rows = np.array([patch["values"] for patch in patches[: facts["n_patches"]]])
        starts = [patch["start_seconds"] for patch in patches[: facts["n_patches"]]]
        assert starts == pytest.approx(np.arange(facts["n_patches"]) * PATCH_SECONDS), label
        np.testing.assert_allclose(rows, reference["taggram"], atol=ROW_TOLERANCE, err_msg=label)
        # (2) The original's clip rule on those rows: the same top 5, in order.
        top5 = [tags[i] for i in np.argsort(-rows.mean(axis=0), kind="stable")[:5]]
        if top5 != facts["top5_mean"]:
            failures.append(f"{label}: top-5 {top5} != {facts['top5_mean']}")
        # (3) The service's own clip scores, when the extra tail patch is a sliver of the clip.
        tail = 1 - facts["n_patches"] * PATCH_SECONDS / body["audio"]["duration_seconds"]
        service_top5 = {item["tag"] for item in body["tags"][:5]}
        if tail < SMALL_TAIL and service_top5 != set(facts["top5_mean"]):
            failures.append(f"{label}: service top-5 {service_top5} != {facts['top5_mean']}")
    assert not failures, "\n".join(failures)
