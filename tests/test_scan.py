"""Scanning libraries: exclusions, ignore files, marker folders, CUE sheets, and the
account of what was not analysed."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.analyze import fingerprint_of, open_entry
from fpcli.cli import app
from fpcli.cue import CueError, parse_sheet, track_of_entry
from fpcli.scan import scan
from fpcli.store import FingerprintStore, prune
from tests.conftest import write

SR = 22050
runner = CliRunner()


def _names(found, root):
    return sorted(os.path.relpath(f, root) for f in found.files)


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    for folder in ("albums/a", "albums/b", "Podcasts", "samples"):
        (root / folder).mkdir(parents=True)
    for name in ("albums/a/1.flac", "albums/a/2.wav", "albums/b/3.flac", "Podcasts/ep1.mp3", "samples/kick.wav"):
        write(root / name, synth.sine(440, 0.5, SR), SR)
    (root / "albums" / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    (root / "albums" / "a" / "notes.txt").write_text("liner notes")
    (root / "samples" / ".nomedia").write_text("")
    return root


def test_exclusions_markers_and_the_ignored_account(library):
    found = scan([library], exclude=["Podcasts/", "*.wav"])
    assert _names(found, library) == ["albums/a/1.flac", "albums/b/3.flac"]
    assert found.ignored == {"excluded": 1, ".jpg": 1, ".txt": 1}
    # The excluded folder is said too ("--exclude 'Podcasts/'" left it out without a word), and
    # a marked folder is a folder left out (its files were counted with the marker, its
    # subfolders' files not at all)
    assert found.skipped_folders == {"excluded": 1, "marked .nomedia/.notmusic": 1}
    assert found.ignored_summary().startswith("ignored 3 files: ")
    assert found.ignored_summary().endswith("; skipped 2 folders: excluded 1, marked .nomedia/.notmusic 1")
    assert scan([library]).ignored_summary() == "ignored 2 files: .jpg 1, .txt 1; skipped 1 folder: marked " \
        ".nomedia/.notmusic 1"
    (library / "marked" / "sub").mkdir(parents=True)
    write(library / "marked" / "sub" / "deep.wav", synth.sine(440, 0.5, SR), SR)
    (library / "marked" / ".notmusic").write_text("")
    assert scan([library / "marked"]).ignored_summary() == "skipped 1 folder: marked .nomedia/.notmusic 1"


def test_fpcliignore_files_apply_to_their_folder_and_below(library):
    (library / "albums" / ".fpcliignore").write_text("# comment\nb/\n*.wav\n!2.wav\n")
    assert _names(scan([library / "albums"]), library) == ["albums/a/1.flac", "albums/a/2.wav"]
    assert "Podcasts/ep1.mp3" in _names(scan([library]), library)  # outside its folder: not affected


def test_folders_are_excluded_as_git_excludes_them(library):
    """`Podcasts/**` excluded the folder itself, and a later `!*/` did not take back a
    folder an earlier `*` excluded (pathspec matches "folder/" as a path inside the
    folder): the walk never entered it, and the audio there was skipped as
    "excluded" where git keeps it (`git ls-files --others --exclude-standard` on the
    same tree and .gitignore lists these files)."""
    write(library / "Podcasts" / "keep.wav", synth.sine(440, 0.5, SR), SR)
    everything_but_audio = "*\n!*/\n!*.wav\n!*.flac\n"
    (library / ".fpcliignore").write_text(everything_but_audio)
    assert _names(scan([library]), library) == ["Podcasts/keep.wav", "albums/a/1.flac", "albums/a/2.wav",
                                                "albums/b/3.flac"]
    (library / ".fpcliignore").write_text("Podcasts/**\n!Podcasts/keep.wav\n")
    assert "Podcasts/keep.wav" in _names(scan([library]), library)
    assert "Podcasts/ep1.mp3" not in _names(scan([library]), library)
    (library / ".fpcliignore").unlink()
    found = scan([library], exclude=["Podcasts/**", "!Podcasts/keep.wav"])
    assert [n for n in _names(found, library) if n.startswith("Podcasts")] == ["Podcasts/keep.wav"]
    # Folder rules still exclude folders, and a later rule takes one back.
    assert [n for n in _names(scan([library], exclude=["Podcasts/"]), library) if n.startswith("Podcasts")] == []
    assert "albums/b/3.flac" in _names(scan([library], exclude=["*/", "!*/"]), library)


def test_a_byte_order_mark_does_not_hide_an_ignore_files_first_line(library):
    """Windows Notepad starts a UTF-8 file with a byte-order mark: it became part of the
    first pattern, which then matched nothing, without a word (git skips it)."""
    (library / "albums" / ".fpcliignore").write_bytes("\ufeff*.wav\n".encode("utf-8"))
    assert _names(scan([library / "albums"]), library) == ["albums/a/1.flac", "albums/b/3.flac"]


def test_a_folders_ignore_file_can_take_back_what_one_above_left_out(library):
    """As in git, the deepest ignore file that says anything of a path decides: an
    album's `!2.wav` took back nothing of its parent's `*.wav` (any file that excluded
    a path excluded it)."""
    (library / "albums" / ".fpcliignore").write_text("*.wav\n")
    (library / "albums" / "a" / ".fpcliignore").write_text("!2.wav\n1.flac\n")
    assert _names(scan([library / "albums"]), library) == ["albums/a/2.wav", "albums/b/3.flac"]
    assert _names(scan([library / "albums"], exclude=["2.wav"]), library) == ["albums/b/3.flac"]   # --exclude wins


def test_the_ignore_files_above_a_folder_given_apply(library, monkeypatch):
    """`fpcli analyze ~/Music/albums` left out nothing of what ~/Music/.fpcliignore
    leaves out of the whole library: only the folder given and those below it were read."""
    (library / ".fpcliignore").write_text("*.wav\nb/\n/albums/a/1.flac\n")
    whole = _names(scan([library]), library)
    assert whole == ["Podcasts/ep1.mp3"]
    assert _names(scan([library / "albums"]), library) == []
    assert _names(scan([library / "albums" / "a"]), library) == []
    monkeypatch.chdir(library / "albums")   # a folder given relative: the same
    assert scan(["a"]).files == [] and scan(["."]).files == []
    (library / "albums" / "a" / ".fpcliignore").write_text("!2.wav\n")   # a deeper one still decides
    assert scan(["a"]).files == ["a/2.wav"]
    assert _names(scan([library / "albums" / "a" / "1.flac"]), library) == ["albums/a/1.flac"]   # named: taken


def test_only_a_usable_ignore_file_of_this_user_above_a_folder_given_applies(library):
    """One another user left in /tmp changed what every walk below it took, and one
    that cannot be used (a folder so named) cost the run of a folder below it."""
    above = library / ".fpcliignore"
    above.write_text("*.wav\n")
    os.chown(above, 54321, 54321)   # another user's (the tests run as root or as the user)
    assert _names(scan([library / "albums"]), library) == ["albums/a/1.flac", "albums/a/2.wav", "albums/b/3.flac"]
    above.unlink()
    mine = library.parent / "dotfiles-fpcliignore"   # a dotfile manager's link to one's own file
    mine.write_text("*.wav\n")
    above.symlink_to(mine)
    assert _names(scan([library / "albums"]), library) == ["albums/a/1.flac", "albums/b/3.flac"]
    above.unlink()
    above.mkdir()
    found = scan([library / "albums"])
    assert found.problems == [] and len(found.files) == 3
    above.rmdir()
    (library / "albums" / ".fpcliignore").write_text("[z-a]\n")   # a bad line: reported once, under either name
    assert len(scan([library / "albums" / "a", library / "albums"]).problems) == 1


def test_an_absolute_exclude_through_a_link_applies(library, tmp_path, monkeypatch):
    """`cd ~/Music` through a link, then `--exclude $PWD/Podcasts` (the shell's path of
    the link) or the real path with the folder given through the link: not applied."""
    link = tmp_path / "linked"
    link.symlink_to(library)
    expected = ["albums/a/1.flac", "albums/a/2.wav", "albums/b/3.flac"]
    assert _names(scan([link], exclude=[str(library / "Podcasts")]), link) == expected
    monkeypatch.chdir(link)   # the process's folder is the real one; the pattern names the link
    assert sorted(scan(["."], exclude=[f"{link}/Podcasts/"]).files) == ["./" + name for name in expected]
    assert _names(scan([library], exclude=[f"{library}/albums/../Podcasts"]), library) == expected
    # a link inside the folder given, to another disk: still the folder's Podcasts
    elsewhere = tmp_path / "pods"
    (library / "Podcasts").rename(elsewhere)
    (library / "Podcasts").symlink_to(elsewhere)
    assert sorted(scan(["."], exclude=[f"{link}/Podcasts"]).files) == ["./" + name for name in expected]


def test_ignore_files_of_many_folders_each_apply_below_their_own(tmp_path, monkeypatch):
    """Each folder's scan looked through every ignore file found so far (8,000 album
    folders with one each: 41 s per run); each now looks up the folders above it, and
    a root given with a trailing slash still applies its own."""
    import fpcli.scan

    for i in range(60):
        album = tmp_path / "lib" / f"artist{i % 6}" / f"album{i}"
        album.mkdir(parents=True)
        (album / ".fpcliignore").write_text("*.tmp.wav\n")
        write(album / "keep.wav", synth.sine(440, 0.1, SR), SR)
        shutil.copy(album / "keep.wav", album / "skip.tmp.wav")
    (tmp_path / "lib" / ".fpcliignore").write_text("artist0/\n")
    joins = []
    join = os.path.join
    monkeypatch.setattr(fpcli.scan.os.path, "join", lambda *parts: joins.append(1) or join(*parts))
    found = scan([str(tmp_path / "lib") + "/"])
    monkeypatch.undo()
    names = sorted(os.path.relpath(p, tmp_path / "lib") for p in found.files)
    assert len(names) == 50 and all(n.endswith("keep.wav") and not n.startswith("artist0") for n in names)
    assert len(joins) < 2000, len(joins)   # about n**2 / 2 before: 60 folders, 1,800 joins for the rules alone


def test_a_tree_a_thousand_folders_deep_is_walked(tmp_path):
    """os.walk recurses in Python 3.11: a tree about 1,000 folders deep stopped the run
    with a RecursionError traceback."""
    folder = tmp_path / "deep"
    deepest = str(folder)
    for _ in range(1101):   # os.makedirs recurses too
        os.mkdir(deepest)
        deepest = os.path.join(deepest, "d")
    deepest = os.path.dirname(deepest)
    wav = write(tmp_path / "bottom.wav", synth.sine(440, 0.1, SR), SR)
    shutil.copyfile(wav, os.path.join(deepest, "bottom.wav"))   # libsndfile refuses a name this long
    try:
        assert [os.path.basename(p) for p in scan([folder]).files] == ["bottom.wav"]
    finally:   # removed here, bottom up: pytest's clean-up (shutil.rmtree) recurses too
        os.remove(os.path.join(deepest, "bottom.wav"))
        while deepest != str(folder):
            os.rmdir(deepest)
            deepest = os.path.dirname(deepest)


def test_a_bad_line_of_an_ignore_file_costs_that_line_only(library):
    """Patterns pathspec refuses (``[z-a]`` raises re.error, ``!`` ValueError) are
    problems naming the file and line; the file's other lines still apply and the
    scan goes on (a bad line used to stop the whole run with a traceback)."""
    (library / "albums" / ".fpcliignore").write_text("b/\n[z-a]\n!\n*.wav\n[Live\n")
    found = scan([library / "albums"])
    assert _names(found, library) == ["albums/a/1.flac"]
    assert [(p.path.endswith(".fpcliignore"), p.message.split(":")[0]) for p in found.problems] == \
        [(True, "line 2"), (True, "line 3"), (True, "line 5")]
    assert "bad character range z-a" in found.problems[0].message
    assert "no ']' closes" in found.problems[2].message   # git's rule makes it match nothing, silently


def test_an_exclude_written_as_an_absolute_path_under_a_folder_given_applies(library, monkeypatch):
    """`--exclude ~/Music/Podcasts` (the shell writes the path whole) matched nothing,
    without a word: patterns are matched against paths relative to the folder given."""
    expected = ["albums/a/1.flac", "albums/a/2.wav", "albums/b/3.flac"]
    assert _names(scan([library], exclude=[str(library / "Podcasts")]), library) == expected
    assert _names(scan([library], exclude=[f"{library}/albums/a/*.wav", "!" + str(library / "albums/a/2.wav"),
                                           f"{library}/Podcasts/"]), library) == expected
    monkeypatch.chdir(library.parent)   # a folder given relative: the same
    assert _names(scan(["lib"], exclude=[str(library / "Podcasts")]), library) == expected
    # anchored patterns (gitignore's leading /) and paths under no folder given are kept as written
    assert _names(scan([library], exclude=["/Podcasts", "/elsewhere/Podcasts"]), library) == expected



@pytest.mark.parametrize("pattern", ["[z-a]", "!", "\\", "[", "[Live", "[!]"])
def test_a_bad_exclude_pattern_is_a_usage_error(library, tmp_path, pattern, capsys, monkeypatch):
    from fpcli.cli import main

    monkeypatch.setattr(sys, "argv", ["fpcli", "--store", str(tmp_path / "s"), "analyze", str(library),
                                      "--exclude", pattern])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --exclude {pattern!r} is not a valid pattern") and "Traceback" not in err


def test_m4a_files_are_found_by_folder_scans(tmp_path):
    (tmp_path / "itunes").mkdir()
    for name in ("song.m4a", "other.MP4", "x.wma"):
        (tmp_path / "itunes" / name).write_bytes(b"\x00" * 10)
    assert _names(scan([tmp_path / "itunes"]), tmp_path / "itunes") == ["other.MP4", "song.m4a", "x.wma"]


def _album(folder, seconds=(3.0, 2.0, 4.0), sheet=True):
    """An album image of three distinct pieces with a CUE sheet (in Latin-1, as old rippers write)."""
    folder.mkdir(parents=True, exist_ok=True)
    pieces = [synth.music_like(s, SR, seed=40 + i, bpm=90 + 20 * i) for i, s in enumerate(seconds)]
    image = write(folder / "Album Image.flac", np.concatenate(pieces), SR)
    starts = np.cumsum([0.0, *seconds[:-1]])
    lines = ['PERFORMER "Tëster"', 'FILE "Album Image.flac" WAVE']
    for number, start in enumerate(starts, start=1):
        minutes, rest = divmod(start, 60)
        lines += [f"  TRACK {number:02d} AUDIO", f'    TITLE "Piece {number}"',
                  f"    INDEX 01 {int(minutes):02d}:{int(rest):02d}:{round((rest % 1) * 75):02d}"]
    if sheet:
        (folder / "Album Image.cue").write_bytes("\r\n".join(lines).encode("latin-1"))
    return image, pieces


def test_a_cue_sheet_turns_an_image_into_tracks(tmp_path):
    image, pieces = _album(tmp_path / "album")
    tracks = parse_sheet(str(tmp_path / "album" / "Album Image.cue"))["Album Image.flac"]
    assert [(t.number, t.start_s, t.end_s) for t in tracks] == [(1, 0.0, 3.0), (2, 3.0, 5.0), (3, 5.0, None)]
    found = scan([tmp_path / "album"])
    assert [os.path.basename(f) for f in found.files] == [f"Album Image.flac#{n:02d}" for n in (1, 2, 3)]
    assert found.ignored == {".cue (tracks listed)": 1}
    for entry, piece in zip(found.files, pieces, strict=True):  # each track reads exactly its samples
        reader = open_entry(entry)
        audio = np.concatenate(list(reader))
        assert len(audio) == len(piece) and not reader.partial
        np.testing.assert_allclose(audio, piece, atol=1e-4)


def test_an_album_image_named_is_its_tracks_once_however_it_is_reached(tmp_path, monkeypatch):
    """Named on the command line, the image was analysed as one whole track besides
    its tracks (and came back as search hit 1 for one of them)."""
    image, _ = _album(tmp_path / "album")
    tracks = [f"{image}#{n:02d}" for n in (1, 2, 3)]
    assert scan([image]).files == tracks
    assert scan([image, tmp_path / "album", image]).files == tracks
    assert scan([tmp_path / "album", image]).files == tracks
    monkeypatch.chdir(tmp_path / "album")
    assert scan(["Album Image.flac"]).files == [f"Album Image.flac#{n:02d}" for n in (1, 2, 3)]  # as named
    (tmp_path / "plain").mkdir()
    lone = write(tmp_path / "plain" / "Album Image.flac", synth.music_like(2.0, SR, seed=1), SR)
    assert scan([lone]).files == [lone]                 # no sheet beside it: the file itself
    (tmp_path / "album" / "Album Image.cue").write_text('FILE "Album Image.flac" WAVE\n  TRACK 01 AUDIO\n'
                                                       '    INDEX 01 00:05:00\n  TRACK 02 AUDIO\n'
                                                       '    INDEX 01 00:01:00\n')
    bad = scan([image])
    assert bad.files == [image] and "Album Image.cue" in bad.problems[0].path   # a bad sheet: named, the file


def test_one_track_named_as_the_store_names_it_is_that_track(tmp_path):
    """``cache list`` prints album.flac#02 and search and ``cache show`` take it, but
    analyze and validate said "no such file or folder"."""
    image, _ = _album(tmp_path / "album")
    assert scan([f"{image}#02"]).files == [f"{image}#02"]
    assert scan([f"{image}#02", image]).files == [f"{image}#02", f"{image}#01", f"{image}#03"]   # once
    missing = scan([f"{image}#07"])   # it said "no such file or folder", the image beside it
    assert missing.files == [] and [p.message for p in missing.problems] == [
        "Album Image.flac has no track 07 (its sheet lists 01-03)"]
    searched = runner.invoke(app, ["--store", str(tmp_path / "q"), "search", f"{image}#07"])   # as a query too
    assert "Album Image.flac has no track 07 (its sheet lists 01-03)" in str(searched.exception)
    shown = runner.invoke(app, ["--store", str(tmp_path / "q"), "cache", "show", f"{image}#07"])   # and shown
    assert "Album Image.flac has no track 07 (its sheet lists 01-03)" in str(shown.exception)
    assert track_of_entry(f"{image}#\u0660\u0662") is None   # Arabic-Indic digits: no track number
    os.mkdir(f"{image}#05")   # a real folder so named is what it is
    folder = runner.invoke(app, ["--store", str(tmp_path / "q"), "cache", "show", f"{image}#05"])
    assert "is a folder" in str(folder.exception) or "a directory" in str(folder.exception), folder.exception
    # a sheet's track number in other digits (a Latin-1 "²") was a ValueError traceback
    sheet = tmp_path / "album" / "Album Image.cue"
    kept = sheet.read_bytes()
    sheet.write_bytes(kept.replace(b"TRACK 03", b"TRACK \xb2 "))
    assert [t.number for t in parse_sheet(str(sheet))["Album Image.flac"]] == [1, 2]
    sheet.write_bytes(kept)
    store_dir = str(tmp_path / "s")
    ran = runner.invoke(app, ["--store", store_dir, "analyze", f"{image}#02", "--json"])
    assert ran.exit_code == 0, ran.output
    assert [round(json.loads(line)["duration_s"], 2) for line in ran.stdout.splitlines()] == [2.0]
    os.remove(tmp_path / "album" / "Album Image.cue")
    assert [p.message for p in scan([f"{image}#02"]).problems] == [
        "no usable CUE sheet beside Album Image.flac splits it into tracks"]
    assert [p.message for p in scan([f"{tmp_path}/gone.flac#02"]).problems] == ["no such file or folder"]


def test_validate_partial_streams_each_cue_track(tmp_path):
    """validate --partial opened album.flac#02 as a file: "no such file ... a fault of
    fpcli" for every track, and a table of no track with exit 0."""
    _album(tmp_path / "album")
    ran = runner.invoke(app, ["--store", str(tmp_path / "s"), "validate", "-l", str(tmp_path / "album"),
                              "--partial", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    partial = json.loads(ran.stdout)["partial"]
    assert partial["tracks"] == 3 and partial["failed"] == []


def test_an_album_image_followed_with_every_is_refused_not_stored_as_a_track(tmp_path):
    """``analyze album.flac --every 5`` stored the image as one track, which then came
    back as a search hit for its own tracks."""
    image, _ = _album(tmp_path / "album")
    store_dir = str(tmp_path / "s")
    refused = runner.invoke(app, ["--store", store_dir, "analyze", image, "--every", "1"])
    assert refused.exit_code == 2 and "album image of a CUE sheet" in refused.output
    assert not os.path.exists(store_dir) or not runner.invoke(
        app, ["--store", store_dir, "cache", "list", "--json"]).stdout.strip()
    (tmp_path / "other").mkdir()
    os.symlink(image, tmp_path / "other" / "link.flac")   # the scan takes a link to the image as its tracks
    link = str(tmp_path / "other" / "link.flac")
    linked = runner.invoke(app, ["--store", store_dir, "analyze", link, "--every", "1"], env={"COLUMNS": "300"})
    assert linked.exit_code == 2 and "album image of a CUE sheet" in linked.output
    assert f"({image}#01, ...)" in " ".join(linked.output.split())   # the image's tracks: link.flac#01 names none
    followed = runner.invoke(app, ["--store", store_dir, "analyze", f"{image}#03", "--every", "1", "--json"])
    assert followed.exit_code == 0, followed.output
    listed = runner.invoke(app, ["--store", store_dir, "cache", "list", "--json"]).stdout.splitlines()
    assert [os.path.basename(json.loads(line)["path"]) for line in listed] == ["Album Image.flac#03"]


def test_of_two_sheets_of_one_image_the_one_named_as_it_splits_it_and_the_other_is_counted(tmp_path):
    """"Album Image (old).cue" sorted before "Album Image.cue" and split the image, and
    the summary counted the one left as any junk .cue."""
    image, _ = _album(tmp_path / "album")
    (tmp_path / "album" / "Album Image (old).cue").write_text(
        'FILE "Album Image.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
        '  TRACK 02 AUDIO\n    INDEX 01 00:04:00\n')
    found = scan([tmp_path / "album"])
    assert found.files == [f"{image}#{n:02d}" for n in (1, 2, 3)]   # the sheet named as the image: 3 tracks
    assert found.ignored == {".cue (tracks listed)": 1, ".cue (its image split by another sheet)": 1}


def test_a_file_named_cue_too_large_for_a_sheet_is_ignored_as_a_small_one_is(tmp_path):
    """2 MB of random bytes named random.cue failed every run ("not a CUE sheet (larger
    than 1 MiB)", exit 3), where a small file of junk named so is ignored."""
    song = write(tmp_path / "a.flac", synth.sine(440, 0.2, SR), SR)
    (tmp_path / "random.cue").write_bytes(os.urandom(2_000_000))
    (tmp_path / "small.cue").write_bytes(os.urandom(2_000))
    found = scan([tmp_path])
    assert (found.files, found.problems, found.ignored) == ([song], [], {".cue": 2})


def test_a_track_left_out_by_its_own_name_is_counted(tmp_path):
    """`--exclude '*#02'` left track 02 out without a word in the summary."""
    image, _ = _album(tmp_path / "album")
    found = scan([tmp_path / "album"], exclude=["*#02"])
    assert found.files == [f"{image}#01", f"{image}#03"]
    assert found.ignored == {".cue (tracks listed)": 1, "excluded": 1}


def test_an_album_image_reached_through_a_link_is_its_tracks(tmp_path):
    """A link to the image, beside it or in another folder, walked or named, stood for
    the whole image: one more track, and a search hit for the image's own track."""
    image, _ = _album(tmp_path / "album")
    os.symlink("Album Image.flac", tmp_path / "album" / "link.flac")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(image, tmp_path / "elsewhere" / "image.flac")
    tracks = [f"{image}#{n:02d}" for n in (1, 2, 3)]
    assert scan([tmp_path / "album"]).files == tracks
    # The image reached again (link.flac): its tracks were left out unsaid; now counted.
    assert scan([tmp_path / "album"]).ignored["same file reached twice"] == 3
    assert scan([tmp_path / "album" / "link.flac"]).files == tracks      # read where the sheet is
    assert scan([tmp_path / "elsewhere"]).files == tracks
    assert scan([tmp_path / "elsewhere", tmp_path / "album"]).files == tracks
    for entry in tracks:
        assert open_entry(entry).info.frames > 0


def test_files_named_in_one_folder_read_its_sheets_once(tmp_path, monkeypatch):
    """Each file named listed its folder and parsed its sheets again (a shell glob of
    3,000 files: 11 s instead of 4), and a bad sheet was one problem per file."""
    import fpcli.scan

    folder = tmp_path / "bad"
    folder.mkdir()
    names = [write(folder / f"{i}.wav", synth.sine(440, 0.1, SR), SR) for i in range(20)]
    write(folder / "album.wav", synth.sine(440, 1.0, SR), SR)
    (folder / "album.cue").write_text('FILE "album.wav" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                                      '  TRACK 02 AUDIO\n    INDEX 01 00:25:00\n')
    listed = []
    listdir = os.listdir
    monkeypatch.setattr(fpcli.scan.os, "listdir", lambda path=".": listed.append(path) or listdir(path))
    found = scan([*names, folder / "album.wav"])
    assert len(found.files) == 21 and len(listed) == 1
    assert [p.path for p in found.problems] == [str(folder / "album.cue")]


def test_cue_tracks_are_analysed_stored_listed_and_pruned_on_their_own(tmp_path):
    _album(tmp_path / "album")
    store_dir = str(tmp_path / "s")
    first = runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "--json"])
    assert first.exit_code == 0, first.output
    rows = sorted((json.loads(line) for line in first.stdout.splitlines()), key=lambda r: r["path"])
    assert [os.path.basename(r["path"]) for r in rows] == ["Album Image.flac#01", "Album Image.flac#02",
                                                           "Album Image.flac#03"]
    assert [round(r["duration_s"], 2) for r in rows] == [3.0, 2.0, 4.0]
    assert len({r["streaming"]["tempo_bpm"]["value"] for r in rows}) == 3  # three different pieces
    again = runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "--json"])
    assert [json.loads(line)["cached"] for line in again.stdout.splitlines()] == [True, True, True]
    listed = runner.invoke(app, ["--store", store_dir, "cache", "list", "--json"]).stdout.splitlines()
    assert len(listed) == 3
    with FingerprintStore.open(store_dir) as store:
        assert prune(store) == []
        hits = fingerprint_of(store, rows[0]["path"])
        assert hits.cached
        os.remove(tmp_path / "album" / "Album Image.flac")
        assert len(prune(store)) == 3 and list(store.records()) == []


