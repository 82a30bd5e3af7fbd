"""A catalogue run against a real server on 127.0.0.1 that is killed, resumed, and outlives a
server restart; then ``--local``, shards + merge, every output format and the batch endpoint are
checked against what that run produced."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from typer.testing import CliRunner

from taggram.catalogue.records import Record
from taggram.catalogue.writers import read_records
from taggram.cli import app
from taggram.client import AsyncTaggramClient, RequestRejectedError, TaggramClient
from taggram.service import launcher as server_module
from tests.catalogue.conftest import Catalogue
from tests.support.server import Server, running_server

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
MAX_BATCH_FILES = 8
# Short waits between tries, many tries: the client outlasts a server restart (model load).
RETRY = ["--retries", "40", "--max-retry-delay", "2", "--concurrency", "2", "--no-progress"]


@dataclass(frozen=True)
class Scenario:
    records: dict[str, Record]
    killed_at: int  # records in the output when the first run was killed
    stopped_at: int  # records in the output when the first server stopped
    resumed_alive: bool  # the resumed run was still going when its server went away
    resumed_rc: int
    resumed_log: str
    server: Server  # the second server, still running for the other tests


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, which Python turns into
    KeyboardInterrupt. A shell's background job (CI started with ``&``) ignores SIGINT, and an
    ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(source: Path, output: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "taggram", "catalogue", str(source), "--output", str(output)]
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*command, "--url", url, *RETRY],
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,
        )


def _lines(output: Path) -> int:
    return output.read_bytes().count(b"\n") if output.is_file() else 0


def _wait_for_lines(output: Path, count: int, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120
    while (lines := _lines(output)) < count:
        assert process.poll() is None, f"catalogue exited early ({process.returncode})"
        assert time.monotonic() < deadline, f"only {lines} records after 120 s"
        time.sleep(0.05)
    return lines


@pytest.fixture(scope="module")
def scenario(
    catalogue: Catalogue,
    repository: Path,
    server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("restart")
    output = work / "results.jsonl"
    env = {**server_env, "TAGGRAM_MAX_BATCH_FILES": str(MAX_BATCH_FILES)}
    port = server_module.free_port()
    url = f"http://127.0.0.1:{port}"
    runs: list[subprocess.Popen[bytes]] = []
    with pytest.MonkeyPatch.context() as patch:
        # Both servers on one port, as a restarted pod behind the same address.
        patch.setattr(server_module, "free_port", lambda: port)
        try:
            (work / "first").mkdir()
            with running_server(repository, work / "first", env):
                runs.append(first := _start(catalogue.root, output, url, work / "first.log"))
                _wait_for_lines(output, 20, first)
                first.kill()  # SIGKILL: no clean-up, possibly a half-written line
                first.wait()
                killed_at = len(read_records(output))
                runs.append(resumed := _start(catalogue.root, output, url, work / "resumed.log"))
                _wait_for_lines(output, killed_at + 5, resumed)
            stopped_at = _lines(output)
            resumed_alive = resumed.poll() is None
            (work / "second").mkdir()
            with running_server(repository, work / "second", env) as server:
                rc = resumed.wait(timeout=240)
                yield Scenario(
                    records={record.id: record for record in read_records(output)},
                    killed_at=killed_at,
                    stopped_at=stopped_at,
                    resumed_alive=resumed_alive,
                    resumed_rc=rc,
                    resumed_log=(work / "resumed.log").read_text(),
                    server=server,
                )
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()


def test_run_was_killed_resumed_and_survived_a_server_restart(
    scenario: Scenario, catalogue: Catalogue
) -> None:
    total = len(catalogue.good) + len(catalogue.bad)
    assert 0 < scenario.killed_at < scenario.stopped_at < total
    assert scenario.resumed_alive, "the resumed run finished before its server was stopped"
    assert scenario.resumed_rc == 0, scenario.resumed_log
    skipped = re.search(r"skipped (\d+)", scenario.resumed_log)
    assert skipped is not None and int(skipped.group(1)) == scenario.killed_at
    assert "POST /v1/tag" in scenario.server.log()  # the second server did part of the work


def test_every_good_file_once_every_bad_file_with_its_reason(
    scenario: Scenario, catalogue: Catalogue, model: str
) -> None:
    output_ids = list(scenario.records)
    assert sorted(output_ids) == sorted([*catalogue.good, *catalogue.bad])  # each exactly once
    for track_id in catalogue.good:
        record = scenario.records[track_id]
        assert record.status == "ok", record.error
        assert record.model == model and record.duration_s and 2.9 < record.duration_s < 6.1
        assert len(record.top_tags) == min(10, len(record.probabilities))
        assert record.top_tags[0].probability == max(record.probabilities.values())
    for track_id in catalogue.bad:
        record = scenario.records[track_id]
        assert record.status == "error" and record.error is not None
        assert record.error.code and record.error.message and not record.error.retryable


def _assert_same_tags(got: Record, expected: Record) -> None:
    assert got.status == expected.status, (got.error, expected.error)
    if expected.status == "error":
        assert got.error and expected.error and got.error.code == expected.error.code
        return
    assert [t.tag for t in got.top_tags[:5]] == [t.tag for t in expected.top_tags[:5]]
    assert got.probabilities.keys() == expected.probabilities.keys()
    for tag, value in expected.probabilities.items():
        assert abs(got.probabilities[tag] - value) <= TOLERANCE, tag


def _subset(catalogue: Catalogue, good: int, bad: int) -> list[str]:
    return sorted(catalogue.good)[::7][:good] + sorted(catalogue.bad)[:bad]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_local_gives_the_same_tags_as_the_server(
    scenario: Scenario, catalogue: Catalogue, repository: Path, model: str, tmp_path: Path
) -> None:
    ids = _subset(catalogue, good=10, bad=3)
    manifest = catalogue.manifest(catalogue.root / "local-manifest.csv", ids)
    output = tmp_path / "local.jsonl"
    summary = _invoke(
        "catalogue", str(manifest), "--local", "--repository", str(repository),
        "--model", model, "--output", str(output), "--no-progress",
    )  # fmt: skip
    local = {record.id: record for record in read_records(output)}
    assert sorted(local) == sorted(ids)
    assert "done 10, failed 3, skipped 0" in summary
    assert all(track_id in summary for track_id in ids if track_id in catalogue.bad)
    for track_id in ids:
        _assert_same_tags(local[track_id], scenario.records[track_id])


def test_local_waits_out_a_full_queue_as_the_client_waits_out_429(
    catalogue: Catalogue,
    repository: Path,
    model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A queue that holds one track at a time: concurrent tracks are refused as ``overloaded``
    (retryable) and retried in-process until every one is tagged."""
    # 3-6 s tracks cut 2 or 3 patches: a queue of 3 holds any one of them, never two.
    ids = [i for i, path in sorted(catalogue.good.items()) if sf.info(str(path)).duration > 3.1]
    ids = ids[:6]
    monkeypatch.setenv("TAGGRAM_MAX_QUEUE_PATCHES", "3")
    manifest = catalogue.manifest(tmp_path / "manifest.csv", ids)
    output = tmp_path / "local.jsonl"
    summary = _invoke(
        "catalogue", str(manifest), "--local", "--repository", str(repository),
        "--model", model, "--output", str(output), "--concurrency", "4", "--no-progress",
    )  # fmt: skip
    assert "done 6, failed 0" in summary
    assert all(record.status == "ok" for record in read_records(output))


