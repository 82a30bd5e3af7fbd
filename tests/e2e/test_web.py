"""The web page at ``/`` in a real headless Chromium against a real server.

The page is driven as a person would: upload a recording through the file input, wait for the
heat-map, read what it drew back from the canvas pixels and compare with the API's own answer for
the same file. Screenshots go to ``TAGGRAM_SCREENSHOTS`` when set (that is how the README's picture
is made), else to the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
import pytest
import soundfile as sf

from benchmarks.custom_creation import example as synthetic_example
from tests.e2e.conftest import SecuredServer, long_track, tag_file
from tests.support.browser import ConsoleLog, launched_chromium
from tests.support.paths import SHARED_AUDIO, has_shared, require_repository
from tests.support.proxy import prefix_proxy
from tests.support.server import Server, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Route

TIMEOUT_MS = 120_000  # tagging on a busy 2-core CI machine
NOT_AUDIO = b"this is a text file, not audio\n" * 40
# Chromium logs every non-2xx fetch as a console error; the error tests cause exactly these.
FAILED_REQUEST = "Failed to load resource: the server responded with a status of"
TAG_REQUEST = re.compile(r"/v1/tag\?")

# The drawn cells' colours, read back from the canvas at the centres the page publishes.
READ_CELLS = """canvas => {
  const { x, y } = JSON.parse(canvas.dataset.cellCentres);
  const ctx = canvas.getContext("2d");
  return y.map(py => x.map(px => Array.from(ctx.getImageData(px, py, 1, 1).data.slice(0, 3))));
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as started:
        yield started


@pytest.fixture(scope="module")
def song(music_wav: Path) -> Path:
    """Music to upload: the 8-bit 22.05 kHz ``clip_07.wav`` where ``../shared`` is, else
    ``music_wav``."""
    return SHARED_AUDIO / "clip_07.wav" if has_shared() else music_wav


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


DESKTOP = {"width": 1280, "height": 900}


@contextmanager
def browser_page(browser: Browser, console: ConsoleLog, **options: Any) -> Iterator[Page]:
    """A page in a fresh browser context made with ``options`` (``viewport``, ``color_scheme``,
    ``forced_colors``, ``reduced_motion`` ...; a desktop window unless given), its console
    watched; the context is closed on leaving."""
    context = browser.new_context(**{"viewport": DESKTOP, **options})
    context.set_default_timeout(TIMEOUT_MS)  # every wait may include a tagging on a busy machine
    try:
        yield console.watch(context.new_page())
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, console: ConsoleLog) -> Iterator[Page]:
    with browser_page(browser, console) as opened:
        yield opened


@pytest.fixture
def phone(browser: Browser, console: ConsoleLog) -> Iterator[Page]:
    """The page in a 360 px wide window, a common phone's."""
    with browser_page(browser, console, viewport={"width": 360, "height": 800}) as opened:
        yield opened


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("TAGGRAM_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid=model-select]:enabled", timeout=TIMEOUT_MS)


def upload(page: Page, path: Path) -> None:
    page.set_input_files("[data-testid=file-input]", str(path))
    page.wait_for_selector("[data-testid=taggram][data-rows]", timeout=TIMEOUT_MS)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two flat arrays."""
    ranks = [np.argsort(np.argsort(values, kind="stable")).astype(float) for values in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb(r, g, b)`` colours (1 to 21)."""

    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def api_answer(server: Server, path: Path, **params: Any) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        response = tag_file(client, path, taggram="true", **params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_page_and_assets_are_served(server: Server) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for testid in ("file-input", "model-select", "taggram", "top-tags", "error"):
        assert f'data-testid="{testid}"' in page.text
    assert '<base href="/">' in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "css"), ("favicon.svg", "svg")):
        response = httpx.get(f"{server.url}/web/{asset}")
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"]
    assert httpx.get(f"{server.url}/web/missing.js").status_code == 404
    # The page's template is served only filled in, at /, with the page's headers.
    for template in ("/web/index.html", "/web/./index.html", "/web/swagger-ui/../index.html"):
        response = httpx.get(f"{server.url}{template}")
        assert response.status_code == 404, template
        assert "{{BASE}}" not in response.text
    assert "/" not in httpx.get(f"{server.url}/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "ranges", ["bytes=5-1", "bytes=99999999-", "items=0-1", "bytes=", "bytes=0-10"]
)
def test_an_asset_is_served_whole_whatever_its_range(server: Server, ranges: str) -> None:
    """Starlette answered a Range it could not serve (``bytes=5-1``, ``items=0-1``, which RFC
    9110 says to ignore) with a text/plain 400 or 416, not a problem body: the small assets are
    now served whole, whatever the Range, and say that they take none."""
    whole = httpx.get(f"{server.url}/web/app.js")
    response = httpx.get(f"{server.url}/web/app.js", headers={"Range": ranges})
    assert response.status_code == 200, response.text
    assert response.content == whole.content
    assert response.headers["accept-ranges"] == "none"


