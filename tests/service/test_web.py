"""The web page's template: links relative to the base, placeholders filled and escaped."""

from __future__ import annotations

import pytest

from taggram.service import web


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
