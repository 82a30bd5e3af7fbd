"""Sources, shards, output files, the retry policy and `--local` usage errors: the parts that run
no model and need no server."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from collections import Counter
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from taggram.catalogue import records, writers
from taggram.catalogue.runner import Summary, pending
from taggram.catalogue.shard import Shard, select
from taggram.catalogue.sources import AUDIO_EXTENSIONS, SourceError, Track, load_source
from taggram.catalogue.writers import Format, finalize, open_appender, read_records
from taggram.cli import app
from taggram.client import RetryPolicy
from tests.support.paths import require_bugs


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_folder_source_is_recursive_and_keeps_only_audio(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "sub/b.MP3", "sub/deeper/c.flac", "notes.txt", "sub/cover.jpg")
    source = load_source(tmp_path)
    assert [t.id for t in source.tracks] == ["a.wav", "sub/b.MP3", "sub/deeper/c.flac"]
    assert all(t.path.is_file() for t in source.tracks)
    assert source.not_audio == ["notes.txt", "sub/cover.jpg"]


def test_folder_source_takes_every_extension_the_decoder_accepts(tmp_path: Path) -> None:
    names = [f"track{extension}" for extension in sorted(AUDIO_EXTENSIONS)]
    _touch(tmp_path, *names)
    assert {".m4a", ".webm", ".wma", ".ac3", ".aac", ".opus"} <= AUDIO_EXTENSIONS
    assert [t.id for t in load_source(tmp_path).tracks] == sorted(names)


def test_symlinked_folders_are_followed_once_and_loops_are_safe(tmp_path: Path) -> None:
    library, root = tmp_path / "library", tmp_path / "root"
    _touch(library, "album/01.m4a", "album/02.m4a")
    _touch(root, "single.mp3")
    (root / "albums").mkdir()
    (root / "albums" / "linked").symlink_to(library / "album", target_is_directory=True)
    (root / "albums" / "again").symlink_to(library / "album", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # would recurse forever
    tracks = load_source(root).tracks
    # The album is reached by two links: its files count once, under the first link's path.
    assert [t.id for t in tracks] == ["albums/again/01.m4a", "albums/again/02.m4a", "single.mp3"]


def test_a_link_to_a_missing_file_is_a_track_not_skipped_as_not_audio(tmp_path: Path) -> None:
    """A dangling ``song.mp3`` link (the file moved, a mount not there) was listed as skipped
    'not audio (by extension)'; it is a track, which the run records as unreadable."""
    _touch(tmp_path, "a.wav")
    (tmp_path / "gone.mp3").symlink_to(tmp_path / "moved" / "gone.mp3")
    (tmp_path / "folder.mp3").mkdir()  # a folder named like audio is no track
    source = load_source(tmp_path)
    assert [t.id for t in source.tracks] == ["a.wav", "gone.mp3"]
    assert source.not_audio == []


def test_a_pipe_named_like_audio_is_skipped_as_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO named ``live.wav`` was listed as "not audio (by extension)", the extension being
    the one thing right about it; it is not a regular file (never opened: that would wait for
    a writer). Named otherwise, or reached by a link, it is reported alike."""
    _touch(tmp_path, "a.wav")
    os.mkfifo(tmp_path / "live.wav")
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "link.mp3").symlink_to(tmp_path / "live.wav")
    source = load_source(tmp_path)
    assert [t.id for t in source.tracks] == ["a.wav"]
    assert source.not_regular == ["link.mp3", "live.wav"]
    assert source.not_audio == ["pipe.txt"]
    lines = Summary(total=1, not_audio=["pipe.txt"], not_regular=["live.wav"]).report()
    assert lines.splitlines()[2:] == [
        "  not audio: 1 file skipped (by extension)",
        "    pipe.txt",
        "  not a regular file: 1 file skipped (a named pipe, socket or device; never opened)",
        "    live.wav",
    ]