def test_an_edited_cue_sheet_is_analysed_again(tmp_path):
    """The image unchanged, its path entries vouched for each track: a sheet whose track
    02 was moved served the old tracks' values as cached (track 01 still 3.0 s)."""
    _album(tmp_path / "album")
    store_dir = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "-q"]).exit_code == 0
    sheet = tmp_path / "album" / "Album Image.cue"
    sheet.write_bytes(sheet.read_bytes().replace(b"INDEX 01 00:03:00", b"INDEX 01 00:04:00"))
    again = runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "--json"])
    rows = sorted((json.loads(line) for line in again.stdout.splitlines()), key=lambda r: r["path"])
    assert [round(r["duration_s"], 2) for r in rows] == [4.0, 1.0, 4.0]
    assert [r["cached"] for r in rows] == [False, False, True]   # track 03 kept its bounds


def test_tracks_whose_sheet_moved_their_bounds_are_changed_to_prune(tmp_path):
    """The image unchanged, prune (and search, and dupes) took its stat for the tracks':
    after a sheet moved track 02's start, the old 01 and 02 stayed listed and searchable
    until the next analyze. The salted content key tells, as for a look-up."""
    _album(tmp_path / "album")
    store_dir = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "-q"]).exit_code == 0
    sheet = tmp_path / "album" / "Album Image.cue"
    sheet.write_bytes(sheet.read_bytes().replace(b"INDEX 01 00:03:00", b"INDEX 01 00:04:00"))
    with FingerprintStore.open(store_dir) as store:
        dropped = sorted((os.path.basename(p.path), p.reason) for p in prune(store))
    assert dropped == [("Album Image.flac#01", "changed"), ("Album Image.flac#02", "changed")]   # 03 kept its bounds


