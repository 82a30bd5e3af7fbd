"""Bounded under abuse, through a real server (tiny model): the input budget, timeouts, hang-ups,
request ids in the logs, and no option value that gives a 5xx."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from taggram.client import AsyncTaggramClient, RequestRejectedError
from taggram.service.tagging import TagOptions
from tests.support.server import Server, running_server

LIMIT = 1024 * 1024
ENV = {
    "TAGGRAM_DEFAULT_MODEL": "tiny",
    "TAGGRAM_MAX_UPLOAD_BYTES": str(LIMIT),
    "TAGGRAM_MAX_BATCH_BYTES": str(LIMIT * 3 // 2),
    "TAGGRAM_READ_TIMEOUT_SECONDS": "1",
    "TAGGRAM_BODY_TIMEOUT_SECONDS": "3",
    "TAGGRAM_LOG_LEVEL": "debug",
    "TAGGRAM_LOG_FORMAT": "json",
    "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
}
CHUNK = 64 * 1024


def wav(seconds: float, rate: int = 16000) -> bytes:
    tone = 0.3 * np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate)
    out = io.BytesIO()
    sf.write(out, tone.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tiny_repository, tmp_path_factory.mktemp("logs"), env=ENV) as started:
        yield started


@pytest.mark.parametrize(
    ("path", "field", "limit"),
    [("/v1/tag", "file", LIMIT), ("/v1/tag/batch", "files", LIMIT * 3 // 2)],
)
def test_a_compression_bomb_meets_the_routes_own_limit(
    server: Server, path: str, field: str, limit: int
) -> None:
    """64 MiB of zeros in 64 kB of gzip: refused by the route's own byte limit, which the
    operator set and the message names, inflated about one step past it, not by the far larger
    bound of the decoding middleware (the upload limit times TAGGRAM_MAX_BATCH_FILES)."""
    request = httpx.Request("POST", f"{server.url}{path}", files={field: ("a.wav", wav(1.0))})
    body = request.read() + bytes(64 * 1024 * 1024)
    headers = {"Content-Type": request.headers["Content-Type"], "Content-Encoding": "gzip"}
    response = httpx.post(f"{server.url}{path}", content=gzip.compress(body), headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == f"request body exceeds the limit of {limit} bytes"


def _connect(server: Server) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def head_only(server: Server, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a request's ``head`` (its announced body never follows) and read the answer:
    status, lower-cased headers, body."""
    with _connect(server) as sock:
        sock.sendall(head)
        return _response(sock)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (status, lower-cased headers, body) up to the server's close."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _chunked(body_bytes: int, prefix: bytes = b"") -> Iterator[bytes]:
    """A chunked transfer encoding of ``prefix`` and then zeros, ``body_bytes`` in all."""
    payload = prefix + bytes(CHUNK - len(prefix) % CHUNK)
    sent = 0
    while sent < body_bytes:
        piece = payload[:CHUNK] if sent else payload[: max(CHUNK, len(prefix))]
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
        sent += len(piece)
    yield b"0\r\n\r\n"


def _send_until_refused(sock: socket.socket, head: bytes, chunks: Iterator[bytes]) -> int:
    """Send the request; returns how many bytes went out before the server stopped reading."""
    sock.sendall(head)
    sent = 0
    sock.settimeout(5)
    try:
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    sock.settimeout(30)
    return sent


def test_a_chunked_multipart_upload_is_cut_off_near_the_limit(server: Server) -> None:
    boundary = b"xyz"
    prefix = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n"
    )
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n"
    )
    total = 50 * 1024 * 1024
    with _connect(server) as sock:
        sent = _send_until_refused(sock, head, _chunked(total, prefix))
        status, headers, body = _response(sock)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers["connection"] == "close"
    # The server stopped reading near the 1 MiB limit; socket buffers hold a few MB at most.
    assert sent < total // 4