def test_manifests_resolve_paths_beside_themselves(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,path,extra\nt1,audio/one.wav,x\nt2,/abs/two.mp3,y\n")
    rows = [{"id": "t1", "path": "audio/one.wav"}, {"id": "t2", "path": "/abs/two.mp3"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    expected = [Track("t1", tmp_path / "audio/one.wav"), Track("t2", Path("/abs/two.mp3"))]
    assert load_source(tmp_path / "m.csv").tracks == expected
    assert load_source(tmp_path / "m.jsonl").tracks == expected


def test_manifests_with_a_byte_order_mark_or_a_legacy_code_page(tmp_path: Path) -> None:
    text = "id,path\nBeyoncé – Halo,music/halo.m4a\n"
    expected = [Track("Beyoncé – Halo", tmp_path / "music/halo.m4a")]
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel "CSV UTF-8"
    assert load_source(tmp_path / "bom.csv").tracks == expected
    (tmp_path / "bom.jsonl").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"id": expected[0].id, "path": "music/halo.m4a"}).encode()
    )
    assert load_source(tmp_path / "bom.jsonl").tracks == expected
    (tmp_path / "excel.csv").write_bytes(text.encode("cp1252"))  # Excel's plain CSV on Windows
    with pytest.raises(SourceError, match="--encoding"):
        load_source(tmp_path / "excel.csv")
    assert load_source(tmp_path / "excel.csv", "cp1252").tracks == expected
    with pytest.raises(SourceError, match="unknown encoding"):
        load_source(tmp_path / "excel.csv", "no-such-codec")


def test_excel_manifest_of_the_shared_bugs_reads_like_plain_utf8() -> None:
    manifest = require_bugs() / "18_manifest_excel_utf8_bom.csv"
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbf")
    tracks = load_source(manifest).tracks
    assert tracks and all(track.id and track.path for track in tracks)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("m.csv", "id,path\nt1,a.wav\nt1,b.wav\n", "more than once"),
        ("m.csv", "id,path\nt1,\n", "lacks"),
        ("m.csv", "name,file\nt1,a.wav\n", "must name the columns id and path"),
        ("m.csv", "id,path\nt1,a\0.wav\n", "NUL byte"),
        # JSON null is no value: it was read as the text "None", a file of that name
        ("m.jsonl", '{"id": "t1", "path": null}\n', "lacks"),
        ("m.jsonl", '{"id": null, "path": "a.wav"}\n', "lacks"),
    ],
)
def test_bad_manifests_are_refused(tmp_path: Path, name: str, text: str, problem: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SourceError, match=problem):
        load_source(tmp_path / name)


def _local_run(tmp_path: Path, *args: str) -> tuple[int, str]:
    _touch(tmp_path / "music", "a.wav")
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        ["catalogue", str(tmp_path / "music"), "--local", "--output", str(output), *args],
    )
    assert not output.exists()  # refused before anything ran
    return result.exit_code, result.stderr


def test_local_without_a_model_repository_is_a_usage_error(tmp_path: Path) -> None:
    """Run outside the clone (no ``model_repository`` there): one line and exit 2, no traceback,
    since a restarted pod would fail the same way."""
    code, stderr = _local_run(tmp_path, "--repository", str(tmp_path / "absent"))
    assert code == 2
    assert stderr.count("\n") == 1 and "does not exist" in stderr and "Traceback" not in stderr