def test_tracks_of_an_image_that_cannot_be_read_now_are_not_pruned(tmp_path, monkeypatch):
    """The image there but unreadable for a moment (permissions, a share's hiccup):
    prune took its tracks for gone and dropped them, batch values and verdicts too,
    where a look-up keeps them."""
    from fpcli.store import records

    _album(tmp_path / "album")
    store_dir = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store_dir, "analyze", str(tmp_path / "album"), "-q"]).exit_code == 0

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records, "entry_identity_keys", unreadable)
    with FingerprintStore.open(store_dir) as store:
        assert prune(store) == [] and store.record_count() == 3


def test_a_real_file_with_a_hash_in_its_name_wins(tmp_path):
    _album(tmp_path / "album")
    real = write(tmp_path / "album" / "Album Image.flac#02", synth.sine(440, 0.5, SR), SR, format="FLAC")
    assert track_of_entry(real) is None


def test_bad_cue_sheets_are_problems_not_crashes(tmp_path):
    folder = tmp_path / "album"
    _album(folder, sheet=False)
    (folder / "bad.cue").write_text('FILE "Album Image.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 02:00:00\n'
                                     'TRACK 02 AUDIO\nINDEX 01 01:00:00\n')
    found = scan([folder])
    assert [p.message for p in found.problems] == ["track 01 ends before it starts (120.00 s, then 60.00 s)"]
    assert [os.path.basename(f) for f in found.files] == ["Album Image.flac"]  # analysed as one file
    assert found.ignored == {}   # the sheet is its problem, not also an ignored .cue file
    with pytest.raises(CueError):
        parse_sheet(str(folder / "bad.cue"))


