"""Stop work for a client that has gone: its queued patches would only waste inference."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from taggram.service.errors import ClientDisconnectedError

T = TypeVar("T")


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (the body already read), cancelling it if the client hangs up first.

    Cancellation reaches the batcher, which drops the request's patches not yet inferred.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # it may still be decoding the upload the route closes
    if task not in done:
        raise ClientDisconnectedError("the client disconnected before the response was ready")
    return task.result()
