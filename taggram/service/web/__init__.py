"""The web page served at ``/``: one HTML page, its JavaScript and CSS, shipped as package data.

No build step and no third-party JavaScript: ``static/app.js`` is a plain ES module that calls the
same HTTP API as any client (``GET v1/models``, ``POST v1/tag?taggram=true``) and draws the taggram
on a canvas. Every URL in the page is relative to a ``<base href>`` that the route fills in from
the request's root path, so the page also works under a path prefix behind a proxy.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

PACKAGE = __name__
STATIC = "static"
# The page's template among the static files: served only filled in, by index_html.
TEMPLATE = "index.html"


@cache
def _template() -> str:
    return (resources.files(PACKAGE) / STATIC / TEMPLATE).read_text(encoding="utf-8")


def index_html(base: str, version: str) -> str:
    """The page, its links relative to ``base`` (the root path plus ``/``), assets tagged with
    ``version`` so a new release is never served stale from a browser cache.

    Raises:
        ValueError: ``base`` does not start and end with ``/``.
    """
    if not (base.startswith("/") and base.endswith("/")):
        raise ValueError(f"base must start and end with '/', got {base!r}")
    return (
        _template()
        .replace("{{BASE}}", html.escape(base, quote=True))
        .replace("{{VERSION}}", html.escape(version, quote=True))
    )
