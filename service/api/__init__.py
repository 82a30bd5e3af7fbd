"""The HTTP layer: routes translate requests into :class:`service.tagging.Tagger` calls."""

from service.api.app import create_app

__all__ = ["create_app"]
