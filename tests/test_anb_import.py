"""Importing Accel-NASBench records: archive, directory, URL (cached), and malformed records."""

import http.server
import json
import tarfile
import threading

import pytest
from conftest import ANB_ARCHIVE

from accelnas.core.errors import DatasetError
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.surrogates.anb_dataset import ACCURACY_TARGET, PERF_KEYS, _archive_problem, fetch, import_anb


def _record(arch, top1=70.0, drop=None, std=1.0):
    perf = {}
    for key, (_, metric) in PERF_KEYS.items():
        perf[key] = {f"{metric}_mean": 100.0 + len(perf), f"{metric}_std": std}
    if drop:
        perf[drop] = None
    return {"architecture": arch.to_config(), "metrics": {"val_top1": top1, "val_top5": 90.0},
            "model_info": {}, "platform_perf": perf}  # fmt: skip


@pytest.fixture
def records_dir(tmp_path):
    d = tmp_path / "anb_dataset_jsons"
    d.mkdir()
    archs = sample(6, 3)
    (d / "result_0.json").write_text(json.dumps(_record(archs[0])))
    (d / "result_1.json").write_text(json.dumps(_record(archs[1], std=None)))
    (d / "result_2.json").write_text(json.dumps(_record(archs[2], drop="throughput_tpuv3")))
    (d / "result_3.json").write_text("{truncated")
    bad = _record(archs[3])
    bad["architecture"]["block5_l"] = 7
    (d / "result_4.json").write_text(json.dumps(bad))
    (d / "result_5.json").write_text(json.dumps(_record(archs[4], top1=float("nan"))))
    (d / "result_6.json").write_text(json.dumps(_record(archs[0])))  # duplicate of result_0
    return d


def test_directory_import_reports_every_skip(records_dir):
    frame, report = import_anb(records_dir)
    assert report.records == 7 and report.records_ok == 2
    assert report.skipped["malformed JSON"] == 1
    assert report.skipped["missing or invalid throughput_tpuv3"] == 1
    assert report.skipped["missing or invalid metrics.val_top1"] == 1
    assert report.skipped["duplicate architecture"] == 1
    assert any("block5_l=7" in reason for reason in report.skipped)
    assert "result_3.json" in report.summary()
    # 2 complete records x 9 rows + 8 rows (no tpuv3) + 8 rows (no accuracy)
    assert len(frame) == 9 + 9 + 8 + 8 == report.rows
    perf = frame[frame["metric"] != "accuracy"]
    assert perf["std"].isna().sum() == 8  # result_1 had null stds; accuracy has none (one seed)
    acc = frame[frame["target"] == ACCURACY_TARGET]
    assert set(acc["metric"]) == {"accuracy"} and set(acc["unit"]) == {"%"}
    # each row carries its record's number as the measurement order
    assert (frame["sequence"] == frame["source"].str.extract(r"result_(\d+)")[0].astype(int)).all()
    assert set(frame["sequence"]) == {0, 1, 2, 5}


