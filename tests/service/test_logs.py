"""Log lines carry the request id of the request they were logged for, as text or JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from taggram.service.logs import REQUEST_ID, TEXT_FORMAT, JsonFormatter, RequestIdFilter


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO]]]:
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("taggram.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler
    logger.removeHandler(handler)


def test_text_lines_carry_the_request_id(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logger.info("outside")
    token = REQUEST_ID.set("req-1")
    try:
        logger.info("inside")
    finally:
        REQUEST_ID.reset(token)
    outside, inside = handler.stream.getvalue().splitlines()
    assert "[-] outside" in outside
    assert "[req-1] inside" in inside


def test_json_lines_are_objects_with_the_request_id_and_the_traceback(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(JsonFormatter())
    token = REQUEST_ID.set("req-2")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed %s", "here")
    finally:
        REQUEST_ID.reset(token)
    (line,) = handler.stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["request_id"] == "req-2"
    assert record["message"] == "failed here"
    assert record["level"] == "error"
    assert "ValueError: boom" in record["exception"]