def test_page_tags_a_recording_and_draws_its_taggram(
    server: Server, music_mp3: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    recording = music_mp3  # 30 s: 11 patches
    expected = api_answer(server, recording)
    open_page(page, f"{server.url}/")
    models = httpx.get(f"{server.url}/v1/models").json()
    options = page.eval_on_selector_all(
        "[data-testid=model-select] option", "options => options.map(o => o.value)"
    )
    # Only the models with tags: the feature extractors (mfcc, random_*) have no taggram.
    assert options == [model["name"] for model in models["models"] if model["tags"]]
    assert len(options) < len(models["models"])
    assert page.input_value("[data-testid=model-select]") == models["default_model"]

    upload(page, recording)
    canvas = page.locator("[data-testid=taggram]")
    listed = page.locator("[data-testid=top-tags] li").all_inner_texts()
    rows, columns = (
        int(canvas.get_attribute("data-rows")),
        int(canvas.get_attribute("data-columns")),
    )
    row_tags = json.loads(canvas.get_attribute("data-row-tags") or "[]")
    # Rows: the tags listed, best clip score first, as the API ranks them.
    assert rows == len(listed) == len(row_tags) == 10
    assert row_tags == [item["tag"] for item in expected["tags"][:rows]]
    assert listed[0].split()[0] == expected["tags"][0]["tag"]
    assert all(
        text.split("\n")[0].strip() == tag for text, tag in zip(listed, row_tags, strict=True)
    )
    # Columns: one per patch of the API's taggram.
    assert columns == expected["patches"] == len(expected["taggram"]["patches"])

    # The colours are the API's values: viridis gets lighter as the value grows, so the cells'
    # luminance must rank like the taggram's probabilities (and not be one flat colour).
    pixels = np.array(canvas.evaluate(READ_CELLS), dtype=float)
    assert pixels.shape == (rows, columns, 3)
    assert len({tuple(rgb) for rgb in pixels.reshape(-1, 3)}) > rows
    luminance = pixels @ np.array([0.2126, 0.7152, 0.0722])
    index = {tag: i for i, tag in enumerate(expected["taggram"]["tags"])}
    values = np.array(
        [
            [patch["values"][index[tag]] for patch in expected["taggram"]["patches"]]
            for tag in row_tags
        ]
    )
    assert rank_correlation(luminance.ravel(), values.ravel()) > 0.95
    assert np.unravel_index(luminance.argmax(), luminance.shape) == np.unravel_index(
        values.argmax(), values.shape
    )

    # Clicking a cell plays from that patch; the cursor follows the player.
    centres = json.loads(canvas.get_attribute("data-cell-centres") or "{}")
    scale = page.evaluate("devicePixelRatio")
    canvas.click(position={"x": centres["x"][5] / scale, "y": centres["y"][0] / scale})
    patch = expected["taggram"]["patches"][5]
    page.wait_for_function("() => document.querySelector('[data-testid=player]').currentTime > 0")
    played = page.evaluate("document.querySelector('[data-testid=player]').currentTime")
    assert patch["start_seconds"] - 0.5 <= played <= patch["end_seconds"] + 0.5
    page.evaluate("document.querySelector('[data-testid=player]').pause()")
    assert page.locator("[data-testid=cursor]").is_visible()

    page.select_option("[data-testid=rows-select]", "0")  # all tags
    assert int(canvas.get_attribute("data-rows")) == len(expected["taggram"]["tags"])
    assert page.locator("[data-testid=top-tags] li").count() == len(expected["taggram"]["tags"])
    page.select_option("[data-testid=rows-select]", "10")
    # Pointing at a listed tag outlines its row on the heat-map.
    page.hover("[data-testid=top-tags] li >> nth=2")
    mark, box = page.locator("#row-mark").bounding_box(), canvas.bounding_box()
    assert mark is not None and box is not None
    assert mark["y"] < box["y"] + centres["y"][2] / scale < mark["y"] + mark["height"]
    page.screenshot(path=str(screenshot_path(tmp_path, "web-page.png")), full_page=True)
    assert screenshot_path(tmp_path, "web-page.png").stat().st_size > 10_000
    assert console.unexpected() == []


def test_choosing_another_model_retags_the_file(
    server: Server, music_wav: Path, page: Page, console: ConsoleLog
) -> None:
    recording = music_wav
    other = "MSD_musicnn"
    expected = api_answer(server, recording, model=other)
    open_page(page, f"{server.url}/")
    upload(page, recording)
    with page.expect_response(lambda response: f"model={other}" in response.url) as answer:
        page.select_option("[data-testid=model-select]", other)
    assert answer.value.ok
    page.wait_for_function(
        "tag => document.querySelector('[data-testid=top-tags] li .tag')?.textContent === tag",
        arg=expected["tags"][0]["tag"],
    )
    assert expected["model"]["name"] in page.inner_text("[data-testid=summary]")
    assert console.unexpected() == []


def test_a_truncated_recording_shows_the_decoders_warning(
    server: Server, music_wav: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """A WAV cut at 11 s of its declared 30 s is tagged on what decodes, with a warning in the
    response; the page showed an 11 s taggram and never said the file was cut short."""
    cut = tmp_path / "cut.wav"
    cut.write_bytes(music_wav.read_bytes()[:2_000_000])
    (warning,) = api_answer(server, cut)["warnings"]
    open_page(page, f"{server.url}/")
    upload(page, cut)
    assert f"warning: {warning}" in page.inner_text("[data-testid=summary]")
    assert console.unexpected() == []


def test_a_file_that_is_not_audio_shows_the_api_error(
    server: Server, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        refused = client.post("/v1/tag", files={"file": ("notes.txt", NOT_AUDIO)})
    assert refused.status_code == 415  # unsupported_format: the bytes are no audio container
    message = refused.json()["detail"]
    open_page(page, f"{server.url}/")
    page.set_input_files(
        "[data-testid=file-input]",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": NOT_AUDIO}],
    )
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "notes.txt" in error.inner_text()
    assert message in error.inner_text()
    assert not page.locator("[data-testid=taggram]").is_visible()
    page.screenshot(path=str(screenshot_path(tmp_path, "web-page-error.png")))
    assert console.unexpected(f"{FAILED_REQUEST} 415") == []


@pytest.mark.parametrize(
    "body",
    [
        # RFC 9457 problem details, the error format the API is moving to.
        {"type": "about:blank", "title": "Payload Too Large", "status": 413,
         "detail": "the audio lasts 1200 s, more than the limit of 900 s",
         "code": "audio_too_long"},
        {"message": "the audio lasts 1200 s, more than the limit of 900 s"},
        {"error": {"code": "audio_too_long",
                   "message": "the audio lasts 1200 s, more than the limit of 900 s"}},
    ],
)  # fmt: skip
def test_error_bodies_of_either_format_are_shown(
    server: Server, music_mp3: Path, page: Page, console: ConsoleLog, body: dict[str, Any]
) -> None:
    """The message is shown whether it sits in ``detail`` (RFC 9457), ``message`` or
    ``error.message`` (this service's envelope today, also tested against the real server in
    this module); the answer here is made up in the browser, as only its shape matters."""
    open_page(page, f"{server.url}/")
    page.route(
        TAG_REQUEST,
        lambda route: route.fulfill(
            status=413, content_type="application/problem+json", body=json.dumps(body)
        ),
    )
    page.set_input_files("[data-testid=file-input]", str(music_mp3))
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "more than the limit of 900 s" in error.inner_text()
    assert console.unexpected(f"{FAILED_REQUEST} 413") == []


def _overloaded(server: Server, audio: Path, page: Page) -> Locator:
    """Open the page, have the browser answer every tag request with a 429 (the queue is full,
    Retry-After 2 s) and choose ``audio``: the shown error."""
    body = {"error": {"code": "overloaded", "message": "the MTT_musicnn queue is full"}}
    open_page(page, f"{server.url}/")
    page.route(
        TAG_REQUEST,
        lambda route: route.fulfill(status=429, headers={"Retry-After": "2"}, json=body),
    )
    page.set_input_files("[data-testid=file-input]", str(audio))
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    return error


def test_overloaded_service_says_when_to_retry(
    server: Server, music_mp3: Path, page: Page, console: ConsoleLog
) -> None:
    """A 429 (the queue is full) shows the API's message and its Retry-After; a real overload is
    not reproducible on demand, so the browser answers for the service here."""
    error = _overloaded(server, music_mp3, page)
    assert "the MTT_musicnn queue is full" in error.inner_text()
    assert "Try again in 2 s" in error.inner_text()
    assert console.unexpected(f"{FAILED_REQUEST} 429") == []


def test_choosing_the_same_file_again_after_a_429_tags_it(
    server: Server, music_mp3: Path, page: Page, console: ConsoleLog
) -> None:
    """Told "Try again in 2 s", a person opens the file chooser again and picks the same file:
    the browser fires no change for the file the input already held, so nothing was sent and
    the error stayed."""
    _overloaded(server, music_mp3, page)
    page.unroute(TAG_REQUEST)  # the queue has room again
    with page.expect_file_chooser() as chooser:
        page.click("[data-testid=drop-zone]")
    chooser.value.set_files(str(music_mp3))
    page.wait_for_selector("[data-testid=taggram][data-rows]", timeout=TIMEOUT_MS)
    assert not page.locator("[data-testid=error]").is_visible()
    assert console.unexpected(f"{FAILED_REQUEST} 429") == []


def test_api_key_is_sent_and_kept_for_the_session_only(
    server: Server, song: Path, browser: Browser, page: Page, console: ConsoleLog
) -> None:
    open_page(page, f"{server.url}/")
    page.click("[data-testid=api-key-panel] summary")
    page.fill("[data-testid=api-key]", "test-key-123")
    with page.expect_request("**/v1/models") as listing:
        page.press("[data-testid=api-key]", "Enter")
    assert listing.value.headers["authorization"] == "Bearer test-key-123"
    with page.expect_request(TAG_REQUEST) as tagging:
        upload(page, song)
    assert tagging.value.headers["authorization"] == "Bearer test-key-123"
    page.reload()
    assert page.input_value("[data-testid=api-key]") == "test-key-123"
    assert page.evaluate("Object.keys(localStorage).length") == 0
    # A new browser session starts without it.
    fresh = browser.new_context()
    other = fresh.new_page()
    other.goto(f"{server.url}/")
    assert other.input_value("[data-testid=api-key]") == ""
    fresh.close()
    assert console.unexpected() == []


def test_a_service_asking_for_a_key_opens_the_key_field(
    secured_server: SecuredServer, page: Page, console: ConsoleLog
) -> None:
    """With API keys on, ``GET /v1/models`` answers 401 (a problem+json) until a key is given;
    the page itself stays open, asks for the key, and sends it."""
    page.goto(f"{secured_server.url}/")
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "API key is required" in error.inner_text()
    # The key field is open, and named: a screen reader called it by its placeholder, "only if
    # the service asks for one".
    field = page.get_by_role("textbox", name="API key", exact=True)
    assert field.is_visible()
    field.fill(secured_server.tag_key)
    field.press("Enter")
    page.wait_for_selector("[data-testid=model-select]:enabled", timeout=TIMEOUT_MS)
    assert error.is_hidden()
    assert console.unexpected(f"{FAILED_REQUEST} 401") == []


@pytest.fixture(scope="module")
def prefixed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server configured for the /taggram prefix (one model, no warm-up: quick to start),
    refusing audio over a minute so that a long recording gets the real "too long" error."""
    env = {
        "TAGGRAM_ROOT_PATH": "/taggram",
        "TAGGRAM_MODELS": "MTT_musicnn",
        "TAGGRAM_WARMUP": "0",
        "TAGGRAM_MAX_DURATION_SECONDS": "60",
    }
    with running_server(require_repository(), tmp_path_factory.mktemp("logs"), env=env) as server:
        yield server


def test_page_works_under_a_path_prefix_behind_a_proxy(
    prefixed_server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with prefix_proxy(prefixed_server.url, "/taggram") as proxy:
        assert httpx.get(f"{proxy}/taggram/openapi.json").json()["servers"] == [{"url": "/taggram"}]
        open_page(page, f"{proxy}/taggram/")
        upload(page, song)
        assert page.locator("[data-testid=top-tags] li").count() == 10
    # Every request the page made went through the prefix (the audio player's blob: excepted).
    fetched = [url for url in requested if url.startswith("http")]
    assert fetched and all(url.startswith(f"{proxy}/taggram/") for url in fetched), fetched
    assert console.unexpected() == []


def test_docs_load_swagger_ui_from_the_service_alone(
    prefixed_server: Server, page: Page, console: ConsoleLog
) -> None:
    """/docs works offline: Swagger UI's script, style sheet and icon come from the service
    (through the prefix), nothing from a CDN or any other host."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with prefix_proxy(prefixed_server.url, "/taggram") as proxy:
        page.goto(f"{proxy}/taggram/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/v1/tag/batch']")
        operations = page.locator(".opblock").count()
    assert operations >= 10  # the document was fetched and rendered, not a blank page
    fetched = [url for url in requested if not url.startswith(("data:", "blob:"))]
    assert any(url.endswith("/swagger-ui-bundle.js") for url in fetched), fetched
    assert all(url.startswith(f"{proxy}/taggram/") for url in fetched), fetched
    assert console.unexpected() == []


def test_every_link_under_a_prefix_answers_despite_the_trailing_slash_rule(
    prefixed_server: Server,
) -> None:
    """A trailing slash is a 404 since Starlette's redirect_slashes went off: the prefix typed
    bare or with its slash (``https://host/taggram``, as a person types it) still opens the page,
    and every link of the page and of /docs answers through the proxy. The pod itself, which
    the Kubernetes probes and Prometheus call without the prefix, answers on the manifests'
    paths."""
    links = re.compile(r"""(?:href|src|url)\s*[=:]\s*['"]([^'"#]+)['"]""")
    with prefix_proxy(prefixed_server.url, "/taggram") as proxy:
        for typed in ("/taggram", "/taggram/"):
            page = httpx.get(f"{proxy}{typed}")
            assert page.status_code == 200 and '<base href="/taggram/">' in page.text, typed
        for path in ("/taggram/", "/taggram/docs"):
            found = links.findall(httpx.get(f"{proxy}{path}").text)
            assert "v1/models" in found or "/taggram/openapi.json" in found, found
            for link in found:  # relative ones resolve against <base href="/taggram/">
                url = httpx.URL(f"{proxy}/taggram/").join(link)
                assert httpx.get(url).status_code == 200, (path, link)
    for path in ("/healthz", "/readyz", "/metrics"):  # k8s/base: probes and ServiceMonitor
        assert httpx.get(f"{prefixed_server.url}{path}").status_code == 200, path


def test_the_summary_says_the_rate_and_a_single_patch_as_a_person_would(
    server: Server, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """One second of 44.1 kHz audio is one patch: the summary said "44.10 kHz" and "1 patches"
    (the command line's heading says "1 patch" since 0.1)."""
    short = tmp_path / "one-second.wav"
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    sf.write(short, 0.3 * tone, 44100)
    open_page(page, f"{server.url}/")
    upload(page, short)
    summary = page.inner_text("[data-testid=summary]")
    assert " · 44.1 kHz mono · WAV · 1 patch · " in summary, summary
    if has_shared():  # 8-bit, 22.05 kHz stereo
        page.set_input_files("[data-testid=file-input]", str(SHARED_AUDIO / "clip_07.wav"))
        other = page.locator("[data-testid=summary]", has_text="clip_07.wav")
        other.wait_for(timeout=TIMEOUT_MS)
        assert " · 22.05 kHz stereo · WAV · 11 patches · " in other.inner_text()
    assert console.errors == []


def test_the_summary_gives_a_sound_under_a_second_its_length(
    server: Server, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """A 40 ms click (a sound effect of a catalogue) was summarised as "0.0 s"."""
    click = tmp_path / "click.wav"
    sf.write(click, np.hanning(640).astype(np.float32), 16000)
    open_page(page, f"{server.url}/")
    upload(page, click)
    assert page.inner_text("[data-testid=summary]").startswith("click.wav\n0.04 s · ")
    assert console.errors == []


def test_too_long_audio_shows_the_limit(
    prefixed_server: Server, music_wav: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    # Over the server's 60 s: the 128 s full_01.ogg where ../shared is, else 90 s of the music.
    track = SHARED_AUDIO / "full_01.ogg" if has_shared() else long_track(music_wav, tmp_path, 90)
    with prefix_proxy(prefixed_server.url, "/taggram") as proxy:
        open_page(page, f"{proxy}/taggram/")
        page.set_input_files("[data-testid=file-input]", str(track))
        error = page.locator("[data-testid=error]")
        error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert track.name in error.inner_text()
    assert "audio_too_long" in error.inner_text()
    assert "60" in error.inner_text()  # the limit, as the API states it
    assert console.unexpected(f"{FAILED_REQUEST} 413") == []


def test_on_a_phone_the_taggram_is_drawn_at_its_shown_width_and_clicks_hit_their_cell(
    server: Server, song: Path, phone: Page, console: ConsoleLog
) -> None:
    """At 360 px (a common phone) the heat-map was drawn 320 px wide and shown 298 px wide: the
    browser squeezed it, while clicks, the tooltip, the cursor and the row outline are placed in
    drawing pixels, so each landed up to 22 px off the cell shown (a click on the last cell
    played the one before)."""
    expected = api_answer(server, song)
    open_page(phone, f"{server.url}/")
    upload(phone, song)
    canvas = phone.locator("[data-testid=taggram]")
    box = canvas.bounding_box()
    assert box is not None
    drawn = phone.evaluate("document.querySelector('[data-testid=taggram]').width")
    # Click the last cell where the screen shows it: the drawing scaled to the box.
    centres = json.loads(canvas.get_attribute("data-cell-centres") or "{}")
    shown = box["width"] / drawn
    canvas.click(position={"x": centres["x"][-1] * shown, "y": centres["y"][0] * shown})
    phone.wait_for_function("() => document.querySelector('[data-testid=player]').currentTime > 0")
    played = phone.evaluate("document.querySelector('[data-testid=player]').currentTime")
    phone.evaluate("document.querySelector('[data-testid=player]').pause()")
    patch = expected["taggram"]["patches"][-1]
    assert patch["start_seconds"] <= played <= patch["end_seconds"]
    assert abs(drawn / phone.evaluate("devicePixelRatio") - box["width"]) <= 1
    assert console.unexpected() == []


def test_on_a_phone_the_tooltip_of_the_last_cell_stays_on_the_page(
    server: Server, song: Path, phone: Page, console: ConsoleLog
) -> None:
    """The tooltip always opened right of the pointer: at the last cells of a phone's heat-map
    it ran past the screen's edge, cut off, and made the page 450 px wide (a sideways scroll)."""
    open_page(phone, f"{server.url}/")
    upload(phone, song)
    canvas = phone.locator("[data-testid=taggram]")
    centres = json.loads(canvas.get_attribute("data-cell-centres") or "{}")
    scale = phone.evaluate("devicePixelRatio")
    canvas.hover(position={"x": centres["x"][-1] / scale, "y": centres["y"][0] / scale})
    tooltip = phone.locator("#tooltip")
    tooltip.wait_for(state="visible")
    box = tooltip.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert phone.evaluate("document.documentElement.scrollWidth") == 360
    assert console.unexpected() == []


def test_the_heat_map_is_operable_by_keyboard(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """Tab reaches the heat-map; the arrow keys move an outlined cell whose tag, probability and
    time a screen reader is told; Enter and Space play from it. The canvas took no focus and no
    key: only a mouse could explore the taggram or play from a patch."""
    expected = api_answer(server, song)
    open_page(page, f"{server.url}/")
    upload(page, song)
    canvas = page.locator("[data-testid=taggram]")
    row_tags = json.loads(canvas.get_attribute("data-row-tags") or "[]")
    heat_map = page.get_by_role("application", name=re.compile(r"^Taggram of 10 tags over 11 "))
    assert heat_map.count() == 1
    hint = heat_map.get_attribute("aria-describedby")
    assert hint and "arrow keys" in page.inner_text(f"#{hint}")
    page.focus("[data-testid=rows-select]")
    for _ in range(20):  # past the player's controls
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.testid") == "taggram":
            break
    assert page.evaluate("document.activeElement.dataset.testid") == "taggram"

    index = expected["taggram"]["tags"].index
    patches = expected["taggram"]["patches"]
    readout, mark = page.locator("[data-testid=announcer]"), page.locator("#cell-mark")
    assert readout.get_attribute("aria-live") == "polite"

    def said(row: int, column: int) -> str:
        patch = patches[column]
        value = patch["values"][index(row_tags[row])]
        start, end = patch["start_seconds"], patch["end_seconds"]
        return f"{row_tags[row]}, {value:.3f}, {start:.1f} to {end:.1f} seconds"

    assert mark.is_visible() and readout.inner_text() == said(0, 0)
    for key in ["ArrowUp", "ArrowLeft"] + ["ArrowRight"] * 5 + ["ArrowDown"]:
        page.keyboard.press(key)
    assert readout.inner_text() == said(1, 5)  # moved, and never past the first row or column
    centres = json.loads(canvas.get_attribute("data-cell-centres") or "{}")
    scale = page.evaluate("devicePixelRatio")
    box, outline = canvas.bounding_box(), mark.bounding_box()
    assert box is not None and outline is not None
    x, y = box["x"] + centres["x"][5] / scale, box["y"] + centres["y"][1] / scale
    assert outline["x"] < x < outline["x"] + outline["width"]
    assert outline["y"] < y < outline["y"] + outline["height"]
    assert page.locator("#tooltip").inner_text().startswith(f"{row_tags[1]}: ")
    page.keyboard.press("End")
    assert readout.inner_text() == said(1, len(patches) - 1)
    page.keyboard.press("Home")
    assert readout.inner_text() == said(1, 0)

    scrolled = page.evaluate("scrollY")
    for key, column in (("Enter", 5), ("Space", 6)):
        page.keyboard.press("Home")
        for _ in range(column):
            page.keyboard.press("ArrowRight")
        page.evaluate("document.querySelector('[data-testid=player]').currentTime = 0")
        page.keyboard.press(key)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=player]').currentTime > 0"
        )
        played = page.evaluate("document.querySelector('[data-testid=player]').currentTime")
        page.evaluate("document.querySelector('[data-testid=player]').pause()")
        patch = patches[column]
        assert patch["start_seconds"] - 0.5 <= played <= patch["end_seconds"], (key, played)
    assert page.evaluate("scrollY") == scrolled  # Space played, it did not scroll the page
    assert page.locator("[data-testid=cursor]").is_visible()
    page.keyboard.press("Shift+Tab")  # leaving hides the outline and the tooltip
    assert mark.is_hidden() and page.locator("#tooltip").is_hidden()
    assert console.unexpected() == []


def test_focus_rings_and_field_borders_stand_out_from_the_page(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """WCAG 1.4.11 asks 3:1 of what shows a control and its focus: the focus ring was a light
    teal on white (1.67:1) and the fields' borders a pale grey (1.25:1)."""
    open_page(page, f"{server.url}/")
    upload(page, song)
    style = "(element, name) => getComputedStyle(element)[name]"
    white = "rgb(255, 255, 255)"
    page.focus("[data-testid=file-input]")
    drop = page.locator("[data-testid=drop-zone]")
    assert contrast(drop.evaluate(style, "outlineColor"), white) >= 3
    page.focus("[data-testid=rows-select]")
    page.keyboard.press("Tab")  # into the player's controls, then on to the heat-map
    while page.evaluate("document.activeElement.dataset.testid") != "taggram":
        page.keyboard.press("Tab")
    canvas = page.locator("[data-testid=taggram]")
    assert canvas.evaluate(style, "outlineStyle") == "solid"
    assert contrast(canvas.evaluate(style, "outlineColor"), white) >= 3
    for field in ("model-select", "rows-select", "api-key"):
        border = page.locator(f"[data-testid={field}]").evaluate(style, "borderTopColor")
        assert contrast(border, white) >= 3, field
    assert console.unexpected() == []


def test_in_forced_colours_the_marks_over_the_heat_map_keep_theirs(
    server: Server, song: Path, browser: Browser, console: ConsoleLog
) -> None:
    """A high-contrast theme (forced colours) recolours the page but not the canvas: the cursor
    turned white (lost on yellow cells), the row and cell outlines black (lost on purple ones)
    and the clip probability bars went blank."""
    with browser_page(browser, console, forced_colors="active") as page:
        open_page(page, f"{server.url}/")
        upload(page, song)
        page.evaluate("document.querySelector('[data-testid=player]').currentTime = 12")
        page.locator("[data-testid=cursor]").wait_for()
        page.hover("[data-testid=top-tags] li >> nth=2")
        page.focus("[data-testid=taggram]")
        page.keyboard.press("ArrowRight")
        style = "(element, name) => getComputedStyle(element)[name]"
        red, green = "rgb(255, 77, 79)", "rgb(53, 183, 121)"
        assert page.locator("#cursor").evaluate(style, "backgroundColor") == red
        assert page.locator("#row-mark").evaluate(style, "borderTopColor") == red
        assert "rgb(29, 31, 43)" in page.locator("#cell-mark").evaluate(style, "boxShadow")
        fill = page.locator("[data-testid=top-tags] .bar span").first
        assert fill.evaluate(style, "backgroundColor") == green
    assert console.unexpected() == []


@pytest.mark.parametrize(("motion", "spinning"), [("reduce", False), ("no-preference", True)])
def test_asked_for_less_motion_the_spinner_stands_still(
    server: Server,
    browser: Browser,
    console: ConsoleLog,
    motion: Literal["reduce", "no-preference"],
    spinning: bool,
) -> None:
    """The spinner turned forever while tagging, whatever the system's "reduce motion"."""
    with browser_page(browser, console, reduced_motion=motion) as page:
        open_page(page, f"{server.url}/")
        # Computed although hidden: the spinner is shown only while a file is tagged.
        turn = page.locator(".spinner").evaluate("e => getComputedStyle(e).animationName")
        fade = page.locator("[data-testid=drop-zone]").evaluate(
            "e => getComputedStyle(e).transitionDuration"
        )
    assert (turn == "spin", fade != "0s") == (spinning, spinning)
    assert console.unexpected() == []


def test_the_page_has_headings_to_find_its_parts_by(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """Screen reader users jump between headings: the page had one, "Top tags" (level 2), and
    neither a level-1 heading naming it nor one for the heat-map."""
    open_page(page, f"{server.url}/")
    upload(page, song)
    headings = page.locator("h1, h2, h3, h4, h5, h6, [role=heading]")
    found = [
        (tag, " ".join(text.split()))
        for tag, text in headings.evaluate_all("hs => hs.map(h => [h.tagName, h.innerText])")
    ]
    assert found == [("H1", "taggram"), ("H2", "Taggram"), ("H2", "Top tags clip probability")]
    assert page.get_by_role("heading", name="Taggram", exact=True, level=2).is_visible()
    assert console.unexpected() == []


def test_on_a_phone_the_heat_maps_hint_runs_under_its_title(
    server: Server, song: Path, phone: Page, console: ConsoleLog
) -> None:
    """The hint (how to play from a cell) sat beside "Taggram" in a column a third of the
    screen wide, five lines of two or three words."""
    open_page(phone, f"{server.url}/")
    upload(phone, song)
    title = phone.get_by_role("heading", name="Taggram", exact=True).bounding_box()
    hint = phone.locator("#taggram-hint").bounding_box()
    assert title is not None and hint is not None
    assert hint["y"] >= title["y"] + title["height"] - 2  # under the title, not beside it
    assert abs(hint["x"] - title["x"]) <= 1
    assert console.unexpected() == []


def test_the_key_panel_closes_on_escape_and_when_the_focus_leaves_it(
    secured_server: SecuredServer, page: Page, console: ConsoleLog
) -> None:
    """The open key panel lies over the model picker: Tab from the key field went on to the
    file and model fields with the panel still covering the model's, and Escape did nothing.
    Entering the key closed the panel with the focus in it, which fell back to the page's top."""
    page.goto(f"{secured_server.url}/")
    panel = page.locator("[data-testid=api-key-panel]")
    field = page.get_by_role("textbox", name="API key", exact=True)
    page.locator("[data-testid=error]").wait_for(state="visible", timeout=TIMEOUT_MS)
    assert field.is_visible() and field.evaluate("field => field === document.activeElement")
    # The focus gone nowhere on the page (to another window, to copy the key from): still open.
    field.evaluate("field => field.blur()")
    assert panel.evaluate("panel => panel.open")
    field.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "file-input"
    assert not panel.evaluate("panel => panel.open")
    page.keyboard.press("Shift+Tab")  # back on the panel's summary: Enter opens it
    page.keyboard.press("Enter")
    field.focus()
    page.keyboard.press("Escape")
    assert not panel.evaluate("panel => panel.open")
    focused = "document.activeElement.tagName"
    assert page.evaluate(focused) == "SUMMARY"
    page.keyboard.press("Enter")
    field.fill(secured_server.tag_key)
    field.press("Enter")
    page.wait_for_selector("[data-testid=model-select]:enabled", timeout=TIMEOUT_MS)
    assert not panel.evaluate("panel => panel.open") and page.evaluate(focused) == "SUMMARY"
    assert console.unexpected(f"{FAILED_REQUEST} 401") == []


def test_a_screen_reader_is_told_when_the_file_is_tagged(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """The status line ("Tagging …") was the page's only live region, appearing with its text
    and hidden when done: a screen reader was told neither that tagging began (often) nor that
    it had ended, nor what came out."""
    expected = api_answer(server, song)
    open_page(page, f"{server.url}/")
    announcer = page.locator("[data-testid=announcer]")
    assert announcer.get_attribute("aria-live") == "polite"
    assert announcer.evaluate("e => !e.closest('[hidden]')")  # there before anything is said
    announcer.evaluate(
        "e => { window.heard = []; new MutationObserver(() => window.heard.push(e.textContent))"
        ".observe(e, { childList: true, characterData: true, subtree: true }); }"
    )
    upload(page, song)
    top = ", ".join(item["tag"] for item in expected["tags"][:3])
    done = f"{song.name} tagged with MTT_musicnn; strongest tags: {top}"
    page.wait_for_function(
        "text => document.querySelector('#announcer').textContent === text", arg=done
    )
    assert page.evaluate("window.heard")[0] == f"Tagging {song.name} with MTT_musicnn…"
    assert console.unexpected() == []


# The brightest pixel of the tag names' column, drawn left of the first cell, as [r, g, b].
READ_LABEL_INK = """canvas => {
  const { x, y } = JSON.parse(canvas.dataset.cellCentres);
  const left = Math.floor(x[0] - (x[1] - x[0]) / 2) - 2;
  const half = Math.floor((y[1] - y[0]) / 2);
  const pixels = canvas.getContext("2d").getImageData(0, y[0] - half, left, 2 * half).data;
  let best = [0, 0, 0];
  for (let i = 0; i < pixels.length; i += 4) {
    const rgb = [pixels[i], pixels[i + 1], pixels[i + 2]];
    if (pixels[i + 3] > 200 && Math.min(...rgb) > Math.min(...best)) best = rgb;
  }
  return best;
}"""


def test_a_system_in_dark_mode_gets_a_dark_page_with_readable_text(
    server: Server, song: Path, browser: Browser, console: ConsoleLog
) -> None:
    """The page was white whatever the system's dark mode, a glare at night beside every other
    dark window; in dark mode its text, the heat-map's tag names included, must still read."""
    with browser_page(browser, console, color_scheme="dark") as page:
        open_page(page, f"{server.url}/")
        upload(page, song)
        style = "(element, name) => getComputedStyle(element)[name]"
        background = page.locator("body").evaluate(style, "backgroundColor")
        card = page.locator(".heatmap").evaluate(style, "backgroundColor")
        ink = page.locator("body").evaluate(style, "color")
        muted = page.locator("#model-info").evaluate(style, "color")
        labels = page.locator("[data-testid=taggram]").evaluate(READ_LABEL_INK)
    black = "rgb(0, 0, 0)"
    assert contrast(background, black) < 1.5 and contrast(card, black) < 1.5  # dark
    assert contrast(ink, card) >= 4.5 and contrast(muted, card) >= 4.5
    assert contrast(f"rgb({labels[0]}, {labels[1]}, {labels[2]})", card) >= 4.5
    assert console.unexpected() == []


def test_a_recording_the_browser_cannot_play_is_drawn_and_says_so(
    server: Server, song: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """The service decodes AU (and AIFF, WMA…), which Chromium does not play: the taggram came
    with a greyed player reading 0:00, and a click on a cell moved the cursor but played
    nothing, without a word why."""
    audio, rate = sf.read(song, frames=10 * 22050)
    recording = tmp_path / "clip.au"
    sf.write(recording, audio, rate, format="AU")
    open_page(page, f"{server.url}/")
    upload(page, recording)
    note = page.locator("[data-testid=player-note]")
    note.wait_for(timeout=TIMEOUT_MS)  # once the browser has tried to load it
    assert note.inner_text() == (
        "This browser cannot play clip.au: the taggram is shown without sound."
    )
    assert page.locator("[data-testid=player]").is_hidden()
    canvas = page.locator("[data-testid=taggram]")
    centres = json.loads(canvas.get_attribute("data-cell-centres") or "{}")
    scale = page.evaluate("devicePixelRatio")
    canvas.click(position={"x": centres["x"][2] / scale, "y": centres["y"][0] / scale})
    assert page.locator("[data-testid=cursor]").is_hidden()  # no promise of playback
    page.set_input_files("[data-testid=file-input]", str(song))  # one it plays: the player is back
    page.locator("[data-testid=summary]", has_text=song.name).wait_for(timeout=TIMEOUT_MS)
    assert page.locator("[data-testid=player]").is_visible() and note.is_hidden()
    assert console.unexpected() == []


def test_a_recording_of_just_under_two_minutes_is_not_one_minute_sixty(
    server: Server, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """119.6 s was summarised as "1:60": the minutes were cut before the seconds were rounded."""
    recording = tmp_path / "almost-two-minutes.wav"
    rate = 8000
    tone = np.sin(2 * np.pi * 440 * np.arange(int(119.6 * rate)) / rate).astype(np.float32)
    sf.write(recording, 0.3 * tone, rate, subtype="PCM_16")
    open_page(page, f"{server.url}/")
    upload(page, recording)
    assert page.inner_text("[data-testid=summary]").startswith(f"{recording.name}\n2:00 · ")
    assert console.unexpected() == []


def test_in_a_long_recording_a_cell_gives_its_time_as_the_axis_does(
    server: Server, music_wav: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """Past a minute the axis reads m:ss, but a cell's tooltip and what a screen reader was told
    gave plain seconds: "765.1–768.1 s" beside an axis ending at 12:00."""
    recording = long_track(music_wav, tmp_path, 90)
    expected = api_answer(server, recording)
    open_page(page, f"{server.url}/")
    upload(page, recording)
    row_tags = json.loads(page.get_attribute("[data-testid=taggram]", "data-row-tags") or "[]")
    page.focus("[data-testid=taggram]")
    page.keyboard.press("End")
    patch = expected["taggram"]["patches"][-1]
    value = patch["values"][expected["taggram"]["tags"].index(row_tags[0])]

    def clock(seconds: float) -> str:
        minutes, rest = divmod(int(seconds + 0.5), 60)  # rounded half up, as Math.round
        return f"{minutes}:{rest:02d}"

    start, end = clock(patch["start_seconds"]), clock(patch["end_seconds"])
    assert page.inner_text("#tooltip") == f"{row_tags[0]}: {value:.3f} · {start}–{end}"
    assert (
        page.inner_text("[data-testid=announcer]")
        == f"{row_tags[0]}, {value:.3f}, {start} to {end}"
    )
    assert console.unexpected() == []


def test_the_player_is_named_for_screen_readers(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """The ``<audio>`` element had no accessible name: a screen reader said only "audio" (or
    nothing) for the player, not what it plays."""
    open_page(page, f"{server.url}/")
    upload(page, song)
    # The name in the browser's accessibility tree, which screen readers read.
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")
    names = {node.get("name", {}).get("value") for node in tree["nodes"]}
    assert f"Recording: {song.name}" in names
    assert console.unexpected() == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_asked_for_more_contrast_the_page_gives_it(
    server: Server, browser: Browser, console: ConsoleLog, scheme: Literal["light", "dark"]
) -> None:
    """The system's "increase contrast" (``prefers-contrast: more``) changed nothing: grey text
    at 4.9:1 and card borders at 1.25:1, the same as for everyone."""
    style = "(element, name) => getComputedStyle(element)[name]"
    with browser_page(browser, console, contrast="more", color_scheme=scheme) as page:
        open_page(page, f"{server.url}/")
        card = page.locator(".picker").evaluate(style, "backgroundColor")
        muted = page.locator("#model-info").evaluate(style, "color")
        border = page.locator(".picker").evaluate(style, "borderTopColor")
        drop = page.locator("[data-testid=drop-zone]").evaluate(style, "borderTopColor")
        field = page.locator("[data-testid=model-select]").evaluate(style, "borderTopColor")
    assert contrast(muted, card) >= 7  # WCAG's enhanced contrast (AAA)
    assert contrast(border, card) >= 3 and contrast(drop, card) >= 3
    assert contrast(field, card) >= 4.5
    assert console.unexpected() == []


# Height in CSS pixels of the ink of the first row's tag name (drawn left of the first cell).
READ_LABEL_HEIGHT = """canvas => {
  const { x, y } = JSON.parse(canvas.dataset.cellCentres);
  const left = Math.floor(x[0] - (x[1] - x[0]) / 2) - 2;
  const half = Math.floor((y[1] - y[0]) / 2);
  const pixels = canvas.getContext("2d").getImageData(0, y[0] - half, left, 2 * half).data;
  const inked = new Set();
  for (let i = 3; i < pixels.length; i += 4) {
    if (pixels[i] > 100) inked.add(Math.floor(i / 4 / left)); // an opaque pixel: its row
  }
  return inked.size / devicePixelRatio;
}"""


def test_the_heat_maps_labels_follow_the_browsers_font_size(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """The tag names and time axis were drawn at a fixed 12 px and the page's text set in pixels:
    browser zoom enlarged them, a larger default font size (the browser's setting for people who
    need bigger text) did nothing."""
    open_page(page, f"{server.url}/")
    upload(page, song)
    canvas = page.locator("[data-testid=taggram]")
    before = canvas.evaluate(READ_LABEL_HEIGHT)
    size = "getComputedStyle(document.querySelector('[data-testid=summary]')).fontSize"
    assert page.evaluate(size) == "14px"
    # The browser's default font size from 16 px to 24 px, after the taggram was drawn.
    page.context.new_cdp_session(page).send("Page.setFontSizes", {"fontSizes": {"standard": 24}})
    page.wait_for_function(f"() => {size} === '21px'", timeout=10_000)
    page.wait_for_function(
        f"h => ({READ_LABEL_HEIGHT})(document.querySelector('[data-testid=taggram]')) > 1.3 * h",
        arg=before,
        timeout=10_000,
    )
    assert console.unexpected() == []


# Drops ``names`` (files of the page's base64 ``audio``) and ``text`` on ``selector`` as a person's
# drag would; returns whether the page took the drop (else the browser acts on it).
DROP = """async ([selector, names, audio, text]) => {
  const bytes = Uint8Array.from(atob(audio), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  for (const name of names) data.items.add(new File([bytes], name, { type: "audio/wav" }));
  if (text) data.setData("text/plain", text);
  const target = document.querySelector(selector);
  const over = new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true });
  target.dispatchEvent(over);
  const lit = target.closest("[data-testid=drop-zone]")?.classList.contains("dragging") ?? false;
  const drop = new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true });
  target.dispatchEvent(drop);
  return { taken: over.defaultPrevented && drop.defaultPrevented, lit };
}"""


def test_files_dropped_anywhere_are_tagged_one_at_a_time_and_text_is_not_taken(
    server: Server, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """A file dropped beside the drop zone (on the heat-map of the last one) was opened by the
    browser in the page's place, the taggram lost; of two files dropped the second was dropped
    without a word; dragged text lit the drop zone up, and its drop did nothing."""
    sound = tmp_path / "tone.wav"
    sf.write(sound, 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    audio = base64.b64encode(sound.read_bytes()).decode()
    open_page(page, f"{server.url}/")
    drop_zone = "[data-testid=drop-zone]"
    with page.expect_request(TAG_REQUEST):
        assert page.evaluate(DROP, [drop_zone, ["a.wav", "b.wav"], audio, ""])["taken"]
    page.locator("[data-testid=summary]", has_text="a.wav").wait_for()
    assert page.inner_text("#drop-hint") == "a.wav (the first of 2 files: one at a time)"
    with page.expect_request(TAG_REQUEST):
        assert page.evaluate(DROP, ["[data-testid=taggram]", ["c.wav"], audio, ""])["taken"]
    page.locator("[data-testid=summary]", has_text="c.wav").wait_for()
    assert page.evaluate(DROP, [drop_zone, [], audio, "some words"]) == {
        "taken": False,
        "lit": False,
    }
    assert console.unexpected() == []


def test_while_the_next_file_is_tagged_the_last_ones_taggram_is_greyed(
    server: Server, song: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """Tagging the next file (a slow upload, a long recording) left the last file's taggram at
    full strength under "Tagging b.wav…", easily taken for b.wav's; after a change of model, for
    the new model's."""
    other = tmp_path / "b.wav"
    sf.write(other, 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    open_page(page, f"{server.url}/")
    upload(page, song)
    result = page.locator("#result")
    held: list[Route] = []
    page.route(TAG_REQUEST, lambda route: held.append(route))  # answered below
    page.set_input_files("[data-testid=file-input]", str(other))
    page.wait_for_function("() => !document.querySelector('[data-testid=status]').hidden")
    assert result.get_attribute("aria-busy") == "true"
    assert float(result.evaluate("e => getComputedStyle(e).opacity")) < 0.6
    while not held:  # the route's handler runs while Playwright waits
        page.wait_for_timeout(50)
    held[0].continue_()
    page.locator("[data-testid=summary]", has_text="b.wav").wait_for()
    assert result.get_attribute("aria-busy") is None
    assert result.evaluate("e => getComputedStyle(e).opacity") == "1"
    assert console.unexpected() == []


def test_offline_the_page_says_the_browser_is_offline(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """With the network gone the page said "The service could not be reached. Is it running?",
    sending people to check a service that was running; back online, the next file is tagged."""
    open_page(page, f"{server.url}/")
    page.context.set_offline(True)
    page.set_input_files("[data-testid=file-input]", str(song))
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible")
    assert "This browser is offline" in error.inner_text()
    page.context.set_offline(False)
    upload(page, song)
    assert error.is_hidden()
    assert console.unexpected("net::ERR_INTERNET_DISCONNECTED") == []


def test_page_up_and_down_move_ten_patches(
    server: Server, music_wav: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """Only the arrow keys, Home and End moved the heat-map's cell: the middle of a 15 min
    recording (301 patches) was 150 presses of an arrow away."""
    recording = long_track(music_wav, tmp_path, 90)  # 30 patches
    open_page(page, f"{server.url}/")
    upload(page, recording)
    page.focus("[data-testid=taggram]")
    readout = page.locator("[data-testid=announcer]")
    page.keyboard.press("Home")
    page.keyboard.press("PageDown")
    assert readout.inner_text().endswith(", 0:30 to 0:33")  # the 11th patch, 30 s on
    for _ in range(3):
        page.keyboard.press("PageDown")  # stops at the last patch
    page.keyboard.press("PageUp")
    assert readout.inner_text().endswith(", 1:00 to 1:03")  # the 20th of 30
    assert console.unexpected() == []


def test_a_reload_keeps_the_model_picked(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """After a reload the picker was back on the default model, and the next file was tagged
    with it although another had been picked for this tab."""
    open_page(page, f"{server.url}/")
    page.select_option("[data-testid=model-select]", "MSD_musicnn")
    page.reload()
    page.wait_for_selector("[data-testid=model-select]:enabled")
    assert page.input_value("[data-testid=model-select]") == "MSD_musicnn"
    with page.expect_request(TAG_REQUEST) as tagging:
        upload(page, song)
    assert "model=MSD_musicnn" in tagging.value.url
    assert console.unexpected() == []


def test_an_earlier_files_late_answer_does_not_replace_the_later_files(
    server: Server, song: Path, page: Page, console: ConsoleLog, tmp_path: Path
) -> None:
    """Two files chosen in a row: the first one's answer, held back until the second's has been
    drawn, must not replace it (the request is aborted when the next file is chosen)."""
    later = tmp_path / "later.wav"
    sf.write(later, 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    open_page(page, f"{server.url}/")
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # answered below

    page.route(TAG_REQUEST, hold_the_first)
    page.set_input_files("[data-testid=file-input]", str(song))
    page.wait_for_function("() => !document.querySelector('[data-testid=status]').hidden")
    upload(page, later)
    assert "later.wav" in page.inner_text("[data-testid=summary]")
    held[0].continue_()
    page.wait_for_timeout(3000)  # long enough for the first file's tagging to have come back
    assert "later.wav" in page.inner_text("[data-testid=summary]")
    assert page.locator("[data-testid=error]").is_hidden()
    assert console.unexpected() == []


def test_a_file_chosen_before_the_model_list_came_says_the_default_model(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """On a slow network a file chosen before ``GET v1/models`` answered was "Tagging clip.wav
    with loading……": the picker's placeholder taken for a model's name."""
    listing: list[Route] = []
    tagging: list[Route] = []
    page.route("**/v1/models", lambda route: listing.append(route))  # a slow network: held
    page.route(TAG_REQUEST, lambda route: tagging.append(route))
    page.goto(f"{server.url}/")
    with page.expect_request(TAG_REQUEST) as sent:
        page.set_input_files("[data-testid=file-input]", str(song))
    assert "model=" not in sent.value.url  # the service's default
    assert page.inner_text("[data-testid=status]") == f"Tagging {song.name} with the default model…"
    while not tagging:  # the route's handler runs while Playwright waits
        page.wait_for_timeout(50)
    tagging[0].continue_()
    listing[0].continue_()
    page.locator("[data-testid=summary]", has_text=song.name).wait_for()
    assert console.unexpected() == []


def test_a_file_chosen_before_the_model_list_came_uses_the_model_picked_in_this_tab(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """After a reload on a slow network, a file chosen before the list came went to the
    service's default, while the picker then showed the model this tab had picked."""
    open_page(page, f"{server.url}/")
    page.select_option("[data-testid=model-select]", "MSD_musicnn")
    listing: list[Route] = []
    page.route("**/v1/models", lambda route: listing.append(route))  # a slow network: held
    page.reload()
    with page.expect_request(TAG_REQUEST) as sent:
        page.set_input_files("[data-testid=file-input]", str(song))
    assert "model=MSD_musicnn" in sent.value.url
    assert page.inner_text("[data-testid=status]") == f"Tagging {song.name} with MSD_musicnn…"
    while not listing:  # the route's handler runs while Playwright waits
        page.wait_for_timeout(50)
    listing[0].continue_()
    page.locator("[data-testid=summary]", has_text="MSD_musicnn").wait_for()
    assert page.input_value("[data-testid=model-select]") == "MSD_musicnn"
    assert console.unexpected() == []


def test_a_model_gone_after_a_restart_leaves_the_picker(
    server: Server, song: Path, page: Page, console: ConsoleLog
) -> None:
    """The service restarted without a model the page had listed: tagging with it was refused
    (404 model_not_found) and the picker went on offering it until the page was reloaded. The
    restarted service's answers are made up in the browser: the real one keeps its models."""
    models = httpx.get(f"{server.url}/v1/models").json()
    gone = "MSD_musicnn"
    remaining = {**models, "models": [m for m in models["models"] if m["name"] != gone]}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        refused = tag_file(client, song, model=f"{gone}_gone")
    assert refused.status_code == 404
    open_page(page, f"{server.url}/")
    page.select_option("[data-testid=model-select]", gone)
    page.route("**/v1/models", lambda route: route.fulfill(json=remaining))
    page.route(
        re.compile(rf"/v1/tag\?.*model={gone}\b"),
        lambda route: route.fulfill(status=404, json=refused.json()),
    )
    page.set_input_files("[data-testid=file-input]", str(song))
    page.locator("[data-testid=error]", has_text="model_not_found").wait_for()
    page.wait_for_function(
        "gone => ![...document.querySelectorAll('[data-testid=model-select] option')]"
        ".some((option) => option.value === gone)",
        arg=gone,
    )
    assert page.input_value("[data-testid=model-select]") == models["default_model"]
    assert console.unexpected(f"{FAILED_REQUEST} 404") == []


def test_a_custom_model_made_while_the_page_is_open_is_listed_on_coming_back(
    server: Server, page: Page, console: ConsoleLog
) -> None:
    """The picker listed the models of the page's load only: a tagger created from a terminal
    (POST v1/models) while the page was open was missing from it until a reload, and a deleted
    one stayed. The list is fetched again when the window takes the focus or the tab is shown."""
    open_page(page, f"{server.url}/")
    option = page.locator("[data-testid=model-select] option[value=made_meanwhile]")
    assert option.count() == 0
    kinds = ("tone", "noise") * 2
    with httpx.Client(base_url=server.url, timeout=300) as client:
        created = client.post(
            "/v1/models",
            data={"name": "made_meanwhile", "labels": list(kinds), "features": "mfcc"},
            files=[
                ("files", (f"{k}_{i}.wav", synthetic_example(k, i))) for i, k in enumerate(kinds)
            ],
        )
        assert created.status_code == 201, created.text
        try:
            page.evaluate("window.dispatchEvent(new Event('focus'))")
            option.wait_for(state="attached")
            assert option.inner_text() == "made_meanwhile (custom)"
            default = httpx.get(f"{server.url}/v1/models").json()["default_model"]
            assert page.input_value("[data-testid=model-select]") == default  # pick kept
        finally:
            assert client.delete("/v1/models/made_meanwhile").status_code == 204
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    option.wait_for(state="detached")
    assert console.unexpected() == []