def test_local_with_a_provider_that_is_not_installed_is_a_usage_error(
    tmp_path: Path, repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGGRAM_PROVIDERS", "NoSuchExecutionProvider")
    code, stderr = _local_run(tmp_path, "--repository", str(repository))
    assert code == 2
    assert stderr.count("\n") == 1 and "are not installed (TAGGRAM_PROVIDERS)" in stderr


def test_local_with_an_unknown_model_is_a_usage_error(tmp_path: Path, repository: Path) -> None:
    code, stderr = _local_run(tmp_path, "--repository", str(repository), "--model", "no_such")
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.count("no_such") == 1 and "Traceback" not in stderr


def test_shards_cover_every_track_exactly_once_and_stably() -> None:
    tracks = [Track(f"artist{i % 7}/track{i}.mp3", Path(f"{i}.mp3")) for i in range(1000)]
    for count in (1, 2, 3, 8):
        parts = [select(tracks, Shard(index, count)) for index in range(count)]
        ids = [t.id for part in parts for t in part]
        assert sorted(ids) == sorted(t.id for t in tracks)  # every id, none twice
        if count > 1:
            assert all(len(part) > 1000 / count / 2 for part in parts)  # roughly balanced
    # A track's shard depends on its id only: adding tracks moves nobody.
    grown = [*tracks, *(Track(f"new{i}", Path(f"n{i}")) for i in range(100))]
    old_ids = {t.id for t in select(tracks, Shard(1, 3))}
    assert old_ids <= {t.id for t in select(grown, Shard(1, 3))}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3/3", r"shard index must be in \[0, 3\), got 3"),
        ("-1/2", r"shard index must be in \[0, 2\), got -1"),
        ("1", "shard must look like i/N"),
        ("a/b", "shard must look like i/N"),
        ("1/0", "shard count N of i/N must be at least 1, got '1/0'"),
        ("0/0", "shard count N of i/N must be at least 1"),  # was "must be in [0, 0)"
        ("1/-2", "shard count N of i/N must be at least 1"),  # was "must be in [0, -2)"
    ],
)
def test_bad_shard_specs_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Shard.parse(text)


def _ok(track_id: str, score: float) -> records.Record:
    probabilities = {"rock": score, "piano": 1 - score, "voice": 0.5}
    return records.success(
        Track(track_id, Path(f"{track_id}.wav")),
        model="m",
        version="1",
        duration_s=3.0,
        probabilities=probabilities,
        top_k=2,
        embedding=("pool5", [0.25, -1.5]),
        warnings=[f"{track_id} is truncated"],
    )


@pytest.mark.parametrize("fmt", list(Format))
def test_outputs_round_trip_resume_and_compact(tmp_path: Path, fmt: Format) -> None:
    output = tmp_path / f"results.{fmt.value}"
    tracks = [Track(name, Path(f"{name}.wav")) for name in "abc"]
    written = [
        _ok("a", 0.9),
        records.failure(
            Track("b", Path("b.wav")), "undecodable_audio", "bad\nheader", retryable=False
        ),
        records.failure(Track("c", Path("c.wav")), "unreachable", "refused", retryable=True),
    ]
    with open_appender(output, fmt) as appender:  # an interrupted run: no finalize
        for record in written:
            appender.write(record)
    assert read_records(output) == written
    earlier: Counter[str] = Counter()
    assert pending(tracks, output, fmt, False, earlier=earlier) == tracks[2:]  # "c" is retried
    assert earlier == {"ok": 1, "error": 1}  # "a" tagged, "b" failed for good
    assert read_records(output)[1].error == records.ErrorInfo(
        code="undecodable_audio", message="bad header", retryable=False
    )
    with open_appender(output, fmt) as appender:  # the resumed run re-tries "c"
        appender.write(_ok("c", 0.2))
    finalize(output, fmt)
    best = {record.id: record for record in read_records(output)}
    assert [r.status for r in best.values()] == ["ok", "error", "ok"]
    assert len(read_records(output)) == len(best)  # one record per id after the run
    assert [(t.tag, t.probability) for t in best["a"].top_tags] == [("rock", 0.9), ("voice", 0.5)]
    assert best["a"].embedding == [0.25, -1.5]
    assert (best["a"].warnings, best["b"].warnings) == (["a is truncated"], [])


def _full(track_id: str) -> records.Record:
    """A record the size of a real one: 50 tag probabilities and a 200-d embedding."""
    probabilities = {f"tag {index}": index / 50 for index in range(50)}
    return records.success(
        Track(track_id, Path(f"{track_id}.wav")),
        model="m",
        version="1",
        duration_s=30.0,
        probabilities=probabilities,
        top_k=10,
        embedding=("penultimate", [index / 200 for index in range(200)]),
    )


