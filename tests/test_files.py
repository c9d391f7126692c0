"""Files are replaced whole: a write that fails midway leaves the old file and no temporary one."""

import errno
import os
import stat

import pandas as pd
import pytest

from accelnas.core import dataset, files
from accelnas.core.space import sample


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / "sub" / "out.json"
    files.write_text(path, "old\n")  # the folder is made
    assert path.read_text() == "old\n"
    with pytest.raises(RuntimeError, match="disk gone"), files.replacing(path) as tmp:
        tmp.write_text("half of the ne")
        raise RuntimeError("disk gone")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]
    files.write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n" and sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_an_export_that_fails_midway_keeps_the_files_of_the_last_one(tmp_path, monkeypatch):
    archs = sample(4, 1)
    rows = [{"arch_id": a.id, **a.to_config(), "target": "cpu/x", "metric": "latency", "value": 1.0 + i,
             "unit": "ms", "settings_key": "k"} for i, a in enumerate(archs)]  # fmt: skip
    frame = pd.DataFrame(rows)
    written = dataset.write(frame, tmp_path)
    before = {p.name: p.read_bytes() for p in written}

    def cut_short(self, path, **kwargs):
        with open(path, "w") as fh:
            fh.write("arch_id,block1_e\n1311-")
        raise OSError("no space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
    with pytest.raises(OSError, match="no space"):
        dataset.write(frame.assign(value=frame["value"] * 2), tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # neither file was replaced: the Parquet and CSV files are still the same export's
    assert after == before
    assert dataset.read(tmp_path / "cpu__x.parquet")["value"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_full_disk_is_an_error_naming_the_folder_not_the_temporary_file(tmp_path, monkeypatch):
    archs = sample(4, 1)
    rows = [{"arch_id": a.id, **a.to_config(), "target": "cpu/x", "metric": "latency", "value": 1.0 + i,
             "unit": "ms", "settings_key": "k"} for i, a in enumerate(archs)]  # fmt: skip
    frame = pd.DataFrame(rows)

    def disk_full(self, path, **kwargs):  # as pyarrow reports it: an errno, and no file named
        with open(path, "wb") as fh:
            fh.write(b"PAR1")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError) as raised:
        dataset.write(frame, tmp_path)
    assert (
        raised.value.errno == errno.ENOSPC and str(raised.value) == f"[Errno 28] No space left on device: '{tmp_path}'"
    )
    assert list(tmp_path.iterdir()) == []  # no temporary file left, no file that looks complete
    with pytest.raises(PermissionError) as raised, files.replacing(tmp_path / "out.txt") as tmp:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))  # the temporary file named
    assert raised.value.filename == str(tmp_path)


def test_a_folder_in_the_way_of_one_file_of_a_pair_replaces_neither(tmp_path):
    archs = sample(4, 1)
    rows = [{"arch_id": a.id, **a.to_config(), "target": "cpu/x", "metric": "latency", "value": 1.0 + i,
             "unit": "ms", "settings_key": "k"} for i, a in enumerate(archs)]  # fmt: skip
    frame = pd.DataFrame(rows)
    dataset.write(frame, tmp_path)
    (tmp_path / "cpu__x.parquet").unlink()
    (tmp_path / "cpu__x.parquet").mkdir()
    before = (tmp_path / "cpu__x.csv").read_bytes()
    with pytest.raises(IsADirectoryError, match="a folder is in the way of the file to write") as raised:
        dataset.write(frame.assign(value=frame["value"] * 2), tmp_path)
    assert str(tmp_path / "cpu__x.parquet") in str(raised.value) and ".tmp" not in str(raised.value)
    assert (tmp_path / "cpu__x.csv").read_bytes() == before  # the CSV of the last export, still its pair's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu__x.csv", "cpu__x.parquet"]


def test_a_frame_that_would_not_read_back_is_not_written(tmp_path):
    archs = sample(3, 1)
    rows = [{"arch_id": a.id, **a.to_config(), "target": "cpu/x", "metric": "latency", "value": 1.0,
             "unit": "ms", "settings_key": "k"} for a in archs]  # fmt: skip
    rows[1]["target"] = None  # pandas would drop the row from its groups without a word
    with pytest.raises(dataset.DatasetError, match="row 1: no target"):
        dataset.write(pd.DataFrame(rows), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_linked_destination_is_written_through_and_permissions_are_kept(tmp_path):
    shared = tmp_path / "shared.csv"
    shared.write_text("old\n")
    shared.chmod(0o664)
    link = tmp_path / "out" / "data.csv"
    link.parent.mkdir()
    link.symlink_to(shared)
    files.write_text(link, "new\n")
    assert link.is_symlink() and shared.read_text() == "new\n"
    assert shared.stat().st_mode & 0o777 == 0o664


def test_a_figure_that_fails_to_render_leaves_the_old_one(tmp_path, monkeypatch):
    from accelnas.core.figures import pyplot, save_figure

    plt = pyplot()
    path = tmp_path / "plot.png"
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    assert save_figure(fig, path) == path
    old = path.read_bytes()
    assert old.startswith(b"\x89PNG")

    def die(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise MemoryError("renderer gone")

    monkeypatch.setattr(type(fig), "savefig", die)
    with pytest.raises(MemoryError):
        save_figure(plt.subplots()[0], path)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_a_figure_is_written_in_the_format_its_suffix_names_and_a_bare_name_gets_png(tmp_path):
    from accelnas.core.figures import pyplot, save_figure

    plt = pyplot()
    assert save_figure(plt.subplots()[0], tmp_path / "front.SVG").read_text().lstrip().startswith("<?xml")
    bare = save_figure(plt.subplots()[0], tmp_path / "front")
    assert bare == tmp_path / "front.png" and bare.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.SVG", "front.png"]


def test_a_csv_report_is_replaced_whole(tmp_path, monkeypatch):
    path = tmp_path / "front.csv"
    files.write_csv(path, pd.DataFrame({"id": ["a", "b"], "value": [1.0, 2.0]}))
    assert pd.read_csv(path).to_dict("list") == {"id": ["a", "b"], "value": [1.0, 2.0]}
    before = path.read_bytes()

    def cut_short(self, path_or_buf=None, **kwargs):  # pandas streaming into its target, then failing
        if path_or_buf is not None:
            with open(path_or_buf, "w") as fh:
                fh.write("id,val")
        raise OSError("no space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
    with pytest.raises(OSError, match="no space"):
        files.write_csv(path, pd.DataFrame({"id": ["c"], "value": [3.0]}))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["front.csv"]


def test_remove_is_best_effort(tmp_path, caplog):
    from accelnas.core.files import remove

    gone = tmp_path / "a.txt"
    gone.write_text("x")
    assert remove(gone) and not gone.exists()
    assert remove(tmp_path / "never-there")  # nothing to remove is no problem
    folder = tmp_path / "folder"
    folder.mkdir()
    assert not remove(folder, "store file") and folder.is_dir()  # unlink refuses a directory: logged
    assert f"could not remove the store file {folder}" in caplog.text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_pipe_in_the_way_is_written_into_not_replaced(tmp_path):
    import threading

    pipe = tmp_path / "space.json"
    os.mkfifo(pipe)
    got = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()), daemon=True)
    reader.start()
    files.write_text(pipe, "{}\n")
    reader.join(timeout=30)
    assert got == ["{}\n"] and stat.S_ISFIFO(os.stat(pipe).st_mode)  # still the pipe, not a regular file
    assert [p.name for p in tmp_path.iterdir()] == ["space.json"]  # no temporary left