@pytest.mark.parametrize("body,message", [
    ("TRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 01 AUDIO\nINDEX 01 00:03:00\n",
     "track 01 appears twice in Album Image.flac"),
    ("TRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 02 AUDIO\nINDEX 00 00:03:00\n",
     "track 02 of Album Image.flac has no INDEX 01 (where it starts)"),
    # 75 frames a second: 00:03:80 was read as 3 + 80/75 s, a boundary a second late
    ("TRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 02 AUDIO\nINDEX 01 00:03:80\n",
     "bad INDEX time '00:03:80' (seconds 0-59, frames 0-74: 75 frames a second)"),
    ("TRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 02 AUDIO\nINDEX 01 00:61:00\n",
     "bad INDEX time '00:61:00' (seconds 0-59, frames 0-74: 75 frames a second)"),
    # its entry, Album Image.flac#1000, named no track: "no such file or folder"
    ("TRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 1000 AUDIO\nINDEX 01 00:03:00\n",
     "track 1000 of Album Image.flac: a sheet numbers its tracks 1-99 (up to 999 are read)"),
])
def test_cue_sheets_that_would_lose_a_track_are_problems(tmp_path, body, message):
    """A number given twice lost the second track under the first one's name; a track
    with only INDEX 00 was dropped and the image analysed whole, both without a word."""
    folder = tmp_path / "album"
    _album(folder, sheet=False)
    (folder / "album.cue").write_text('FILE "Album Image.flac" WAVE\n' + body)
    found = scan([folder])
    assert [p.message for p in found.problems] == [message]
    assert [os.path.basename(f) for f in found.files] == ["Album Image.flac"]


def test_the_times_of_files_a_sheet_does_not_split_are_not_read(tmp_path):
    """A sheet of one FILE per track, or naming a file that is not there, adds nothing:
    a time of theirs out of range (00:00:75) made the folder's run exit 3."""
    folder = tmp_path / "per-file"
    folder.mkdir()
    for name in ("one.wav", "two.wav"):
        write(folder / name, synth.sine(440, 1.0, SR), SR)
    (folder / "disc.cue").write_text('FILE "one.wav" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:00:75\n'
                                     'FILE "two.wav" WAVE\nTRACK 02 AUDIO\nINDEX 01 00:00:33\n'
                                     'FILE "gone.flac" WAVE\nTRACK 03 AUDIO\nINDEX 01 00:00:00\n'
                                     'TRACK 04 AUDIO\nINDEX 01 00:00:99\n')
    found = scan([folder])
    assert found.problems == [] and sorted(os.path.basename(f) for f in found.files) == ["one.wav", "two.wav"]


def test_a_cue_track_starting_after_the_end_of_its_image_is_a_sheet_problem(tmp_path):
    """Was "album.flac#03: no audio frames could be decoded", a failure of the track
    that named neither the sheet nor the time."""
    folder = tmp_path / "album"
    _album(folder, seconds=(1.0, 1.0, 1.0), sheet=False)
    (folder / "album.cue").write_text('FILE "Album Image.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:00:00\n'
                                      'TRACK 02 AUDIO\nINDEX 01 00:01:00\nTRACK 03 AUDIO\nINDEX 01 05:00:00\n')
    found = scan([folder])
    assert [p.message for p in found.problems] == [
        "track 03 starts at 300.00 s, after the end of Album Image.flac (3.00 s)"]
    assert [os.path.basename(f) for f in found.files] == ["Album Image.flac"]  # analysed as one file
    assert found.ignored == {}   # the sheet is its problem, not also an ignored .cue file
    result = runner.invoke(app, ["analyze", str(folder), "-q", "--jobs", "1"])
    assert result.exit_code == 3 and "album.cue: track 03 starts at 300.00 s" in result.stderr
    assert "no audio frames" not in result.output


def test_a_utf16_cue_sheet_is_read(tmp_path):
    """Some Windows tools write sheets in UTF-16 with a BOM: read as Latin-1 it had no
    FILE line and was skipped without a word."""
    folder = tmp_path / "album"
    _album(folder)
    sheet = folder / "Album Image.cue"
    sheet.write_bytes(sheet.read_bytes().decode("latin-1").encode("utf-16"))
    assert [os.path.basename(f) for f in scan([folder]).files] == [f"Album Image.flac#{n:02d}" for n in (1, 2, 3)]


@pytest.mark.parametrize(("name", "encoding"), [("Don’t Stop – Live", "cp1252"), ("アルバム", "cp932"),
                                              ("Café", "latin-1")])
def test_a_cue_sheet_in_a_legacy_code_page_is_read(tmp_path, name, encoding):
    """EAC writes sheets in the Windows code page: read as Latin-1, a cp1252 name with
    ’ or – (or a Shift-JIS one) named no file, and the image was analysed whole
    without a word. The code page whose FILE names a file of the folder is taken."""
    folder = tmp_path / "album"
    _album(folder)
    sheet = folder / "Album Image.cue"
    plain = sheet.read_bytes().decode("latin-1").encode("ascii", "replace").decode("ascii")   # its title's ë
    text = plain.replace("Album Image", name)
    (folder / "Album Image.flac").rename(folder / f"{name}.flac")
    sheet.unlink()
    (folder / f"{name}.cue").write_bytes(text.encode(encoding))
    assert [os.path.basename(f) for f in scan([folder]).files] == [f"{name}.flac#{n:02d}" for n in (1, 2, 3)]


def test_a_file_reached_by_several_names_is_listed_once_by_its_best_one(tmp_path):
    """A name given on the command line wins over one a walk found, a file's own name
    over a symlink's, whatever their order: the first name walked was kept, so a path
    named on the command line got no line, and a folder reported a link that sorted
    before the file."""
    folder = tmp_path / "sl"
    folder.mkdir()
    real = write(folder / "real.flac", synth.sine(440, 0.2, SR), SR)
    for link in ("alink.flac", "zlink.flac"):
        os.symlink("real.flac", folder / link)
    assert scan([folder]).files == [real]
    given = str(folder / "alink.flac")
    for roots in ([folder, given], [given, folder], [given, folder, real]):
        assert scan(roots).files == [given], roots
    other = write(tmp_path / "other.flac", synth.sine(660, 0.2, SR), SR)
    assert scan([folder, other, real]).files == [real, other]   # each keeps its place
    # The names left out are counted, as a folder reached twice is: they vanished unsaid.
    assert scan([folder]).ignored_summary() == "ignored 2 files: same file reached twice 2"
    assert scan([given, folder, real]).ignored == {"same file reached twice": 4}   # alink walked too
    assert scan([real]).ignored_summary() == ""


def test_missing_loop_and_unreadable_paths_are_json_errors(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    result = runner.invoke(app, ["analyze", str(tmp_path / "missing.flac"), str(tmp_path / "loop"), "--json"])
    assert result.exit_code == 3
    rows = {os.path.basename(r["path"]): r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["missing.flac"]["status"] == "error" and rows["missing.flac"]["error"] == "no such file or folder"
    assert rows["loop"]["error"] == "symlink loop"


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux for a pseudo-terminal")
def test_json_goes_to_stdout_even_with_the_progress_bar_on_a_terminal(library, tmp_path):
    """stderr is a terminal (the bar is drawn there), stdout is redirected to a file."""
    out = tmp_path / "out.jsonl"
    command = f"{sys.executable} -m fpcli --store {tmp_path / 's'} analyze --json {library / 'albums'} > {out}"
    subprocess.run(["script", "-qec", command, "/dev/null"], check=True, capture_output=True, timeout=120)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["1.flac", "2.wav", "3.flac"]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux for a pseudo-terminal")
def test_json_lines_on_the_terminal_of_the_bar_start_lines_of_their_own(library, tmp_path):
    """stdout and stderr both the terminal: each JSON line followed the bar's text on
    the same screen line ("analysing ━━━ 1/4 0:00:01 -:--:--{"path": ...}"). It is
    printed above the bar now, on a line of its own, whole."""
    transcript = tmp_path / "screen"
    command = f"{sys.executable} -m fpcli --store {tmp_path / 's'} analyze --json {library / 'albums'}"
    subprocess.run(["script", "-qec", command, str(transcript)], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "COLUMNS": "80", "LINES": "24"})
    screen = transcript.read_text(errors="replace")
    starts = [match.start() for match in re.finditer(r'\{"path"', screen)]
    assert len(starts) == 3
    for start in starts:
        assert screen[:start].endswith(("\n", "\x1b[2K")), repr(screen[start - 40:start])
        line = screen[start:].split("\n", 1)[0].rstrip("\r")
        assert os.path.basename(json.loads(line)["path"]) in ("1.flac", "2.wav", "3.flac")


def test_json_lines_stay_on_stdout_when_it_is_another_terminal(library, tmp_path):
    """stdout on one terminal, stderr (the bar's) on another: the JSON lines went to
    stderr's terminal through the bar's console, none to stdout's."""
    import pty
    import select

    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(tmp_path / "s"), "analyze", "--json",
                                str(library / "albums")], stdin=subprocess.DEVNULL, stdout=out_slave,
                               stderr=err_slave, env={**os.environ, "COLUMNS": "100"})
    os.close(out_slave)
    os.close(err_slave)
    screens = {out_master: b"", err_master: b""}
    reading = set(screens)
    deadline = time.monotonic() + 120
    while reading and time.monotonic() < deadline:
        ready, _, _ = select.select(list(reading), [], [], 0.5)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:   # the other end closed (EIO on a pseudo-terminal)
                data = b""
            screens[fd] += data
            if not data:
                reading.discard(fd)
    assert process.wait(timeout=10) == 0
    assert screens[out_master].count(b'{"path"') == 3 and screens[err_master].count(b'{"path"') == 0


