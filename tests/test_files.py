"""Writing user-named files: atomic, never through a planted symlink, never over a
device or FIFO, and ``-`` for stdout."""

import os

import pytest

from fpcli import files
from fpcli.errors import FpcliError


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    files.write_text(target, "new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(FpcliError, match="No space left"):
        files.write_text(target, "newer")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_predictable_temporary_names_are_not_followed(tmp_path):
    """Another user plants symlinks at every name the old code would have used."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "backup.jsonl"
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        os.symlink(victim, tmp_path / f".backup.jsonl.{pid}.tmp")
    files.write_text(target, "export")
    assert victim.read_text() == "precious" and target.read_text() == "export"


def test_refuses_to_replace_a_symlink_a_fifo_or_a_device(tmp_path):
    link = tmp_path / "link.m3u"
    os.symlink(tmp_path / "elsewhere", link)
    fifo = tmp_path / "pipe.m3u"
    os.mkfifo(fifo)
    for target in (link, fifo, "/dev/null"):
        with pytest.raises(FpcliError, match="not a regular file|symbolic link"):
            files.write_text(target, "x")
    assert os.path.islink(link) and not (tmp_path / "elsewhere").exists()


def test_dash_is_stdout(capsys):
    files.write_text("-", "to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"


def test_a_write_removes_what_a_killed_write_left_behind(tmp_path):
    """kill -9 of `cache export` left its hidden partial copy (.fpcli-*.tmp, 40 MB for
    10,000 records) in the folder for good. A later write removes this host's copies
    whose process is gone, and leaves a live process's and another host's."""
    import subprocess

    from fpcli.files import _temporary_prefix, atomic_text

    gone = subprocess.Popen(["true"])
    gone.wait()
    prefix = _temporary_prefix()
    orphan = tmp_path / f"{prefix}{gone.pid}-abc.tmp"
    live = tmp_path / f"{prefix}{os.getpid()}-def.tmp"
    elsewhere = tmp_path / f".fpcli-otherhost-{gone.pid}-ghi.tmp"
    odd = tmp_path / f"{prefix}99999999999999999999-jkl.tmp"
    for path in (orphan, live, elsewhere, odd):
        path.write_text("partial")
    with atomic_text(tmp_path / "export.jsonl") as out:
        out.write("done\n")
    assert (tmp_path / "export.jsonl").read_text() == "done\n"
    assert not orphan.exists() and live.exists() and elsewhere.exists() and odd.exists()


def test_a_file_written_in_place_of_another_keeps_its_permissions(tmp_path):
    """An export over a file kept private (mode 600) was left readable by all (644); a
    new file gets 644 less the umask."""
    import stat

    from fpcli.files import atomic_text

    private = tmp_path / "private.jsonl"
    private.write_text("old")
    private.chmod(0o600)
    with atomic_text(private) as out:
        out.write("new")
    assert private.read_text() == "new" and stat.S_IMODE(private.stat().st_mode) == 0o600
    mask = os.umask(0o022)
    try:
        with atomic_text(tmp_path / "new.jsonl") as out:
            out.write("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o644