def test_duplicate_keeps_earliest_record_and_counts_once(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    arch = sample(1, 11)[0]
    # "result_100.json" sorts before "result_99.json" as text; the earlier measurement (99) is kept
    (d / "result_100.json").write_text(json.dumps(_record(arch, top1=99.0, drop="throughput_a100")))
    (d / "result_99.json").write_text(json.dumps(_record(arch, top1=11.0)))
    frame, report = import_anb(d)
    assert set(frame["sequence"]) == {99}
    assert frame.loc[frame["metric"] == "accuracy", "value"].tolist() == [11.0]
    assert report.skipped["duplicate architecture"] == 1
    assert "result_100.json (same as result_99.json)" in report.examples["duplicate architecture"]
    # the dropped duplicate's own gaps are not reported as skipped entries
    assert "missing or invalid throughput_a100" not in report.skipped
    assert report.records == 2 and report.records_ok == 1


def test_odd_but_readable_inputs_are_counted_not_crashed_on(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    archs = sample(4, 12)
    listed = _record(archs[0])
    listed["metrics"] = [{"val_top1": 70.0}]  # not an object: no accuracy, the device rows stay
    (d / "result_1.json").write_text(json.dumps(listed))
    odd_std = _record(archs[1])
    odd_std["platform_perf"]["throughput_a100"]["throughput_std"] = "x"
    odd_std["platform_perf"]["throughput_3090"]["throughput_std"] = -5
    (d / "result_2.json").write_text(json.dumps(odd_std))
    (d / "result_3.json").write_text(json.dumps(_record(archs[2])))
    (d / "result_9.json").mkdir()  # a directory with a record's name is not a record
    frame, report = import_anb(d)
    assert report.records == 3 and report.records_ok == 1
    assert report.skipped["missing or invalid metrics.val_top1"] == 1
    assert report.skipped["invalid throughput_a100.throughput_std (kept without it)"] == 1
    assert report.skipped["invalid throughput_3090.throughput_std (kept without it)"] == 1
    rows = frame[frame["arch_id"] == archs[1].id].set_index("target")
    assert len(rows) == 9 and rows["std"].isna().sum() == 3  # a100, 3090 and accuracy (one seed)
    assert len(frame) == 8 + 9 + 9

    # an archive that stores a record as a hard link to another (as tar does for two names of one file)
    (d / "result_9.json").rmdir()
    (d / "result_4.json").hardlink_to(d / "result_3.json")
    archive = tmp_path / "linked.tar"
    with tarfile.open(archive, "w") as tar:
        for f in sorted(d.iterdir()):
            tar.add(f, arcname=f"anb/{f.name}")
    with tarfile.open(archive) as tar:
        assert any(m.islnk() for m in tar.getmembers())
    _, from_archive = import_anb(archive)
    assert from_archive.records == 4 and from_archive.skipped["duplicate architecture"] == 1
    dangling = tarfile.TarInfo("anb/result_8.json")  # a hard link to a member the archive lacks
    dangling.type, dangling.linkname = tarfile.LNKTYPE, "elsewhere/result_8.json"
    with tarfile.open(archive, "a") as tar:
        tar.addfile(dangling)
    _, with_dangling = import_anb(archive)
    assert with_dangling.records == 5 and with_dangling.skipped["malformed JSON"] == 1


def test_symbolic_links_in_an_archive_are_records_as_in_a_directory(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    archs = sample(2, 13)
    (d / "result_1.json").write_text(json.dumps(_record(archs[0])))
    (d / "result_2.json").write_text(json.dumps(_record(archs[1])))
    (d / "result_3.json").symlink_to("result_1.json")  # a second name of record 1
    (d / "result_4.json").symlink_to(tmp_path / "elsewhere.json")  # leads out of the archive
    (tmp_path / "elsewhere.json").write_text("{}")
    archive = tmp_path / "linked.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(d, arcname="anb")
    with tarfile.open(archive) as tar:
        assert sum(m.issym() for m in tar.getmembers()) == 2
    _, from_dir = import_anb(d)
    _, from_archive = import_anb(archive)
    assert from_archive.records == from_dir.records == 4
    assert from_archive.skipped["duplicate architecture"] == from_dir.skipped["duplicate architecture"] == 1
    assert "result_3.json (same as result_1.json)" in from_archive.examples["duplicate architecture"]
    assert from_archive.skipped["malformed JSON"] == 1  # the link out of the archive: no record to read


def test_symbolic_links_in_a_loop_in_an_archive_are_records_without_content(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    (d / "result_1.json").write_text(json.dumps(_record(sample(1, 14)[0])))
    (d / "result_2.json").symlink_to("result_3.json")
    (d / "result_3.json").symlink_to("result_2.json")  # tarfile would follow these two without end
    archive = tmp_path / "looped.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(d, arcname="anb")
    _, report = import_anb(archive)
    assert report.records == 3 and report.records_ok == 1 and report.skipped["malformed JSON"] == 2


def _archive(records_dir, path):
    """The records as the published archive holds them (gzip by the name's suffix)."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        tar.add(records_dir, arcname="anb_dataset_jsons")
    return path


def test_archive_and_url_with_cache(records_dir, tmp_path):
    archive = _archive(records_dir, tmp_path / "anb.tar.gz")
    frame, _ = import_anb(archive)
    assert len(frame) == 34
    # a directory holding the archive as published (and no loose records) reads the archive
    published = tmp_path / "published"
    (published / "anb_dataset").mkdir(parents=True)
    (published / "anb_dataset" / "anb_dataset_jsons.tar.gz").write_bytes(archive.read_bytes())
    (published / "README.md").write_text("records are in the archive")
    from_dir, report = import_anb(published)
    assert from_dir.equals(frame) and report.records == 7
    # other archives beside it (no records, or not a tar at all) are passed over
    with tarfile.open(published / "backup.tar.gz", "w:gz") as tar:
        tar.add(published / "README.md", arcname="README.md")
    (published / "broken.tar").write_bytes(b"not a tar")
    from_dir, report = import_anb(published)
    assert from_dir.equals(frame) and report.records == 7
    (published / "anb_dataset" / "anb_dataset_jsons.tar.gz").unlink()
    with pytest.raises(DatasetError, match=r"no archive under .* holds result_"):
        import_anb(published)

    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            hits.append(args)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/anb.tar.gz"
        cache = tmp_path / "cache"
        frame_url, _ = import_anb(url, cache_dir=cache)
        assert len(frame_url) == 34 and len(hits) == 1
        assert fetch(url, cache).read_bytes() == archive.read_bytes() and len(hits) == 1  # cached
        with pytest.raises(DatasetError, match="cannot download"):
            fetch(url.replace("anb.tar.gz", "missing.tar.gz"), cache)
    finally:
        server.shutdown()


def test_cut_downloads_are_not_cached(records_dir, tmp_path):
    archive = _archive(records_dir, tmp_path / "anb.tar.gz")
    data = archive.read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        """Sends half the archive: announcing its full length (``?announced``) or not (``?unsized``)."""

        def do_GET(self):
            served.append(self.path)
            whole = self.path.endswith("?whole")
            self.send_response(200)
            if not self.path.endswith("?unsized"):
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if whole else data[: len(data) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "cache"
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(DatasetError, match=rf"ended after {len(data) // 2} of {len(data)} bytes"):
            fetch(f"{base}/anb.tar.gz?announced", cache)
        with pytest.raises(DatasetError, match="not a complete tar archive"):
            fetch(f"{base}/anb.tar.gz?unsized", cache)
        assert not list(cache.iterdir())  # nothing cached, no partial file left
        # a damaged archive already in the cache is downloaded again
        url = f"{base}/anb.tar.gz?whole"
        cached = fetch(url, cache)
        cached.write_bytes(data[: len(data) // 2])
        assert fetch(url, cache).read_bytes() == data and served.count("/anb.tar.gz?whole") == 2
        assert fetch(url, cache) == cached and served.count("/anb.tar.gz?whole") == 2
        # a URL whose name does not end as an archive's still serves one: checked, not cached cut short
        with pytest.raises(DatasetError, match="not a complete tar archive"):
            fetch(f"{base}/download?unsized", cache)
        assert [p.name for p in cache.iterdir()] == [cached.name]
        named = fetch(f"{base}/download?whole", cache)
        named.write_bytes(data[: len(data) // 2])  # damaged in the cache: downloaded again
        assert fetch(f"{base}/download?whole", cache).read_bytes() == data and served.count("/download?whole") == 2
    finally:
        server.shutdown()


def test_a_plain_tar_cut_between_two_members_is_refused(records_dir, tmp_path):
    archive = _archive(records_dir, tmp_path / "anb.tar")
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile()]
    whole, _ = import_anb(archive)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: members[-1].offset])  # ends where the last member's header began
    with tarfile.open(cut) as tar:
        assert len([m for m in tar if m.isfile()]) == len(members) - 1  # tarfile itself reads it quietly
    with pytest.raises(DatasetError, match=r"cut.tar: it ends after \d+ bytes without tar's end-of-archive"):
        import_anb(cut)
    assert _archive_problem(cut).startswith("not a complete tar archive") and _archive_problem(archive) is None
    assert len(whole) == 34


def test_unusable_sources(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        import_anb(tmp_path / "nothing.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no result_\*\.json files or tar archives"):
        import_anb(tmp_path / "empty")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DatasetError, match="cannot read archive") as raised:
        import_anb(junk)
    assert "\n" not in str(raised.value) and str(raised.value).endswith("not a tar archive (plain, gzip, bzip2 or xz)")


def test_public_sample(anb_records):
    frame, report = import_anb(ANB_ARCHIVE)
    assert report.records == len(anb_records) > 4000
    counts = frame.groupby(["target", "metric"]).size()
    assert len(counts) == 9 and counts.min() > 0.98 * len(anb_records)
    assert sum(report.skipped.values()) > 0  # the public files have incomplete entries; they are reported
    b0 = frame[frame["arch_id"] == EFFICIENTNET_B0.id]
    assert b0.empty or set(b0["metric"]) <= {"accuracy", "throughput", "latency"}