def test_a_folder_reached_twice_is_walked_once_and_is_not_a_failure(tmp_path):
    """A folder given twice, inside another folder given, or linked to from inside the
    library is walked once; a symlink to a folder above it is not followed. Each is a
    count in the summary's note, not a problem."""
    nest = tmp_path / "nest"
    (nest / "sub").mkdir(parents=True)
    write(nest / "b.flac", synth.sine(440, 0.2, SR), SR)
    write(nest / "sub" / "a.flac", synth.sine(550, 0.2, SR), SR)
    for roots in ([nest, nest / "sub"], [nest / "sub", nest], [nest, f"{nest}/"], [nest, nest]):
        found = scan(roots)
        assert sorted(os.path.basename(f) for f in found.files) == ["a.flac", "b.flac"]
        assert (found.problems, found.skipped_folders) == ([], {"already scanned": 1})
    library = tmp_path / "lib"
    (library / "Albums" / "X").mkdir(parents=True)
    (library / "Fav").mkdir()
    write(library / "Albums" / "X" / "c.flac", synth.sine(660, 0.2, SR), SR)
    os.symlink("../Albums/X", library / "Fav" / "X")       # a second way to a folder of the library
    os.symlink("../..", library / "Albums" / "X" / "up")    # a loop: the library's own root
    found = scan([library])
    assert [os.path.relpath(f, library) for f in found.files] == ["Albums/X/c.flac"]
    assert found.problems == []
    assert found.ignored_summary() == "skipped 2 folders: symlink loop 1, already scanned 1"
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "cover.jpg").write_bytes(b"\xff\xd8")
    result = runner.invoke(app, ["analyze", str(tmp_path / "art"), f"{tmp_path / 'art'}/"])
    assert result.exit_code == 0, result.output
    assert "ignored 1 file: .jpg 1; skipped 1 folder: already scanned 1" in result.output
    # Given a subfolder, a link in it to the library's root is a loop too, not a way up.
    found = scan([library / "Albums" / "X"])
    assert [os.path.relpath(f, library) for f in found.files] == ["Albums/X/c.flac"]
    assert found.skipped_folders == {"symlink loop": 1}


@pytest.mark.parametrize(("base", "path"), [("music", "music/a/b.flac"), ("music/", "music/a"), (".", "./a/b"),
                                           ("/", "/a/b"), ("a/..", "a/../x"), ("/x/y", "/x/y/z"),
                                           ("m", "other/z"), ("mus", "music/a")])
def test_a_path_made_relative_by_its_prefix_is_what_relpath_gives(base, path):
    from fpcli.scan import _relative

    assert _relative(path, base) == os.path.relpath(path, base)


def test_a_fifo_named_as_a_sheet_or_an_ignore_file_is_a_problem_not_a_hang(tmp_path):
    """A FIFO named album.cue or .fpcliignore hung analyze, search and prune forever
    (the scan guarded only audio files against it). Each is one problem now, named,
    and the audio beside them is still found."""
    folder = tmp_path / "music"
    folder.mkdir()
    image = write(folder / "album.flac", synth.music_like(3.0, 22050, seed=1), 22050)
    os.mkfifo(folder / "album.cue")
    os.mkfifo(folder / ".fpcliignore")
    found = scan([str(folder)])
    assert found.files == [str(image)]
    assert sorted((os.path.basename(p.path), p.message) for p in found.problems) == [
        (".fpcliignore", "cannot use this ignore file: is a FIFO, not a file"),
        ("album.cue", "cannot read the CUE sheet: is a FIFO, not a file")]
    with pytest.raises(CueError, match="is a FIFO, not a file"):
        parse_sheet(str(folder / "album.cue"))


