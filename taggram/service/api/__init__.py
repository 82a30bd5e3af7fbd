"""The HTTP layer: routes translate requests into :class:`taggram.service.tagging.Tagger` calls."""

from taggram.service.api.app import create_app

__all__ = ["create_app"]