@pytest.mark.parametrize("fmt", list(Format))
def test_resume_and_compaction_never_hold_the_whole_output(tmp_path: Path, fmt: Format) -> None:
    """A shard of a large catalogue (60,000 tracks of 8 pods) resumed in a 1 GiB pod: reading
    every record to find what is left, and again to compact, took about 13 kB per track."""
    output = tmp_path / f"results.{fmt.value}"
    tracks = [Track(f"t{index}", Path(f"t{index}.wav")) for index in range(3000)]
    with open_appender(output, fmt) as appender:  # a run that lost the service half-way
        for track in tracks:
            appender.write(records.failure(track, "unreachable", "refused", retryable=True))
        for track in tracks[:-1]:
            appender.write(_full(track.id))
    tracemalloc.start()
    try:
        left = pending(tracks, output, fmt, retry_failed=False)
        finalize(output, fmt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert left == tracks[-1:]
    statuses = {r.id: r.status for r in read_records(output)}
    assert len(statuses) == len(read_records(output)) == 3000  # one record per id
    assert statuses == {track.id: "ok" for track in tracks[:-1]} | {"t2999": "error"}
    assert peak < 16_000_000  # 3,000 records whole are over 40 MB


def test_merge_never_holds_the_parts(tmp_path: Path) -> None:
    """The merge Job of a large catalogue read every part whole and kept every record until the
    merged file was written: about 13 kB per track, 6 GB for 500,000 tracks in a 2Gi pod."""
    parts = [tmp_path / "part-0.jsonl", tmp_path / "part-1.csv"]
    for shard, part in enumerate(parts):
        ids = [f"t{index}" for index in range(shard, 3000, 2)]
        writers.write_records(
            part, (_full(track_id) for track_id in ids), writers.infer_format(part)
        )
    merged = tmp_path / "merged.parquet"
    tracemalloc.start()
    try:
        result = CliRunner().invoke(app, ["merge", *map(str, parts), "--output", str(merged)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert result.stderr == "merged 2 files: 3000 tracks, 0 failed\n"
    assert len({record.id for record in read_records(merged)}) == 3000
    assert peak < 16_000_000  # 3,000 records whole are over 40 MB


def test_a_csv_row_cut_inside_a_quoted_newline_is_dropped_on_resume(tmp_path: Path) -> None:
    """A file named with a newline has it in its quoted id; a run killed just after that newline
    left an open quote, which the resumed run read as a row of garbage and refused (exit 2, the
    pod restarted forever), or appended its rows inside the quotes."""
    output = tmp_path / "results.csv"
    with open_appender(output, Format.csv) as appender:
        appender.write(_ok("a", 0.9))
        appender.write(_ok("new\nline.wav", 0.5))
    text = output.read_bytes()
    output.write_bytes(text[: text.index(b"new\n") + 4])  # killed after the newline
    tracks = [Track(name, Path(name)) for name in ("a", "new\nline.wav")]
    assert pending(tracks, output, Format.csv, retry_failed=False) == tracks[1:]
    with open_appender(output, Format.csv) as appender:
        appender.write(_ok("new\nline.wav", 0.5))
    assert [r.id for r in read_records(output)] == ["a", "new\nline.wav"]


# Records as written before the `warnings` field existed (shortened, otherwise verbatim).
_OLD_JSONL = (
    '{"id":"a","path":"a.wav","status":"ok","model":"m","version":"1","duration_s":3.0,'
    '"top_tags":[{"tag":"rock","probability":0.9}],"probabilities":{"rock":0.9},'
    '"embedding_layer":null,"embedding":null,"error":null}\n'
)
_OLD_CSV = (
    "id,path,status,model,version,duration_s,top_tags,probabilities,embedding_layer,embedding,"
    "error_code,error_message,error_retryable\n"
    'a,a.wav,ok,m,1,3.0,"[{""tag"": ""rock"", ""probability"": 0.9}]","{""rock"": 0.9}",,,,,\n'
)


@pytest.mark.parametrize("fmt", list(Format))
def test_outputs_written_before_warnings_existed_read_and_resume(
    tmp_path: Path, fmt: Format
) -> None:
    output = tmp_path / f"old.{fmt.value}"
    if fmt is Format.parquet:
        pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
        schema = writers._parquet_schema(pa)
        old_schema = schema.remove(schema.get_field_index("warnings"))
        row = {"id": "a", "path": "a.wav", "status": "ok", "probabilities": {"rock": 0.9}}
        pq.write_table(pa.Table.from_pylist([row], schema=old_schema), output)
    else:
        output.write_text(_OLD_JSONL if fmt is Format.jsonl else _OLD_CSV, encoding="utf-8")
    (old,) = read_records(output)
    assert (old.id, old.status, old.warnings) == ("a", "ok", [])
    with open_appender(output, fmt) as appender:  # a resumed run appends today's records
        appender.write(_ok("b", 0.2))
    finalize(output, fmt)
    assert [(r.id, r.warnings) for r in read_records(output)] == [
        ("a", []),
        ("b", ["b is truncated"]),
    ]


@pytest.mark.parametrize("fmt", [Format.jsonl, Format.csv])
def test_a_line_cut_by_a_kill_is_dropped(tmp_path: Path, fmt: Format) -> None:
    output = tmp_path / f"results.{fmt.value}"
    with open_appender(output, fmt) as appender:
        appender.write(_ok("a", 0.9))
    with output.open("a") as handle:
        handle.write('{"id": "b", "pa' if fmt is Format.jsonl else "b,b.wav,o")
    assert [r.id for r in read_records(output)] == ["a"]
    with open_appender(output, fmt) as appender:
        appender.write(_ok("b", 0.1))
    assert [r.id for r in read_records(output)] == ["a", "b"]


def test_retry_policy_honours_retry_after_and_backs_off() -> None:
    policy = RetryPolicy(attempts=4, backoff=1.0, max_delay=10.0)
    request = httpx.Request("POST", "http://127.0.0.1/v1/tag")
    busy = httpx.Response(429, headers={"Retry-After": "3"}, request=request)
    # Never sooner than asked, and jittered: tracks refused together do not retry in lockstep.
    busy_waits = {policy.next_wait(0, busy) for _ in range(20)}
    assert all(w is not None and 3.0 <= w <= 3.75 for w in busy_waits) and len(busy_waits) > 1
    slow = httpx.Response(503, headers={"Retry-After": "60"}, request=request)
    assert policy.next_wait(0, slow) == 10.0  # capped at max_delay
    assert policy.next_wait(3, busy) is None  # out of attempts
    starting = httpx.Response(503, request=request)  # no Retry-After: exponential, jittered
    assert 2.0 <= (policy.next_wait(2, starting) or 0) <= 4.0
    waits = [policy.next_wait(n, httpx.ConnectError("refused", request=request)) for n in range(3)]
    assert all(w is not None and 0.5 * 2**n <= w <= 2**n for n, w in enumerate(waits))
    assert policy.next_wait(0, httpx.Response(422, request=request)) is None
    assert policy.next_wait(0, httpx.Response(200, request=request)) is None


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host", "http://"])
def test_a_url_that_names_no_service_is_a_usage_error(tmp_path: Path, url: str) -> None:
    """Every track was retried and recorded unreachable (exit 1: a Job's pod restarted for
    ever on a typo); now refused before the source is read, as taggram tag refuses it."""
    _touch(tmp_path / "music", "a.wav")
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        ["catalogue", str(tmp_path / "music"), "--output", str(output), "--url", url],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2, result.output
    assert f"{url!r} is not a service URL: give http://host:port or https://host" in result.output
    assert not output.exists()


@pytest.mark.parametrize("delay", ["nan", "-1", "inf"])
def test_a_retry_delay_that_is_no_finite_wait_is_a_usage_error(tmp_path: Path, delay: str) -> None:
    """A NaN or negative --max-retry-delay failed in ``time.sleep`` at the first retry (an
    unreachable service), with a traceback; refused before the source is read."""
    with pytest.raises(ValueError, match="max_delay must be a finite number of seconds >= 0"):
        RetryPolicy(max_delay=float(delay))
    result = CliRunner().invoke(
        app,
        [
            *("catalogue", str(tmp_path / "absent"), "--output", str(tmp_path / "out.jsonl")),
            *("--url", "http://127.0.0.1:1", "--max-retry-delay", delay),
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--max-retry-delay'" in result.output
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("tracks.csv", "id,path\na,a.wav\n", "in csv: no 'status' column"),
        ("notes.jsonl", "hello\n", "in jsonl: line 1: Invalid JSON"),
        ("out.parquet", "not parquet", "in parquet: "),
    ],
)
def test_an_output_that_is_no_catalogue_output_is_a_usage_error(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    """The manifest given as --output by mistake, or any other file, was a KeyError or pydantic
    traceback when read to resume (after --local had loaded its models); now one line and exit
    2 before any track is sent, and the file is left as it was."""
    _touch(tmp_path / "music", "a.wav")
    output = tmp_path / name
    output.write_text(content)
    result = CliRunner().invoke(
        app,
        [
            *("catalogue", str(tmp_path / "music"), "--output", str(output)),
            *("--url", "http://127.0.0.1:1", "--retries", "1"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"taggram catalogue: --output {output} is not a catalogue output {problem}"
    )
    assert output.read_text() == content


def test_a_manifest_given_as_csv_output_is_refused_even_when_no_row_is_complete(
    tmp_path: Path,
) -> None:
    """Rows are read up to the last complete one (quotes balanced), so a manifest whose first
    row holds an open quote read as an output with no records, to be cut and appended to."""
    manifest = tmp_path / "tracks.csv"
    manifest.write_text('id,path\na,"a.wav\n')
    with pytest.raises(writers.OutputError, match="no 'status' column"):
        read_records(manifest)
    assert manifest.read_text() == 'id,path\na,"a.wav\n'


def test_merge_refuses_a_missing_input_or_one_that_is_no_output(tmp_path: Path) -> None:
    """A missing input merged as if empty (exit 0, its tracks silently lost); a manifest given
    as an input was a KeyError traceback."""
    good = tmp_path / "shard0.jsonl"
    writers.write_records(good, [_ok("a", 0.9)], Format.jsonl)
    manifest = tmp_path / "tracks.csv"
    manifest.write_text("id,path\na,a.wav\n")
    merged = tmp_path / "merged.jsonl"
    runner = CliRunner()
    missing = runner.invoke(
        app, ["merge", str(good), str(tmp_path / "absent.jsonl"), "--output", str(merged)]
    )
    assert missing.exit_code == 2, missing.output
    assert missing.stderr == f"taggram merge: no such file: {tmp_path / 'absent.jsonl'}\n"
    wrong = runner.invoke(app, ["merge", str(good), str(manifest), "--output", str(merged)])
    assert wrong.exit_code == 2, wrong.output
    assert wrong.stderr == (
        f"taggram merge: {manifest} is not a catalogue output in csv: no 'status' column\n"
    )
    assert not merged.exists()
    assert runner.invoke(app, ["merge", str(good), "--output", str(merged)]).exit_code == 0
    assert [record.id for record in read_records(merged)] == ["a"]


def test_merge_refuses_parts_of_different_models_or_layers(tmp_path: Path) -> None:
    """Parts of two runs, one per model, merged into one output: a track in both kept whichever
    model's tags came first, and nothing said the output mixed two models."""
    first, second = tmp_path / "part-0.jsonl", tmp_path / "part-1.jsonl"
    writers.write_records(first, [_ok("a", 0.9)], Format.jsonl)
    other = _ok("a", 0.2).model_copy(update={"model": "MTT_vgg", "embedding_layer": None})
    writers.write_records(second, [_ok("b", 0.5), other], Format.jsonl)
    merged = tmp_path / "merged.jsonl"
    result = CliRunner().invoke(app, ["merge", str(first), str(second), "--output", str(merged)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "taggram merge: the inputs mix models or layers: m with the pool5 embedding "
        f"({first}); MTT_vgg without embeddings ({second})\n"
    )
    assert not merged.exists()


def test_the_summary_counts_one_track_and_one_file_in_the_singular(tmp_path: Path) -> None:
    """It said "catalogue: 1 tracks", "not audio: 1 files skipped" and "merged 1 files"."""
    summary = Summary(total=1, not_audio=["notes.txt"])
    lines = summary.report().splitlines()
    assert lines[0] == "catalogue: 1 track; done 0, failed 0, skipped 0 (already in the output)"
    assert lines[2] == "  not audio: 1 file skipped (by extension)"
    part = tmp_path / "part.jsonl"
    writers.write_records(part, [_ok("a", 0.9)], Format.jsonl)
    merged = CliRunner().invoke(app, ["merge", str(part), "--output", str(tmp_path / "m.jsonl")])
    assert merged.stderr == "merged 1 file: 1 track, 0 failed\n"


def test_the_summary_says_nothing_was_tagged_counting_what_earlier_runs_tagged() -> None:
    """The command exits 1 when no track is tagged and some failed; the tracks a resumed run
    skips count as an earlier run left them."""
    failed = records.failure(Track("a", Path("a.wav")), "unreadable", "gone", retryable=False)
    assert Summary(total=1, failures=[failed]).tagged_nothing
    assert Summary(total=2, skipped=1, failures=[failed]).tagged_nothing  # b failed before
    assert not Summary(total=2, skipped=1, tagged_before=1, failures=[failed]).tagged_nothing
    assert not Summary(total=2, done=1, failures=[failed]).tagged_nothing
    assert not Summary(total=2, skipped=2, tagged_before=2).tagged_nothing  # all done before
    assert not Summary().tagged_nothing  # no track, no failure


def test_the_summary_gives_each_failure_its_own_reason_when_a_code_has_several() -> None:
    summary = Summary(total=4)
    reasons = {
        "notes.mp3": ("unsupported_format", "the body looks like text"),
        "raw.wav": ("unsupported_format", "the body looks like unrecognised data starting 00 01"),
        "a.opus": ("undecodable_audio", "Ogg file that cannot be read: End of file"),
        "b.opus": ("undecodable_audio", "Ogg file that cannot be read: End of file"),
    }
    for name, (code, message) in reasons.items():
        summary.add(records.failure(Track(name, Path(name)), code, message, retryable=False))
    lines = summary.report().splitlines()[2:]
    assert lines == [
        "  failed 2 x unsupported_format",
        "    notes.mp3: the body looks like text",
        "    raw.wav: the body looks like unrecognised data starting 00 01",
        "  failed 2 x undecodable_audio: Ogg file that cannot be read: End of file",
        "    a.opus",
        "    b.opus",
    ]


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), False),
        (PermissionError(errno.EACCES, "Permission denied"), False),
        (IsADirectoryError(errno.EISDIR, "Is a directory"), False),
        (OSError(errno.EIO, "Input/output error"), True),
        (OSError(errno.ESTALE, "Stale file handle"), True),
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), True),
    ],
)
def test_a_read_error_of_storage_that_passes_is_retried_by_the_next_run(
    tmp_path: Path, error: OSError, retryable: bool
) -> None:
    """An NFS or SMB share failing over gave EIO or ESTALE, recorded as settled: the next run
    skipped those tracks unless told --retry-failed. A missing or forbidden file stays settled."""
    record = records.unreadable(Track("a", tmp_path / "a.flac"), error)
    assert record.error is not None
    assert (record.error.code, record.error.retryable) == ("unreadable", retryable)