def test_a_bad_sheet_leaves_the_other_sheets_of_its_folder_in_force(tmp_path):
    """The first sheet that could not be used stopped every sheet of its folder: a
    two-disc folder with a typo in one sheet stored both images whole (and a stored
    album split into tracks gained its whole image once a bad bonus.cue came beside)."""
    image, _ = _album(tmp_path / "album")
    other = write(tmp_path / "album" / "other.flac", synth.music_like(3.0, SR, seed=9), SR)
    (tmp_path / "album" / "other.cue").write_text('FILE "other.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                                                  '  TRACK 02 AUDIO\n    INDEX 01 00:30:00\n')   # past its end
    found = scan([tmp_path / "album"])
    assert sorted(found.files) == sorted([f"{image}#01", f"{image}#02", f"{image}#03", str(other)])
    assert [os.path.basename(p.path) for p in found.problems] == ["other.cue"]
    assert "after the end of other.flac" in found.problems[0].message


@pytest.mark.parametrize(("written", "on_disk"), [
    ("Album Image.wav", "Album Image.flac"),     # EAC names the WAV it ripped, then it is compressed
    ("album image.flac", "Album Image.flac"),    # another case
    ("Cafe\u0301.flac", "Caf\u00e9.flac"),       # another Unicode normalisation (a folder from a Mac)
])
def test_a_sheet_naming_its_image_a_little_differently_still_splits_it(tmp_path, written, on_disk):
    """Each was ignored without a word (exit 0): the album stored as one track."""
    image, _ = _album(tmp_path / "album")
    image = os.replace(image, tmp_path / "album" / on_disk) or str(tmp_path / "album" / on_disk)
    sheet = tmp_path / "album" / "Album Image.cue"
    text = sheet.read_bytes().decode("latin-1").replace('"Album Image.flac"', f'"{written}"')
    sheet.write_bytes(text.encode("utf-8"))
    found = scan([tmp_path / "album"])
    assert found.files == [f"{image}#{n:02d}" for n in (1, 2, 3)] and found.problems == []


def test_a_leftover_sheet_whose_image_is_not_there_adds_nothing_and_fails_nothing(tmp_path):
    """A sheet left beside the tracks it was split into (its image gone) adds nothing,
    without a word: an error for it made every run exit 3 (a review of the first fix).
    A track entry is resolved against the whole folder, as the walk resolves it: with
    album.wav and album.flac both there, a sheet naming album.wav splits that one."""
    image, _ = _album(tmp_path / "album")
    sheet = tmp_path / "album" / "Album Image.cue"
    sheet.write_bytes(sheet.read_bytes().replace(b'"Album Image.flac"', b'"Other Album.flac"'))
    found = scan([tmp_path / "album"])
    assert found.files == [str(image)] and found.problems == []
    sheet.write_bytes(sheet.read_bytes().replace(b'"Other Album.flac"', b'"Album Image.wav"'))
    wav = write(tmp_path / "album" / "Album Image.wav", synth.music_like(9.0, SR, seed=3), SR)
    assert sorted(scan([tmp_path / "album"]).files) == sorted([str(image), *(f"{wav}#{n:02d}" for n in (1, 2, 3))])
    assert track_of_entry(f"{image}#02") is None and track_of_entry(f"{wav}#02") is not None


def test_a_per_track_sheet_with_pregaps_at_the_end_of_the_file_before_adds_nothing(tmp_path):
    """EAC's "non-compliant" per-track sheet puts track 02's INDEX 00 under the FILE
    before it and its INDEX 01 under its own: "track 02 of 01.flac has no INDEX 01",
    exit 3 on every run. Each file is an ordinary track; INDEX 1 is INDEX 01."""
    folder = tmp_path / "album"
    folder.mkdir()
    files = [write(folder / f"0{n}.flac", synth.music_like(3.0, SR, seed=n), SR) for n in (1, 2, 3)]
    (folder / "album.cue").write_text(
        'FILE "01.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 1 0:00:00\n  TRACK 02 AUDIO\n    INDEX 00 00:02:00\n'
        'FILE "02.flac" WAVE\n    INDEX 01 00:00:00\n  TRACK 03 AUDIO\n    INDEX 00 00:02:00\n'
        'FILE "03.flac" WAVE\n    INDEX 01 00:00:00\n')
    found = scan([folder])
    assert found.files == [str(f) for f in files] and found.problems == []
    assert {name: [t.number for t in tracks] for name, tracks in parse_sheet(str(folder / "album.cue")).items()} \
        == {"01.flac": [1], "02.flac": [2], "03.flac": [3]}


def test_an_excluded_sheet_splits_nothing_and_a_track_can_be_excluded(tmp_path):
    """--exclude '*.cue' (or the same line in an ignore file) counted the sheet as
    excluded and applied it all the same, and 'album.flac#02' excluded nothing."""
    image, _ = _album(tmp_path / "album")
    assert scan([tmp_path / "album"], exclude=["*.cue"]).files == [str(image)]
    assert scan([tmp_path / "album"], exclude=["*#02"]).files == [f"{image}#01", f"{image}#03"]
    (tmp_path / "album" / ".fpcliignore").write_text("Album Image.cue\n")
    assert scan([tmp_path / "album"]).files == [str(image)]


def test_an_image_and_its_sheet_are_read_once_for_all_its_tracks(tmp_path, monkeypatch):
    """Each track of an image is opened alone, and each read the sheet and digested the
    whole image again: a 999-track sheet took 133 s to analyse cold (22 s now). Once
    per version of each file: a sheet or an image changed is read again."""
    import fpcli.cue
    import fpcli.store.records as records

    image, _ = _album(tmp_path / "album")
    sheet = tmp_path / "album" / "Album Image.cue"
    reads, digests = [], []
    monkeypatch.setattr(fpcli.cue, "_entries_of", lambda path, real=fpcli.cue._entries_of: (
        reads.append(path), real(path))[1])
    monkeypatch.setattr(records, "file_digest", lambda path, real=records.file_digest: (
        digests.append(path), real(path))[1])
    entries = scan([tmp_path / "album"]).files
    keys = [records.entry_identity_keys(entry, os.stat(image).st_size, digest=True) for entry in entries]
    assert len({digest for _, digest in keys}) == 3 and all(track_of_entry(entry) for entry in entries)
    assert (reads, digests) == ([str(sheet)], [str(image)])
    stat = os.stat(sheet)
    sheet.write_bytes(sheet.read_bytes().replace(b"INDEX 01 00:03:00", b"INDEX 01 00:02:00"))   # same size
    os.utime(sheet, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert track_of_entry(f"{image}#02").start_s == 2.0 and len(reads) == 2
    os.utime(image, ns=(stat.st_atime_ns, os.stat(image).st_mtime_ns + 1))
    records.entry_identity_keys(entries[0], os.stat(image).st_size, digest=True)
    assert len(digests) == 2


def test_a_pipe_named_by_the_shell_is_said_to_be_one():
    """`fpcli analyze <(cmd)` names /dev/fd/63, a link to "pipe:[123]": resolved, it was
    "no such file or folder"; it is a pipe, and a stream is read from stdin."""
    read_end, write_end = os.pipe()
    try:
        found = scan([f"/dev/fd/{read_end}"])
        assert found.files == [] and [p.message for p in found.problems] == [
            "is a FIFO (a pipe), not an audio file: a stream is read from stdin, as -"]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_sheet_left_out_splits_no_image_named_alone(tmp_path):
    """A sheet left out by --exclude or its folder's ignore file still split the image
    when the image was named on the command line, and, named before its folder, for
    the folder's walk too (the sheets were read once per folder, unfiltered)."""
    image, _ = _album(tmp_path / "album")
    tracks = [f"{image}#{n:02d}" for n in (1, 2, 3)]
    assert scan([image]).files == tracks
    for roots in ([image], [image, tmp_path / "album"], [tmp_path / "album", image]):
        assert scan(roots, exclude=["*.cue"]).files == [str(image)]
    (tmp_path / "album" / ".fpcliignore").write_text("*.cue\n")
    for roots in ([image], [image, tmp_path / "album"]):
        assert scan(roots).files == [str(image)]
    link = tmp_path / "elsewhere" / "linked.flac"
    link.parent.mkdir()
    link.symlink_to(image)
    assert scan([link, tmp_path / "album"]).files == [str(link)]
    # the ignore files above apply to an image named alone, and a folder keeps one decision:
    # named, then walked under rules that disagree, the image was stored whole and as tracks
    (tmp_path / "album" / ".fpcliignore").unlink()
    (tmp_path / ".fpcliignore").write_text("*.cue\n")
    assert scan([image, tmp_path]).files == [str(image)]
    (tmp_path / ".fpcliignore").unlink()
    for roots in ([image, tmp_path], [tmp_path, image]):
        found = scan(roots, exclude=["album/*.cue"]).files
        assert found in ([str(image)], tracks), (roots, found)


def _cd_image(folder, name, pieces, byte_order="<"):
    """Raw CD audio of ``pieces`` (float stereo at 44.1 kHz) back to back, each padded to
    whole 2352-byte sectors as a disc's tracks are; their start times, in sectors."""
    folder.mkdir(parents=True, exist_ok=True)
    sector = 2352 // 4
    padded = [np.pad(p, ((0, -len(p) % sector), (0, 0))) for p in pieces]
    pcm = np.round(np.concatenate(padded) * 32767).astype(f"{byte_order}i2")
    (folder / name).write_bytes(pcm.tobytes())
    starts = np.cumsum([0] + [len(p) // sector for p in padded[:-1]])
    return [f"{s // (75 * 60):02d}:{s // 75 % 60:02d}:{s % 75:02d}" for s in starts]


def _write_sheet(sheet, file_line, times, kinds=None):
    kinds = kinds or ["AUDIO"] * len(times)
    sheet.write_text(f"{file_line}\n" + "".join(
        f"  TRACK {n:02d} {kind}\n    INDEX 01 {t}\n" for n, (kind, t) in enumerate(zip(kinds, times, strict=True), 1)))


def _cd_pieces(seconds=(2.0, 3.0)):
    return [synth.music_like(s, 44100, seed=60 + i, bpm=100 + 30 * i)
            for i, s in enumerate(seconds)]


@pytest.mark.parametrize("file_type,byte_order", [("BINARY", "<"), ("MOTOROLA", ">")])
def test_a_bin_cue_image_of_raw_cd_audio_is_its_tracks(tmp_path, file_type, byte_order):
    """cdrdao's and ImgBurn's BIN/CUE images failed every run, "the file exists but is
    not audio": the .bin has no header. Each track reads the samples a WAV image with
    the same sheet gives (big-endian for MOTOROLA)."""
    pieces = _cd_pieces()
    times = _cd_image(tmp_path / "bin", "disc.bin", pieces, byte_order)
    wav_audio = np.concatenate([np.pad(p, ((0, -len(p) % 588), (0, 0))) for p in pieces])
    (tmp_path / "wav").mkdir()
    write(tmp_path / "wav" / "disc.wav", np.round(wav_audio * 32767) / 32768, 44100, subtype="PCM_16")
    _write_sheet(tmp_path / "bin" / "disc.cue", f'FILE "disc.bin" {file_type}', times)
    _write_sheet(tmp_path / "wav" / "disc.cue", 'FILE "disc.wav" WAVE', times)
    found = scan([tmp_path / "bin"])
    assert [os.path.basename(f) for f in found.files] == ["disc.bin#01", "disc.bin#02"]
    assert found.problems == []
    for number in (1, 2):
        raw = open_entry(f"{tmp_path}/bin/disc.bin#{number:02d}")
        wav = open_entry(f"{tmp_path}/wav/disc.wav#{number:02d}")
        raw_audio, wav_audio_read = np.concatenate(list(raw)), np.concatenate(list(wav))
        np.testing.assert_array_equal(raw_audio, wav_audio_read)
        assert (raw.info.samplerate, raw.info.channels, raw.partial) == (44100, 2, False)
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), "analyze", str(tmp_path / "bin"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["status"], r["format"]) for r in rows] == [("ok", "RAW"), ("ok", "RAW")]


def test_data_tracks_of_a_bin_image_are_no_tracks_and_odd_sectors_are_a_sheet_problem(tmp_path):
    """An enhanced CD's data track is skipped (it still ends the track before it); a
    track of 2048-byte sectors moves every position after it: the sheet is a problem,
    named, not a set of tracks read at the wrong places. One audio track in a BIN
    is a track: the .bin cannot be read as a file."""
    pieces = _cd_pieces((2.0, 2.0, 3.0))
    times = _cd_image(tmp_path / "cd", "disc.bin", pieces)
    sheet = tmp_path / "cd" / "disc.cue"
    _write_sheet(sheet, 'FILE "disc.bin" BINARY', times, ["AUDIO", "MODE1/2352", "AUDIO"])
    tracks = parse_sheet(str(sheet))["disc.bin"]
    assert [(t.number, t.start_s, t.end_s) for t in tracks] == [(1, 0.0, 2.0), (3, 4.0, None)]
    assert [os.path.basename(f) for f in scan([tmp_path / "cd"]).files] == ["disc.bin#01", "disc.bin#03"]
    sheet.write_text(sheet.read_text().replace("MODE1/2352", "MODE1/2048"))
    found = scan([tmp_path / "cd"])
    assert found.files == [] and [p.path for p in found.problems] == [str(sheet)]
    assert "track 02 of disc.bin is MODE1/2048" in found.problems[0].message
    sheet.write_text('FILE "disc.bin" BINARY\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n')
    (single,) = scan([tmp_path / "cd"]).files
    assert single.endswith("disc.bin#01")
    assert len(np.concatenate(list(open_entry(single)))) == os.path.getsize(tmp_path / "cd" / "disc.bin") // 4


def test_a_cut_bin_image_makes_its_last_track_partial(tmp_path):
    pieces = _cd_pieces()
    times = _cd_image(tmp_path / "cd", "disc.bin", pieces)
    with open(tmp_path / "cd" / "disc.bin", "r+b") as image:
        image.truncate(os.path.getsize(tmp_path / "cd" / "disc.bin") - 1000)
    _write_sheet(tmp_path / "cd" / "disc.cue", 'FILE "disc.bin" BINARY', times)
    first, last = (open_entry(f"{tmp_path}/cd/disc.bin#{n:02d}") for n in (1, 2))
    list(first), list(last)
    assert not first.partial
    assert last.partial and "ends inside a CD sector" in last.partial_reason


def test_a_bin_image_converted_to_flac_is_decoded_as_flac(tmp_path):
    """The sheet still names disc.bin BINARY; the folder holds the disc.flac it was
    converted to, which the sheet's stem finds: it is a FLAC, not raw CD audio."""
    pieces = _cd_pieces()
    times = _cd_image(tmp_path / "cd", "disc.bin", pieces)
    (tmp_path / "cd" / "disc.bin").unlink()
    write(tmp_path / "cd" / "disc.flac", np.concatenate([np.pad(p, ((0, -len(p) % 588), (0, 0))) for p in pieces]),
          44100)
    _write_sheet(tmp_path / "cd" / "disc.cue", 'FILE "disc.bin" BINARY', times)
    first = open_entry(str(tmp_path / "cd" / "disc.flac#01"))
    assert first.info.format == "FLAC"
    np.testing.assert_allclose(np.concatenate(list(first)), pieces[0], atol=1e-4)


def test_data_tracks_that_move_no_audio_are_left_out_without_a_word(tmp_path):
    """A game disc's data track of 2048-byte sectors in a FILE of its own (game.iso),
    or a data-only BIN, made the whole sheet a problem on every run, though nothing
    after it was misplaced; a karaoke (CDG) track still is one."""
    folder = tmp_path / "game"
    pieces = _cd_pieces()
    folder.mkdir()
    (folder / "Game (Track 1).iso").write_bytes(b"\0" * 2048 * 20)
    sheet = ['FILE "Game (Track 1).iso" BINARY', "  TRACK 01 MODE1/2048", "    INDEX 01 00:00:00"]
    for number, piece in enumerate(pieces, start=2):
        _cd_image(folder, f"Game (Track {number}).bin", [piece])
        sheet += [f'FILE "Game (Track {number}).bin" BINARY', f"  TRACK {number:02d} AUDIO", "    INDEX 01 00:00:00"]
    (folder / "Game.cue").write_text("\n".join(sheet) + "\n")
    found = scan([folder])
    assert found.problems == []
    assert [os.path.basename(f) for f in found.files] == ["Game (Track 2).bin#02", "Game (Track 3).bin#03"]
    (folder / "Game.cue").write_text('FILE "Game (Track 1).iso" BINARY\n  TRACK 01 MODE1/2048\n    INDEX 01 00:00:00\n')
    found = scan([folder])
    assert (found.files, found.problems) == ([], [])
    _write_sheet(folder / "Game.cue", 'FILE "Game (Track 2).bin" BINARY', ["00:00:00"], ["CDG"])
    assert "track 01 of Game (Track 2).bin is CDG" in scan([folder]).problems[0].message


def test_the_audio_before_an_enhanced_cds_data_track_ends_at_its_pregap(tmp_path):
    """CD-Extra: audio, then a data track whose INDEX 00 starts 2 s of data sectors
    before its INDEX 01. Read up to the INDEX 01, the last audio track ended in 2 s
    of data read as samples."""
    folder = tmp_path / "cd"
    pieces = _cd_pieces((2.0, 3.0, 4.0))
    times = _cd_image(folder, "disc.bin", pieces)
    sheet = (f'FILE "disc.bin" BINARY\n  TRACK 01 AUDIO\n    INDEX 01 {times[0]}\n'
             f"  TRACK 02 AUDIO\n    INDEX 01 {times[1]}\n"
             f"  TRACK 03 MODE1/2352\n    INDEX 00 00:03:00\n    INDEX 01 {times[2]}\n")
    (folder / "disc.cue").write_text(sheet)
    tracks = parse_sheet(str(folder / "disc.cue"))["disc.bin"]
    assert [(t.number, t.start_s, t.end_s) for t in tracks] == [(1, 0.0, 2.0), (2, 2.0, 3.0)]


def test_a_bin_image_read_in_the_other_byte_order_is_another_track(tmp_path):
    """A sheet corrected from BINARY to MOTOROLA kept its tracks' identities, and the
    fingerprints of the samples read the wrong way round were served as cached."""
    times = _cd_image(tmp_path / "cd", "disc.bin", _cd_pieces())
    _write_sheet(tmp_path / "cd" / "disc.cue", 'FILE "disc.bin" BINARY', times)
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "analyze", str(tmp_path / "cd")]).exit_code == 0
    _write_sheet(tmp_path / "cd" / "disc.cue", 'FILE "disc.bin" MOTOROLA', times)
    again = runner.invoke(app, ["--store", store, "analyze", str(tmp_path / "cd"), "--json"])
    assert [json.loads(line)["cached"] for line in again.stdout.splitlines()] == [False, False]


