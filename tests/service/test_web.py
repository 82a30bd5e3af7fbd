"""The web page's files: shipped as package data, and the page template's placeholders."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib import resources

import pytest

from taggram.service import web
from tests.support.paths import ROOT


def test_every_static_file_is_package_data() -> None:
    """A wheel (the Docker image installs one) must carry every file the page loads."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"][web.PACKAGE]
    static = resources.files(web.PACKAGE) / web.STATIC
    names = [entry.name for entry in static.iterdir() if entry.is_file()]
    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= set(names)
    for name in names:
        assert any(fnmatch.fnmatch(f"{web.STATIC}/{name}", p) for p in patterns), name


def test_index_links_are_relative_to_the_base() -> None:
    page = web.index_html(base="/taggram/", version="1.2.3")
    assert '<base href="/taggram/">' in page
    assert 'src="web/app.js?v=1.2.3"' in page
    assert "{{" not in page
    # Nothing absolute: every request must go through the prefix.
    assert 'href="/' not in page.replace('<base href="/taggram/">', "")
    assert 'src="/' not in page


def test_base_is_escaped_and_checked() -> None:
    assert '<base href="/a&quot;b/">' in web.index_html(base='/a"b/', version="1")
    with pytest.raises(ValueError, match="base"):
        web.index_html(base="taggram", version="1")