def test_shards_cover_the_manifest_once_in_any_format_and_merge(
    scenario: Scenario, catalogue: Catalogue, tmp_path: Path
) -> None:
    ids = _subset(catalogue, good=12, bad=2)
    manifest = catalogue.manifest(tmp_path / "manifest.csv", ids)
    parts = [tmp_path / name for name in ("part-0.jsonl", "part-1.csv", "part-2.parquet")]
    for index, part in enumerate(parts):
        shard = f"{index}/{len(parts)}"
        _invoke(
            "catalogue", str(manifest), "--url", scenario.server.url, "--shard", shard,
            "--output", str(part), "--no-progress",
        )  # fmt: skip
    shard_ids = [[record.id for record in read_records(part)] for part in parts]
    assert sorted(i for part in shard_ids for i in part) == sorted(ids)  # once, all of them
    assert all(shard_ids), "every shard got some tracks"
    merged = tmp_path / "merged.jsonl"
    _invoke("merge", *map(str, parts), str(parts[0]), "--output", str(merged))  # a duplicate too
    merged_records = {record.id: record for record in read_records(merged)}
    assert sorted(merged_records) == sorted(ids)
    for track_id in ids:
        _assert_same_tags(merged_records[track_id], scenario.records[track_id])


def test_batch_endpoint_answers_each_file_in_order(
    scenario: Scenario, catalogue: Catalogue
) -> None:
    good = sorted(catalogue.good)[:3]
    bad = sorted(catalogue.bad)[:2]
    order = [good[0], bad[0], good[1], bad[1], good[2]]
    paths = [(catalogue.good | catalogue.bad)[track_id] for track_id in order]
    with TaggramClient(scenario.server.url) as client:
        outcomes = client.tag_batch(paths)
        with pytest.raises(RequestRejectedError) as too_many:
            client.tag_batch([paths[0]] * (MAX_BATCH_FILES + 1))
        single = client.tag(paths[0])
    assert too_many.value.status == 400
    assert [item["filename"] for item in outcomes] == [path.name for path in paths]
    for track_id, item in zip(order, outcomes, strict=True):
        expected = scenario.records[track_id]
        if track_id in catalogue.bad:
            assert item["result"] is None and expected.error is not None
            assert item["error"]["code"] == expected.error.code and item["error"]["status"] < 500
            continue
        assert item["error"] is None
        got = {tag["tag"]: tag["probability"] for tag in item["result"]["tags"]}
        for tag, value in expected.probabilities.items():
            assert abs(got[tag] - value) <= TOLERANCE
    batched = {tag["tag"]: tag["probability"] for tag in outcomes[0]["result"]["tags"]}
    assert all(abs(batched[t["tag"]] - t["probability"]) <= TOLERANCE for t in single["tags"])