def test_a_data_tracks_pregap_at_the_end_of_the_file_before_ends_its_audio(tmp_path):
    """A data track whose INDEX 00 is in the FILE before its own (a per-track BIN set):
    the audio track before it ran to the end of its file, 2 s of data sectors read as
    samples. A pregap that is no time leaves the track to end at the next INDEX 01."""
    sheet = tmp_path / "disc.cue"
    sheet.write_text('FILE "t01.bin" BINARY\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                     "  TRACK 02 MODE1/2352\n    INDEX 00 00:03:00\n"
                     'FILE "t02.bin" BINARY\n    INDEX 01 00:00:00\n')
    tracks = parse_sheet(str(sheet))
    assert [(t.number, t.start_s, t.end_s) for t in tracks["t01.bin"]] == [(1, 0.0, 3.0)] and tracks["t02.bin"] == []
    sheet.write_text('FILE "disc.bin" BINARY\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                     "  TRACK 02 MODE1/2352\n    INDEX 00 00:03:80\n    INDEX 01 00:05:00\n")
    assert [(t.number, t.start_s, t.end_s) for t in parse_sheet(str(sheet))["disc.bin"]] == [(1, 0.0, 5.0)]


def test_a_file_named_as_a_tracks_entry_is_a_problem_not_the_track(tmp_path):
    """A stray file named "Album Image.flac#02" beside the image stood in for track 02:
    every reader of that name opened it, and the track was never analysed."""
    image, _ = _album(tmp_path / "album")
    stray = tmp_path / "album" / "Album Image.flac#02"
    stray.write_bytes(b"not the track")
    found = scan([tmp_path / "album"])
    assert [os.path.basename(f) for f in found.files] == ["Album Image.flac#01", "Album Image.flac#03"]
    assert [(p.path, "stands where track 02 of Album Image.flac" in p.message) for p in found.problems] == \
        [(str(stray), True)]


def test_macos_apple_double_companions_are_ignored_not_failed(library):
    """macOS leaves "._name" metadata beside each file on FAT or network drives: each
    was taken as audio, failed as "not a decodable audio file", and every run of such
    a library exited 3. A "._" file that is audio (no AppleDouble header) is taken."""
    album = library / "albums" / "a"
    (album / "._1.flac").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000))
    write(album / "._real.wav", synth.sine(440, 0.5, SR), SR)
    found = scan([album])
    assert _names(found, library) == ["albums/a/._real.wav", "albums/a/1.flac", "albums/a/2.wav"]
    assert found.ignored["macOS ._ metadata"] == 1


def test_a_folder_of_links_neither_renames_nor_brings_back_what_the_walk_leaves_out(library):
    """A "Favourites" folder of links sorted before the albums: each file was named by
    its link (by its own name when the folder sorted after them), and a link to an
    excluded folder, or file, took it in all the same under the link's name."""
    favourites = library / "00-Favourites"
    favourites.mkdir()
    os.symlink("../albums/a", favourites / "a")
    os.symlink("../Podcasts/ep1.mp3", favourites / "ep1.mp3")
    assert _names(scan([library]), library) == [
        "Podcasts/ep1.mp3", "albums/a/1.flac", "albums/a/2.wav", "albums/b/3.flac"]
    (library / ".fpcliignore").write_text("albums/a/\nPodcasts/\n")
    found = scan([library])
    assert _names(found, library) == ["albums/b/3.flac"]
    assert found.ignored["excluded"] == 1 and found.skipped_folders["excluded"] == 3
    (library / ".fpcliignore").unlink()
    assert _names(scan([library], exclude=["/albums/a/"]), library) == ["Podcasts/ep1.mp3", "albums/b/3.flac"]
    outside = library.parent / "elsewhere"
    outside.mkdir()
    write(outside / "x.wav", synth.sine(440, 0.5, SR), SR)
    os.symlink(outside, favourites / "elsewhere")   # outside the root: its own rules are not known, taken
    assert "00-Favourites/elsewhere/x.wav" in _names(scan([library], exclude=["/albums/a/"]), library)


def test_a_double_star_folder_pattern_excludes_the_folders_inside_not_the_one_named(library):
    """git reads `albums/**/` as the folders inside albums: the files of albums itself
    stay. pathspec's folder form matched albums too, and its files."""
    write(library / "albums" / "top.wav", synth.sine(440, 0.5, SR), SR)
    (library / ".fpcliignore").write_text("albums/**/\n")
    assert [n for n in _names(scan([library]), library) if n.startswith("albums")] == ["albums/top.wav"]
    (library / ".fpcliignore").write_text("albums/**/\n!albums/b/\n")
    assert [n for n in _names(scan([library]), library) if n.startswith("albums")] == ["albums/b/3.flac",
                                                                                        "albums/top.wav"]


def test_a_link_check_reads_each_ignore_file_once_and_reports_its_problems_once(library, monkeypatch):
    """The check of what a link points to read the ignore files on its way again for
    every link, by their real paths: a bad line was reported twice (walked relative),
    and 10,000 links to files took 2-4 times as long to walk."""
    from fpcli import scan as scan_module

    (library / ".fpcliignore").write_text("[z-a]\n")
    (library / "albums" / ".fpcliignore").write_text("[z-a]\n")
    favourites = library / "Fav"
    favourites.mkdir()
    reads = []
    original = scan_module._ignore_file
    monkeypatch.setattr(scan_module, "_ignore_file", lambda *args: reads.append(args[0]) or original(*args))
    monkeypatch.chdir(library.parent)
    counts = []
    for links in (2, 20):
        for i in range(links):
            if not (favourites / f"{i}.wav").exists():
                os.symlink("../albums/a/2.wav", favourites / f"{i}.wav")
        reads.clear()
        found = scan([library.name])
        assert len(found.problems) == 2, found.problems   # each bad line once
        counts.append(len(reads))
    assert counts[0] == counts[1]   # not once more per link


def test_a_folder_given_inside_a_folder_an_ignore_file_above_leaves_out_is_left_out(library):
    """`Podcasts/` in ~/Music/.fpcliignore left out a walk of ~/Music/Podcasts (as git,
    walked from ~/Music); a file matched only through a folder was then taken back
    for every pattern form but `Podcasts/*` and `Podcasts/**`."""
    (library / "Podcasts" / "sub").mkdir()
    write(library / "Podcasts" / "sub" / "ep2.wav", synth.sine(440, 0.5, SR), SR)
    for pattern in ("Podcasts/", "Podcasts", "/Podcasts", "Podcasts/*", "Podcasts/**"):
        (library / ".fpcliignore").write_text(pattern + "\n")
        assert scan([library / "Podcasts"]).files == [], pattern
        assert _names(scan([library / "albums"]), library) == ["albums/a/1.flac", "albums/a/2.wav",
                                                               "albums/b/3.flac"], pattern
    (library / ".fpcliignore").write_text("*/\n!*/\n")
    assert len(scan([library / "Podcasts"]).files) == 2


