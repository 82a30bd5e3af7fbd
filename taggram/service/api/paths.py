"""Which part of the API a request is for, whatever the root path it is served under.

Uvicorn's ``path`` (and so ``request.url.path``) includes the root path (``TAGGRAM_ROOT_PATH``,
``/taggram`` behind a proxy that strips it), which the app's own paths (``/v1/...``,
``/v2/...``) do not: a test of the raw path for ``/v2`` failed under a prefix.
"""

from __future__ import annotations

from starlette.types import Scope


def root_path(scope: Scope) -> str:
    """The root path the request came through, without a trailing slash (``/taggram``, or
    ``""`` with none): what a link or a ``Location`` the client follows must start with."""
    return str(scope.get("root_path", "")).rstrip("/")


def app_path(scope: Scope) -> str:
    """The request's path within the app: ``/v2/models/x`` for ``/taggram/v2/models/x`` served
    under the root path ``/taggram``."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def is_under(scope: Scope, *prefixes: str) -> bool:
    """Whether the request is for one of ``prefixes`` (``"/v2"``) or a path below one."""
    path = app_path(scope)
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)