def test_a_chunked_raw_upload_is_cut_off_near_the_limit(server: Server) -> None:
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: audio/wav\r\n\r\n"
    )
    total = 50 * 1024 * 1024
    with _connect(server) as sock:
        sent = _send_until_refused(sock, head, _chunked(total))
        status, _, body = _response(sock)
    assert (status, json.loads(body)["error"]["code"]) == (413, "payload_too_large")
    assert sent < total // 4


def test_a_batch_has_its_own_total_limit(server: Server) -> None:
    files = [("files", (f"{i}.wav", wav(20), "audio/wav")) for i in range(3)]  # 640 kB each
    response = httpx.post(f"{server.url}/v1/tag/batch", files=files, timeout=60)
    assert response.status_code == 413, response.text
    one = httpx.post(f"{server.url}/v1/tag/batch", files=files[:2], timeout=60)
    assert one.status_code == 200, one.text


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"FOO /v1/tag HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid method encountered"),
        (b"POST /v1/tag HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "Invalid character in Content-"),
        (b"POST /v1/tag HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", "overflow"),
        (
            b"POST /v1/tag HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            "Content-Length can't be present with Transfer-Encoding",
        ),
        (b"GET /v1/models HTTP/1.1\r\nX-Id: \x01\r\n\r\n", "Invalid header value char"),
        (b"CONNECT example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n", "invalid url"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 is not served here"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40), "a TLS handshake"),
    ],
    ids=[
        "method",
        "negative-length",
        "length-overflow",
        "length-and-chunked",
        "control-char",
        "connect",
        "http2",
        "tls",
    ],
)
def test_a_request_the_http_parser_refuses_is_a_problem(
    server: Server, head: bytes, reason: str
) -> None:
    """uvicorn refuses these itself, before the app; its answer was a text/plain 400."""
    status, headers, body = head_only(server, head)
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (400, "malformed_request")
    assert problem["type"] == "urn:taggram:problem:malformed_request"
    assert reason in problem["detail"]
    assert problem["request_id"] == headers["x-request-id"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_v2_request_the_http_parser_refuses_is_a_protocol_error(server: Server) -> None:
    """As every /v2 error: application/json, with the message in ``error`` for tritonclient."""
    status, headers, body = head_only(
        server,
        b"POST /v2/models/tiny/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n",
    )
    problem = json.loads(body)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert problem["instance"] == "/v2/models/tiny/infer"
    assert problem["error"] == problem["detail"]


def test_a_stalled_body_gets_408_and_its_connection_closed(server: Server) -> None:
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with _connect(server) as sock:
        sock.sendall(head + wav(1)[:1000])
        status, headers, body = _response(sock)  # returns only once the server closes
    assert (status, json.loads(body)["error"]["code"]) == (408, "request_timeout")
    assert headers["connection"] == "close"


def test_a_trickling_body_meets_the_whole_body_deadline(server: Server) -> None:
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with _connect(server) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(0.5)
        data = b""
        while not data and time.monotonic() - started < 30:
            sock.sendall(b"\0" * 10)  # well within the read timeout every time
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
        sock.settimeout(30)
        while chunk := sock.recv(65536):  # the body may follow the head in a later segment
            data += chunk
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"not complete within 3 s" in data


def test_a_trickling_request_head_gets_408_and_its_connection_closed(server: Server) -> None:
    """A header line every 0.3 s (slowloris) kept a connection for ever: uvicorn bounds neither
    the time to the end of the headers nor the wait for a first request. The head now has the
    read timeout (1 s here) from its first byte."""
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        sock.settimeout(0.3)
        data = b""
        for line in range(100):  # 30 s at most
            try:
                sock.sendall(b"X-Line-%d: y\r\n" % line)
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if data:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408"), data
    assert elapsed < 10, elapsed
    _, _, body = data.partition(b"\r\n\r\n")
    problem = json.loads(body)
    assert (problem["code"], problem["instance"]) == ("request_timeout", "/v1/tag")
    assert "request line and headers were not complete within 1 s" in problem["detail"]


def test_the_rest_of_a_body_answered_early_is_not_taken_for_a_head(server: Server) -> None:
    """A request refused before its body is read (a bad option: 422) keeps its connection when
    little of the body is left, which uvicorn then reads past: those bytes were counted as the
    next request's head (a 431 after 64 KiB, the connection reset under the client)."""
    body = wav(10.0)  # 320 kB
    head = (
        b"POST /v1/tag?top_k=0 HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with _connect(server) as sock:
        sock.sendall(head + body)
        time.sleep(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert re.findall(rb"HTTP/1\.1 \d{3}", data) == [b"HTTP/1.1 422", b"HTTP/1.1 200"], data


def test_a_request_head_past_64_kib_gets_431_and_its_connection_closed(server: Server) -> None:
    """A 20 MiB header was read whole (and held) before the app saw the request."""
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: "
    with _connect(server) as sock:
        sent = _send_until_refused(sock, head, iter([b"a" * CHUNK] * 320))
        status, headers, body = _response(sock)
    assert (status, json.loads(body)["code"]) == (431, "headers_too_large"), body
    assert headers["connection"] == "close"
    assert sent < 5 * 1024 * 1024  # refused near 64 KiB; socket buffers hold a few MB at most
    # A large head within the bound (a 16 KiB cookie) is served.
    cookie = {"Cookie": "a=" + "b" * 16 * 1024}
    assert httpx.get(f"{server.url}/v1/models", headers=cookie).status_code == 200


@pytest.mark.parametrize("batch", [False, True], ids=["tag", "tag_batch"])
def test_the_async_client_reads_the_413_of_an_upload_refused_unread(
    server: Server, batch: bool
) -> None:
    """The service answers 413 from the Content-Length and closes the connection; the rest of
    the upload then fails to send, and asyncio closed the socket with the answer unread in it:
    the async client (``taggram catalogue --url``) raised ConnectionFailedError ('unreachable',
    tried again on every run) where the blocking one read the 413."""
    big = wav(160.0)  # 5 MB, past the 1 MiB limit (and the batch's 1.5 MiB)

    async def upload() -> RequestRejectedError:
        async with AsyncTaggramClient(server.url) as client:
            with pytest.raises(RequestRejectedError) as refused:
                if batch:
                    await client.tag_batch([("big.wav", big)])
                else:
                    await client.tag(big, filename="big.wav")
            return refused.value

    error = asyncio.run(upload())
    assert (error.status, error.code) == (413, "payload_too_large"), error.body


def test_a_head_that_ends_in_the_read_that_passes_64_kib_gets_431_too(server: Server) -> None:
    """The bound was checked only on a head still incomplete after a read: 60 kB of it, then
    the last 10 kB with its end in one read, was served (and 70 kB sent at once, when it arrived
    in one read), while the same head arriving in smaller pieces got 431."""
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(head[:60_000])
        time.sleep(0.5)  # read by the server as a head still below the bound
        sock.sendall(head[60_000:])
        status, headers, body = _response(sock)
    assert (status, json.loads(body)["code"]) == (431, "headers_too_large"), body
    assert headers["connection"] == "close"


def _framed_wav(chunked: bool) -> tuple[bytes, bytes]:
    """One second of WAV as a request body, chunked or not, and the header line framing it."""
    audio = wav(1.0)
    if chunked:
        return b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(audio), audio)
    return b"Content-Length: %d" % len(audio), audio


def _send_split(sock: socket.socket, head: bytes, body: bytes, after: bytes) -> None:
    """``head`` and the body's first 1,000 bytes, then the rest in a later segment, ``after``
    (a pipelined request) behind it."""
    sock.sendall(head + body[:1000])
    time.sleep(0.2)
    sock.sendall(body[1000:] + after)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_asking_to_upgrade_is_served_with_its_body(server: Server, chunked: bool) -> None:
    """``curl --http2`` on an http:// URL sends ``Upgrade: h2c``; the service speaks HTTP/1.1
    only and ignores it, but httptools took the body for the other protocol's: a 400 saying
    the upload carried no audio (or was cut short), or its bytes parsed as a next request."""
    framing, body = _framed_wav(chunked)
    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
        b"Content-Type: audio/wav\r\n" + framing + b"\r\n\r\n"
    )
    with _connect(server) as sock:
        _send_split(
            sock, head, body, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    first, _, second = data.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1 ")
    assert data.startswith(b"HTTP/1.1 200 OK"), data
    tagged = json.loads(first.partition(b"\r\n\r\n")[2])
    assert tagged["audio"]["duration_seconds"] == pytest.approx(1.0)
    assert second.startswith(b"200 OK"), data  # the connection goes on after it


@pytest.mark.parametrize(
    ("version", "connection", "upgrade", "chunked"),
    [
        (b"1.1", b"Upgrade, HTTP2-Settings, close", b"h2c", False),
        (b"1.1", b"close, Upgrade", b"websocket", True),
        (b"1.0", b"Upgrade", b"h2c", False),
    ],
    ids=["h2c", "websocket-chunked", "http-1.0"],
)
def test_an_upload_asking_to_upgrade_and_close_is_served_and_closed(
    server: Server, version: bytes, connection: bytes, upgrade: bytes, chunked: bool
) -> None:
    """With ``close`` beside ``Upgrade`` (or in HTTP/1.0), httptools dropped the body (its
    parser had closed), so the upload waited out the body timeout for a 408; it is served, its
    connection closed after it, a request pipelined behind it unanswered."""
    framing, body = _framed_wav(chunked)
    head = (
        b"POST /v1/tag HTTP/%s\r\nHost: x\r\nConnection: %s\r\nUpgrade: %s\r\n"
        b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Type: audio/wav\r\n%s\r\n\r\n"
        % (version, connection, upgrade, framing)
    )
    with _connect(server) as sock:
        _send_split(sock, head, body, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, answer = _response(sock)  # read up to the server's close
    assert status == 200, answer
    assert headers["connection"] == "close"
    assert b"HTTP/1.1" not in answer  # the pipelined request went unanswered
    assert json.loads(answer)["audio"]["duration_seconds"] == pytest.approx(1.0)


def test_a_websocket_upgrade_is_ignored_not_refused(server: Server) -> None:
    """No route takes a WebSocket: the request is served as plain HTTP, not a text/plain 403."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": key}
    response = httpx.get(
        f"{server.url}/v1/models", headers={**headers, "Sec-WebSocket-Version": "13"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["default_model"] == "tiny"


def _metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    pattern = re.escape(name) + r"\{([^}]*)\} ([0-9.e+]+)"
    total = 0.0
    for found in re.finditer(pattern, text):
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(2))
    return total


def test_client_hang_ups_are_499_logged_once_at_debug_never_500(server: Server) -> None:
    errors_before = _metric(server, "taggram_requests_total", status="500")
    hangups_before = _metric(server, "taggram_requests_total", status="499")
    aborts = 20
    ids = [f"hangup-{i}" for i in range(aborts)]
    for request_id in ids:
        with _connect(server) as sock:
            sock.sendall(
                b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                + f"X-Request-ID: {request_id}\r\n".encode()
                + b"Content-Length: 500000\r\n\r\n"
                + wav(5)[:50000]
            )
            time.sleep(0.05)
    deadline = time.monotonic() + 30
    while _metric(server, "taggram_requests_total", status="499") < hangups_before + aborts:
        assert time.monotonic() < deadline, "hang-ups not counted as 499"
        time.sleep(0.2)
    assert _metric(server, "taggram_requests_total", status="500") == errors_before
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    for request_id in ids:
        mine = [r for r in records if r["request_id"] == request_id]
        assert [r["level"] for r in mine] == ["debug"], mine
        assert "client_disconnected" in mine[0]["message"]
    assert not any("Traceback" in r.get("exception", "") for r in records)


def test_a_batch_whose_client_hangs_up_stops_quietly(tiny_repository: Path, tmp_path: Path) -> None:
    """One decode slot: one file decodes while the others wait. The hang-up cancelled the
    waiting files at once, and asyncio.gather ended there, the route closing the uploads while
    the first still decoded: two ERROR lines, "Future exception was never retrieved" (that
    file's ValueError on its closed upload) and "_GatheringFuture exception was never
    retrieved"."""
    env = {
        **ENV,
        "TAGGRAM_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
        "TAGGRAM_MAX_BATCH_BYTES": str(256 * 1024 * 1024),
        "TAGGRAM_DECODE_SLOTS": "1",
        "TAGGRAM_READ_TIMEOUT_SECONDS": "30",
        "TAGGRAM_BODY_TIMEOUT_SECONDS": "60",
    }
    song = io.BytesIO()  # 60 s of 48 kHz stereo: tens of milliseconds to decode and resample
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (60 * 48000, 2)).astype(np.float32)
    sf.write(song, noise, 48000, format="WAV", subtype="PCM_16")
    request = httpx.Request(
        "POST",
        "http://x/v1/tag/batch",
        files=[("files", (f"{i}.wav", song.getvalue())) for i in range(4)],
    )
    body = request.read()
    head = (
        b"POST /v1/tag/batch HTTP/1.1\r\nHost: x\r\nX-Request-ID: hangup-batch\r\n"
        + f"Content-Type: {request.headers['Content-Type']}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with running_server(tiny_repository, tmp_path, env=env) as server:
        with _connect(server) as sock:
            sock.sendall(head + body)
            time.sleep(0.05)  # the upload is read; the files are being tagged
        deadline = time.monotonic() + 30
        while _metric(server, "taggram_requests_total", status="499") < 1:
            assert time.monotonic() < deadline, "the hang-up was not counted as 499"
            time.sleep(0.2)
        time.sleep(1.0)  # the cancelled files' decodes finish, their futures are collected
        lines = [line for line in server.log().splitlines() if line.strip()]
    # asyncio's own reports of unretrieved exceptions are no JSON records of ours.
    assert not [line for line in lines if not line.startswith("{")], lines
    records = [json.loads(line) for line in lines]
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    mine = [r for r in records if r["request_id"] == "hangup-batch"]
    assert [r["level"] for r in mine] == ["debug"], mine


def test_log_lines_are_json_and_carry_the_request_id(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/v1/tag",
        content=wav(2),
        headers={"Content-Type": "audio/wav", "X-Request-ID": "trace-me-42"},
    )
    assert response.status_code == 200, response.text
    time.sleep(0.2)
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    mine = [r for r in access if r["request_id"] == "trace-me-42"]
    assert len(mine) == 1 and "/v1/tag" in mine[0]["message"]
    assert all(set(r) >= {"time", "level", "logger", "request_id", "message"} for r in records)


def test_a_request_id_that_is_not_utf8_is_replaced_not_a_500(server: Server) -> None:
    """Header values are bytes (Latin-1 to ASGI): a caller's X-Request-ID of b"\xe9\xe9" was
    decoded as UTF-8 and failed the request with a 500. Like any unsafe id, a fresh one is
    used."""
    response = httpx.post(
        f"{server.url}/v1/tag",
        content=wav(1),
        headers={b"Content-Type": b"audio/wav", b"X-Request-ID": b"\xe9\xe9"},
    )
    assert response.status_code == 200, response.text
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_infinite_hop_is_a_422(server: Server) -> None:
    for value in ("inf", "-inf", "nan", "1e400"):
        response = httpx.post(
            f"{server.url}/v1/tag",
            params={"hop": value},
            content=wav(2),
            headers={"Content-Type": "audio/wav"},
        )
        assert response.status_code == 422, (value, response.text)


_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-0", "1e-400", "0x10", "", " "]),
)
# Oversized: far past every string limit (200), short enough for the client's URL limit.
_CHARS = st.characters(exclude_categories=("Cs",))  # lone surrogates cannot be sent at all
_TEXT = st.one_of(st.text(_CHARS, max_size=20), st.text(_CHARS, min_size=1000, max_size=3000))
_VALUE = st.one_of(_NUMBERS, _TEXT, st.booleans())
_PARAMS = st.dictionaries(
    st.one_of(st.sampled_from(sorted(TagOptions.model_fields)), st.text(_CHARS, max_size=10)),
    _VALUE,
    max_size=4,
)
_AUDIO = wav(2)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.generate],  # shrinking 20 kB strings over HTTP takes minutes
)
@given(
    params=_PARAMS,
    content_type=st.sampled_from(["audio/wav", "application/octet-stream", "text/plain", ""]),
    multipart=st.booleans(),
    batch=st.booleans(),
)
def test_no_option_value_gives_a_5xx(
    http: httpx.Client, params: dict[str, object], content_type: str, multipart: bool, batch: bool
) -> None:
    query = {key: str(value) for key, value in params.items()}
    if batch:
        files = [("files", ("a.wav", _AUDIO, content_type or None))] * 2
        response = http.post(
            "/v1/tag/batch",
            params=query if multipart else None,
            data=None if multipart else query,
            files=files,
        )
    elif multipart:
        response = http.post(
            "/v1/tag", data=query, files={"file": ("a.wav", _AUDIO, content_type or None)}
        )
    else:
        headers = {"Content-Type": content_type} if content_type else {}
        response = http.post("/v1/tag", params=query, content=_AUDIO, headers=headers)
    assert response.status_code < 500, (params, response.text)
    if response.status_code >= 400:
        assert response.json()["error"]["code"], (params, response.status_code, response.text)
    elif batch:
        assert all(
            item["error"] is None or item["error"]["status"] < 500
            for item in response.json()["results"]
        )


def test_bodies_in_flight_share_one_budget(tiny_repository: Path, tmp_path: Path) -> None:
    """Uploads held at once are bounded all together (the /tmp they spool to), not only one by
    one: a body that would pass TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT is refused with a retryable
    429 from its Content-Length, before it is read, and the bytes come back as requests end."""
    song = wav(30.0)  # 960 kB
    env = {
        **ENV,
        "TAGGRAM_READ_TIMEOUT_SECONDS": "60",
        "TAGGRAM_BODY_TIMEOUT_SECONDS": "120",
        "TAGGRAM_MAX_BATCH_BYTES": str(LIMIT),
        "TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT": str(LIMIT * 3 // 2),
    }
    headers = {"Content-Type": "audio/wav"}
    with running_server(tiny_repository, tmp_path, env=env) as started:
        with _connect(started) as slow:
            slow.sendall(
                b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(song), song[:700_000])
            )
            deadline = time.monotonic() + 30
            while _gauge(started, "taggram_body_in_flight_bytes") < 700_000:
                assert time.monotonic() < deadline, "the slow body never arrived"
                time.sleep(0.1)
            refused = httpx.post(f"{started.url}/v1/tag", content=song, headers=headers)
            assert (refused.status_code, refused.json()["code"]) == (429, "overloaded")
            assert refused.headers["Retry-After"] == "2"
            assert "TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT" in refused.json()["detail"]
            small = httpx.post(f"{started.url}/v1/tag", content=wav(1.0), headers=headers)
            assert small.status_code == 200, small.text  # what fits is served meanwhile
        deadline = time.monotonic() + 30
        while _gauge(started, "taggram_body_in_flight_bytes") > 0:  # the slow client hung up
            assert time.monotonic() < deadline, "the hung-up body was never given back"
            time.sleep(0.1)
        again = httpx.post(f"{started.url}/v1/tag", content=song, headers=headers, timeout=60)
        assert again.status_code == 200, again.text


def _gauge(server: Server, name: str) -> float:
    """The value of an unlabelled metric on ``/metrics``."""
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, flags=re.MULTILINE)
    assert found, name
    return float(found.group(1))