def test_a_link_into_a_linked_folder_does_not_bring_back_what_is_left_out(tmp_path):
    """~/Music/Albums a link to /mnt/disk/Albums: a link in Favourites to an excluded
    album lies under the root only by its written path, and it was taken."""
    for album in ("a", "b"):
        (tmp_path / "disk" / "Albums" / album).mkdir(parents=True)
    write(tmp_path / "disk" / "Albums" / "a" / "1.wav", synth.sine(440, 0.5, SR), SR)
    write(tmp_path / "disk" / "Albums" / "b" / "2.wav", synth.sine(330, 0.5, SR), SR)
    music = tmp_path / "Music"
    (music / "Fav").mkdir(parents=True)
    os.symlink(tmp_path / "disk" / "Albums", music / "Albums")
    os.symlink("../Albums/a", music / "Fav" / "a")
    os.symlink("../Albums/a/1.wav", music / "Fav" / "one.wav")
    (music / ".fpcliignore").write_text("Albums/a/\n")
    assert _names(scan([music]), music) == ["Albums/b/2.wav"]
    (music / ".fpcliignore").unlink()
    assert _names(scan([music], exclude=["/Albums/a/"]), music) == ["Albums/b/2.wav"]


def test_a_folder_given_with_a_trailing_slash_keeps_its_ignore_rules_below(library):
    """scan(["dir/"]) looked up its subfolders' rules under "dir", where they were not."""
    (library / ".fpcliignore").write_text("*.wav\n")
    assert _names(scan([str(library) + "/"]), library) == _names(scan([library]), library)
    assert "albums/a/2.wav" not in _names(scan([str(library) + "/"]), library)


def test_only_audio_named_dot_underscore_files_are_opened_for_an_apple_double_header(library, monkeypatch):
    from fpcli import scan as scan_module

    (library / "albums" / "a" / "._cover.jpg").write_bytes(b"\x00\x05\x16\x07")
    opened = []
    monkeypatch.setattr(scan_module, "_is_apple_double", lambda path: opened.append(path) or True)
    found = scan([library / "albums"])
    assert opened == [] and found.ignored[".jpg"] == 2   # cover.jpg and its companion, by extension


def test_a_deeper_ignore_file_takes_back_a_folder_given_that_one_above_leaves_out(tmp_path):
    """`Podcasts/` two folders up and `!Podcasts/` one folder up: git takes the folder
    (the deepest file that says anything decides), and so did a walk of its parent;
    a walk of the folder itself took nothing."""
    music = tmp_path / "Music"
    (music / "Podcasts").mkdir(parents=True)
    write(music / "Podcasts" / "ep.wav", synth.sine(440, 0.5, SR), SR)
    (tmp_path / ".fpcliignore").write_text("Podcasts/\n")
    (music / ".fpcliignore").write_text("!Podcasts/\n")
    assert _names(scan([music / "Podcasts"]), music) == ["Podcasts/ep.wav"]
    assert _names(scan([music]), music) == ["Podcasts/ep.wav"]


def test_a_named_album_image_in_a_folder_left_out_is_still_split_by_its_sheet(tmp_path):
    """A file named is taken though its folder is left out, and so is the sheet beside
    it: the image was analysed as one whole track instead of its tracks."""
    album = tmp_path / "Music" / "Live" / "al"
    album.mkdir(parents=True)
    write(album / "album.wav", synth.sine(440, 4.0, SR), SR)
    (album / "album.cue").write_text('FILE "album.wav" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                                     '  TRACK 02 AUDIO\n    INDEX 01 00:02:00\n')
    (tmp_path / "Music" / ".fpcliignore").write_text("Live/\n")
    assert [os.path.basename(f) for f in scan([album / "album.wav"]).files] == ["album.wav#01", "album.wav#02"]


def test_a_folder_given_through_a_link_and_dot_dot_is_the_one_the_system_opens(tmp_path, monkeypatch):
    """`fpcli analyze link/..` walks the folder above the link's target, as the system
    opens it; a normpath of the root folded it to the current folder."""
    (tmp_path / "x" / "target" / "sub").mkdir(parents=True)
    write(tmp_path / "x" / "target" / "t.wav", synth.sine(440, 0.5, SR), SR)
    (tmp_path / "here").mkdir()
    write(tmp_path / "here" / "c.wav", synth.sine(330, 0.5, SR), SR)
    os.symlink(tmp_path / "x" / "target" / "sub", tmp_path / "here" / "link")
    monkeypatch.chdir(tmp_path / "here")
    assert scan(["link/.."]).files == ["link/../t.wav"]


def test_a_link_in_a_linked_folder_is_judged_where_its_target_really_lies(tmp_path):
    """~/Music/Fav a link to /elsewhere/Fav, whose x.wav points to ../Albums/a/1.wav:
    really /elsewhere/Albums/a/1.wav, outside the library, but ".." folded on the
    link's name made it ~/Music/Albums/a/1.wav, left out by `Albums/a/`."""
    (tmp_path / "elsewhere" / "Albums" / "a").mkdir(parents=True)
    (tmp_path / "elsewhere" / "Fav").mkdir()
    write(tmp_path / "elsewhere" / "Albums" / "a" / "1.wav", synth.sine(440, 0.5, SR), SR)
    os.symlink("../Albums/a/1.wav", tmp_path / "elsewhere" / "Fav" / "x.wav")
    music = tmp_path / "Music"
    music.mkdir()
    os.symlink(tmp_path / "elsewhere" / "Fav", music / "Fav")
    (music / ".fpcliignore").write_text("Albums/a/\n")
    assert _names(scan([music]), music) == ["Fav/x.wav"]


def test_a_relative_link_inside_a_linked_folder_is_judged_by_its_name_under_the_library(tmp_path):
    """~/Music/Albums a link to /mnt/disk/Albums, and Albums/Fav/pods -> ../Podcasts:
    by its name ~/Music/Albums/Podcasts, which `Podcasts/` leaves out; judged only
    from its real folder (outside the library) it was taken."""
    disk = tmp_path / "disk" / "Albums"
    (disk / "Podcasts").mkdir(parents=True)
    (disk / "Fav").mkdir()
    write(disk / "Podcasts" / "ep.wav", synth.sine(440, 0.5, SR), SR)
    os.symlink("../Podcasts", disk / "Fav" / "pods")
    os.symlink("../Podcasts/ep.wav", disk / "Fav" / "l.wav")
    music = tmp_path / "Music"
    music.mkdir()
    os.symlink(disk, music / "Albums")
    (music / ".fpcliignore").write_text("Podcasts/\n")
    assert scan([music]).files == []


def test_a_root_through_a_link_and_dot_dot_takes_the_ignore_files_above_where_it_is(tmp_path, monkeypatch):
    """`link/..` is the folder above the link's target; the ignore files above it were
    read above the current folder instead."""
    (tmp_path / "t3" / "A" / "B").mkdir(parents=True)
    (tmp_path / "t3" / "A" / "C").mkdir()
    write(tmp_path / "t3" / "A" / "C" / "c.wav", synth.sine(440, 0.5, SR), SR)
    (tmp_path / "t3" / ".fpcliignore").write_text("A/\n")
    (tmp_path / "t2").mkdir()
    os.symlink(tmp_path / "t3" / "A" / "B", tmp_path / "t2" / "link")
    monkeypatch.chdir(tmp_path / "t2")
    assert scan(["link/.."]).files == []


def test_a_root_with_dot_dot_before_a_linked_folder_reads_the_ignore_files_above_its_name(tmp_path, monkeypatch):
    """`../Music`, ~/Music a link to /mnt/disk/Music: the whole root was resolved for
    its "..", so the ignore files above /mnt/disk/Music were read instead of ~/'s,
    and `Music/Podcasts/` in ~/.fpcliignore no longer left Podcasts out."""
    disk = tmp_path / "disk" / "Music"
    (disk / "Podcasts").mkdir(parents=True)
    (disk / "Rock").mkdir()
    write(disk / "Podcasts" / "ep.wav", synth.sine(440, 0.5, SR), SR)
    write(disk / "Rock" / "a.wav", synth.sine(330, 0.5, SR), SR)
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    os.symlink(disk, home / "Music")
    (home / ".fpcliignore").write_text("Music/Podcasts/\n")
    monkeypatch.chdir(home / "sub")
    assert scan(["../Music"]).files == ["../Music/Rock/a.wav"]
    assert scan([str(home / "Music")]).files == [str(home / "Music" / "Rock" / "a.wav")]


def test_an_absolute_exclude_is_anchored_under_the_folder_link_dot_dot_opens(tmp_path, monkeypatch):
    """`--exclude ~/t2/B` with the root `link/..` (the folder above the link's target,
    t3/A) was anchored as if the root were the current folder, and left out t3/A/B."""
    (tmp_path / "t3" / "A" / "B").mkdir(parents=True)
    (tmp_path / "t3" / "A" / "C").mkdir()
    write(tmp_path / "t3" / "A" / "B" / "b.wav", synth.sine(440, 0.5, SR), SR)
    (tmp_path / "t2" / "B").mkdir(parents=True)
    os.symlink(tmp_path / "t3" / "A" / "C", tmp_path / "t2" / "link")
    monkeypatch.chdir(tmp_path / "t2")
    assert scan(["link/.."], exclude=[str(tmp_path / "t2" / "B")]).files == ["link/../B/b.wav"]
