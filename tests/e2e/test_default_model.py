"""A server loading a subset of the models that leaves the built-in default out."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import tag_file
from tests.support.paths import require_repository
from tests.support.server import running_server


@pytest.mark.parametrize(
    ("models", "default"),
    # mfcc, a feature extractor first, refused to start (exit 2): the first that tags is taken
    [("MTT_vgg_int8", "MTT_vgg_int8"), ("mfcc,MTT_vgg", "MTT_vgg")],
)
def test_the_first_model_loaded_that_tags_is_the_default_when_none_is_set(
    short_wav: Path, tmp_path_factory: pytest.TempPathFactory, models: str, default: str
) -> None:
    env = {"TAGGRAM_MODELS": models, "TAGGRAM_WARMUP": "0"}  # TAGGRAM_DEFAULT_MODEL unset
    logs = tmp_path_factory.mktemp("logs")
    with (
        running_server(require_repository(), logs, env=env) as server,
        httpx.Client(base_url=server.url, timeout=300) as client,
    ):
        assert client.get("/v1/models").json()["default_model"] == default
        response = tag_file(client, short_wav)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["name"] == default
        assert f"default {default}" in server.log()