def test_async_client_matches_the_sync_client(scenario: Scenario, catalogue: Catalogue) -> None:
    path = catalogue.good[sorted(catalogue.good)[5]]

    async def both() -> list[Any]:
        async with AsyncTaggramClient(scenario.server.url) as client:
            return list(
                await asyncio.gather(
                    client.tag(path, top_k=3), client.tag_batch([path], top_k=3), client.models()
                )
            )

    single, batch, models = asyncio.run(both())
    assert len(single["tags"]) == 3
    assert [t["tag"] for t in single["tags"]] == [t["tag"] for t in batch[0]["result"]["tags"]]
    assert models["models"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_so_keeps_its_records_and_resumes(
    scenario: Scenario, catalogue: Catalogue, tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C, or SIGTERM as Kubernetes sends a Job's pod, ends a run with one line saying what
    to do and the shell's status for the signal; both used to end it without a word."""
    output = tmp_path / "results.jsonl"
    first = _start(catalogue.root, output, scenario.server.url, tmp_path / "first.log")
    try:
        _wait_for_lines(output, 5, first)
        first.send_signal(stop)
        assert first.wait(timeout=60) == 128 + stop
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    log = (tmp_path / "first.log").read_text()
    assert f"interrupted ({stop.name})" in log and "run the same command again to resume" in log
    assert "Traceback" not in log, log
    kept = len(read_records(output))
    assert 0 < kept < len(catalogue.good) + len(catalogue.bad)
    resumed = _start(catalogue.root, output, scenario.server.url, tmp_path / "resumed.log")
    assert resumed.wait(timeout=240) == 0
    assert {record.id for record in read_records(output)} == set(scenario.records)
    assert f"skipped {kept}" in (tmp_path / "resumed.log").read_text()
