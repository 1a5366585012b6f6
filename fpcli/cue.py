"""CUE sheets: an album image (one audio file) with a ``.cue`` sheet becomes one entry
per track, named ``<image path>#NN`` (e.g. ``album.flac#03``), analysed, stored,
searched and listed on its own; the image itself is not a track.

A track runs from its ``INDEX 01`` to the next track's ``INDEX 01`` (a pregap stays
with the track before it, as most splitters do); the last track runs to the end of
the image, which no track may start after (its header says its length). Times are
mm:ss:ff with 75 frames per second (the CD sector rate).
Sheets referencing one audio file per track describe ordinary files and add nothing.

A ``BINARY`` or ``MOTOROLA`` FILE (a BIN/CUE image from cdrdao, ImgBurn and the like)
is raw CD audio: 16-bit stereo samples at 44.1 kHz without a header, little-endian or
big-endian; its tracks are tracks even when it holds one (``disc.bin#01``). Data
tracks (``MODE1/2352`` of an enhanced CD) are no tracks; they still end the track
before them, at their ``INDEX 00`` when they have one.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import os
import re
import stat
import threading
import unicodedata
from collections.abc import Callable

from fpcli.files import read_regular

CUE_EXTENSION = ".cue"
MAX_SHEET_BYTES = 1 << 20
SHEETS_KEPT = 64   # sheets parsed and kept per process (a folder's sheets, while its tracks are analysed)
MAX_TRACK = 999   # a disc has at most 99; the entry's number has 2 or 3 digits
_ENTRY = re.compile(r"^(?P<image>.+)#(?P<number>[0-9]{2,3})$", re.DOTALL)   # not \d: ٠٢ is no track number
_TIME = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})$")
# FILE types of raw CD audio and the byte order of their samples (numpy's notation).
RAW_CD_FILE_TYPES = {"BINARY": "<", "MOTOROLA": ">"}


class CueError(Exception):
    """A CUE sheet that cannot be used (unreadable, tracks out of order, or past the end of the image)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path


@dataclasses.dataclass(frozen=True)
class CueTrack:
    """One track of an album image: the image's path, its number, and where it starts
    and ends in seconds (``end_s`` None: the end of the image)."""

    image: str
    number: int
    start_s: float
    end_s: float | None
    byte_order: str | None = None   # "<" / ">": the image is raw CD audio (BINARY / MOTOROLA)

    @property
    def entry(self) -> str:
        """The track's path as fpcli lists it: ``<image>#NN``."""
        return f"{self.image}#{self.number:02d}"

    @property
    def salt(self) -> str:
        """What tells this track's identity apart from the image's and its siblings' (and,
        for raw CD audio, from the same bytes read in the other byte order: a sheet
        corrected from BINARY to MOTOROLA was served the fingerprints of the noise)."""
        order = f":{self.byte_order}" if self.byte_order else ""
        return f"#{self.number}:{self.start_s!r}:{self.end_s!r}{order}"


_SHEETS_READ: collections.OrderedDict[tuple[str, int, int, int, int], dict[str, list[CueTrack] | CueError]] = \
    collections.OrderedDict()
_SHEETS_READ_LOCK = threading.Lock()


def parse_sheet(path: str, present: Callable[[str], bool] = lambda name: True) -> dict[str, list[CueTrack]]:
    """{image file name as written in the sheet: its tracks in order} of the FILEs
    ``present`` accepts (a sheet may name files that are not there: they add nothing);
    ``CueError`` for a sheet that cannot be read or whose times go backwards."""
    tracks: dict[str, list[CueTrack]] = {}
    for name, parsed in _read_sheet(path).items():
        if present(name):
            if isinstance(parsed, CueError):
                raise CueError(parsed.path, str(parsed))
            tracks[name] = parsed
    return tracks


def _read_sheet(path: str) -> dict[str, list[CueTrack] | CueError]:
    """{FILE as written: its tracks, or why they cannot be used}, read once per version
    of the sheet (its inode, size and time) in a process: each track of an image is
    opened alone (``album.flac#07`` reads its folder's sheets), and a sheet of 999
    tracks was read and parsed again for every one of them, 153 s for one album."""
    try:
        st = os.stat(path)
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        key = None
    if key is not None:
        with _SHEETS_READ_LOCK:   # a Dask worker runs its tasks in threads
            known = _SHEETS_READ.get(key)
            if known is not None:
                _SHEETS_READ.move_to_end(key)
                return known
    files = _entries_of(path)
    parsed: dict[str, list[CueTrack] | CueError] = {}
    for name, sheet_file in files.items():
        try:
            parsed[name] = _tracks(path, name, sheet_file)
        except CueError as exc:
            parsed[name] = exc
    if key is not None:
        with _SHEETS_READ_LOCK:
            _SHEETS_READ[key] = parsed
            while len(_SHEETS_READ) > SHEETS_KEPT:
                _SHEETS_READ.popitem(last=False)
    return parsed


@dataclasses.dataclass
class _Entry:
    """A TRACK of a sheet as written: its number, type (AUDIO, MODE1/2352, CDG, ...),
    and INDEX 01 and 00 times (None: not given in this FILE)."""

    number: int
    kind: str
    start: str | None = None
    pregap: str | None = None

    @property
    def audio(self) -> bool:
        return self.kind == "AUDIO"


@dataclasses.dataclass
class _SheetFile:
    """A FILE of a sheet as written: its type (WAVE, BINARY, MP3, ...) and its tracks."""

    file_type: str
    entries: list[_Entry] = dataclasses.field(default_factory=list)
    data_from: str | None = None   # INDEX 00 of a data track whose INDEX 01 is in the next FILE


def _entries_of(path: str) -> dict[str, _SheetFile]:
    """{FILE as written: its type and tracks}."""
    try:
        raw = read_regular(path, MAX_SHEET_BYTES + 1)
    except OSError as exc:
        raise CueError(path, f"cannot read the CUE sheet: {exc.strerror or exc}") from None
    if len(raw) > MAX_SHEET_BYTES:
        # No sheet is that large: any file of that name, as a small one without FILE
        # lines is (it was a problem, exit 3 on every run, where a small one was ignored).
        return {}
    text = _decode(raw, os.path.dirname(path))
    files: dict[str, _SheetFile] = {}
    current: list[_Entry] | None = None
    current_file: _SheetFile | None = None
    for line in text.splitlines():
        words = line.strip().split()
        if not words:
            continue
        keyword = words[0].upper()
        if keyword == "FILE":
            # A track whose INDEX 01 is not given yet starts in the next FILE: EAC's
            # per-track sheets put a track's pregap (INDEX 00) at the end of the file
            # before it. It was "track 02 has no INDEX 01", exit 3 on every run.
            carried = current.pop() if current and current[-1].start is None else None
            if carried is not None and current_file is not None and not carried.audio:
                current_file.data_from = carried.pregap   # the data sectors begin there in the file before
            name, file_type = _file_name_and_type(line)
            current_file = files.setdefault(name, _SheetFile(file_type))
            current = current_file.entries
            if carried is not None:   # its INDEX 00 was a time in the file before
                current.append(dataclasses.replace(carried, pregap=None))
        elif keyword == "TRACK" and current is not None and len(words) >= 2 and _is_number(words[1]):
            current.append(_Entry(int(words[1]), words[2].upper() if len(words) >= 3 else "AUDIO"))
        elif keyword == "INDEX" and current and len(words) >= 3 and _is_number(words[1]) and int(words[1]) in (0, 1):
            if int(words[1]) == 1:   # INDEX 1 as INDEX 01
                current[-1].start = words[2]
            else:
                current[-1].pregap = words[2]
    return files


def _is_number(word: str) -> bool:
    """ASCII digits: str.isdigit took "²" (a Latin-1 sheet), which int() then refused
    with a traceback, and "٠٢" as track 2."""
    return word.isascii() and word.isdigit()


def _tracks(sheet: str, name: str, sheet_file: _SheetFile) -> list[CueTrack]:
    """The audio tracks of one FILE. A number given twice (the second track was lost
    under the first one's name) or a track without INDEX 01 (only INDEX 00: where it
    starts is unknown) makes the sheet unusable, said so, rather than silently short.
    The times of a FILE of one track are not read: it is an ordinary file, whole
    (raw CD audio is no file a decoder reads: its one track is read from its start).
    A track runs to the next one's INDEX 01, or to its INDEX 00 when the next is a
    data track (an enhanced CD's pregap of data sectors is no audio of the track)."""
    entries = sheet_file.entries
    byte_order = RAW_CD_FILE_TYPES.get(sheet_file.file_type)
    counts = collections.Counter(entry.number for entry in entries)
    if twice := sorted(n for n, count in counts.items() if count > 1):
        raise CueError(sheet, f"track {twice[0]:02d} appears twice in {name}")
    if missing := [entry.number for entry in entries if entry.start is None]:
        raise CueError(sheet, f"track {missing[0]:02d} of {name} has no INDEX 01 (where it starts)")
    if beyond := [entry.number for entry in entries if entry.number > MAX_TRACK]:
        # Its entry (album.flac#1000) would name no track: it failed as "no such file".
        raise CueError(sheet, f"track {beyond[0]} of {name}: a sheet numbers its tracks 1-99 (up to {MAX_TRACK} "
                              "are read)")
    if byte_order is not None:
        _check_raw_sectors(sheet, name, entries)
    if len(entries) < 2 and byte_order is None:
        return [CueTrack(name, entry.number, 0.0, None) for entry in entries if entry.audio]
    tracks = []
    for entry, following in zip(entries, [*entries[1:], None], strict=True):
        start, end = _seconds(sheet, str(entry.start)), _pregap_seconds(sheet_file.data_from)
        if following is not None:
            end = _seconds(sheet, str(following.start))
            if not following.audio and (pregap := _pregap_seconds(following.pregap)) is not None:
                end = min(end, pregap)
        if end is not None and end <= start:
            raise CueError(sheet, f"track {entry.number:02d} ends before it starts ({start:.2f} s, then {end:.2f} s)")
        if entry.audio:
            tracks.append(CueTrack(name, entry.number, start, end, byte_order))
    return tracks


def _pregap_seconds(text: str | None) -> float | None:
    """An INDEX 00 time in seconds; None when none is given, or it is no time (a pregap
    is a refinement: a bad one leaves the track to end at the next INDEX 01, where an
    audio track's bad INDEX 00 was never read at all)."""
    if text is None:
        return None
    try:
        return _seconds("", text)
    except CueError:
        return None


def _check_raw_sectors(sheet: str, name: str, entries: list[_Entry]) -> None:
    """CueError unless the audio of a raw image can be found: the sheet's times are
    byte positions when every sector before an audio track has a CD's 2352 bytes (a
    75th of a second). A data track of 2048-byte sectors (``MODE1/2048``) moves every
    position after it (alone in its FILE, or after the audio, it moves none), and a
    karaoke track (``CDG``) is audio with its graphics mixed into the samples."""
    from fpcli.audio.raw import CD_SECTOR_BYTES  # only for a raw image, which is then read

    for i, entry in enumerate(entries):
        odd = not entry.audio and not entry.kind.endswith(f"/{CD_SECTOR_BYTES}")
        if entry.kind == "CDG" or (odd and any(later.audio for later in entries[i + 1:])):
            raise CueError(sheet, f"track {entry.number:02d} of {name} is {entry.kind}: only raw images of audio "
                                  f"and {CD_SECTOR_BYTES}-byte sectors can be read")


# What older rippers wrote sheets in, tried in turn where a sheet is no UTF-8: Windows'
# Western (EAC's ’ – “ ” … in file names), Japanese, Chinese and Korean code pages.
LEGACY_ENCODINGS = ("cp1252", "cp932", "gbk", "cp949")


def _decode(raw: bytes, folder: str) -> str:
    """Sheets are UTF-8 (maybe with a BOM), UTF-16 with its BOM (some Windows tools
    write it; read as Latin-1 it held no FILE line and was skipped without a word) or,
    from older rippers, a legacy code page: the first of LEGACY_ENCODINGS in which a
    FILE names a file of the sheet's ``folder``, else Latin-1. Read as Latin-1, a
    cp1252 or Shift-JIS sheet named no file, and its image was analysed whole
    without a word."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    resolve: Callable[[str], str | None] | None = None
    for encoding in LEGACY_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if resolve is None:
            resolve = _folder_resolver(folder)
            if resolve is None:
                break
        if any(resolve(_file_name_and_type(line)[0]) for line in text.splitlines()
               if line.strip()[:4].upper() == "FILE"):
            return text
    return raw.decode("latin-1")


def _folder_resolver(folder: str) -> Callable[[str], str | None] | None:
    """``_image_resolver`` of ``folder``'s files, made once per version of the folder
    (its inode and time) in a process: each sheet that is no UTF-8 listed its folder
    and made it again (1,500 cp1252 sheets in one folder: 7.5 s against 0.27 s for
    UTF-8 ones). None when the folder cannot be listed."""
    try:
        st = os.stat(folder or ".")
        return _resolver_of_version(folder, st.st_ino, st.st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _resolver_of_version(folder: str, inode: int, mtime_ns: int) -> Callable[[str], str | None]:
    """``_image_resolver`` of ``folder`` as it is at this inode and time (the cache's key)."""
    return _image_resolver(os.listdir(folder or "."))


def _file_name_and_type(line: str) -> tuple[str, str]:
    """The file name and type (upper case; WAVE when none) of a FILE line."""
    rest = line.strip()[4:].strip()
    if rest.startswith('"'):
        name, _, after = rest[1:].partition('"')
        return name, (after.split() or ["WAVE"])[0].upper()
    if " " not in rest:
        return rest, "WAVE"
    name, file_type = rest.rsplit(" ", 1)
    return name, file_type.upper()


def _seconds(sheet: str, text: str) -> float:
    match = _TIME.match(text)
    if not match:
        raise CueError(sheet, f"bad INDEX time {text!r} (expected mm:ss:ff)")
    minutes, seconds, frames = (int(g) for g in match.groups())
    if seconds >= 60 or frames >= 75:  # 00:03:80 read as 3 + 80/75 s moved a boundary by a second
        raise CueError(sheet, f"bad INDEX time {text!r} (seconds 0-59, frames 0-74: 75 frames a second)")
    return minutes * 60 + seconds + frames / 75


@dataclasses.dataclass
class FolderSheets:
    """What the ``.cue`` files of one folder say: the tracks of its album images, the
    images' and the usable sheets' file names, and each sheet that cannot be used."""

    tracks: list[CueTrack] = dataclasses.field(default_factory=list)
    images: set[str] = dataclasses.field(default_factory=set)
    sheets: set[str] = dataclasses.field(default_factory=set)
    errors: list[CueError] = dataclasses.field(default_factory=list)
    shadowed: set[str] = dataclasses.field(default_factory=set)   # sheets whose images another one split


def cue_tracks_of_folder(folder: str, names: list[str]) -> FolderSheets:
    """The sheets among ``names`` (files of ``folder``) read one by one. An image is a
    FILE of a sheet that exists in the folder and holds two or more tracks, or one of
    raw CD audio (which no decoder reads as a file). A sheet
    that cannot be used is one error, and the others still apply: the first bad one
    stopped them all, and a two-disc folder with a typo in one sheet stored both
    images whole."""
    resolve = _image_resolver(names)
    found = FolderSheets()
    # Of two sheets of one image, the one named as the image is (album.cue for
    # album.flac) splits it, then the first by name: "album (old).cue" sorted first and
    # won over album.cue. The other is counted as such by the scan.
    stems = {os.path.splitext(n)[0] for n in names if not n.lower().endswith(CUE_EXTENSION)}
    sheets = [n for n in names if n.lower().endswith(CUE_EXTENSION)]
    for name in sorted(sheets, key=lambda n: (os.path.splitext(n)[0] not in stems, n)):
        sheet = os.path.join(folder, name)
        try:
            # A sheet whose image is not here adds nothing, without a word: a sheet left
            # beside the tracks it was split into must not fail every run.
            files = parse_sheet(sheet, lambda written: resolve(written) is not None)
            _add_sheet(found, sheet, name, folder,
                       {(image := str(resolve(written))): _as_read(image, t) for written, t in files.items()})
        except CueError as exc:
            found.errors.append(exc)
    return found


def _as_read(image: str, tracks: list[CueTrack]) -> list[CueTrack]:
    """``tracks`` as ``image`` is read: a file of an audio extension is decoded, also
    when the sheet calls it BINARY (the disc.flac that disc.bin was converted to, found
    by its stem, is no raw CD audio)."""
    from fpcli.extensions import AUDIO_EXTENSIONS

    if os.path.splitext(image)[1].lower() not in AUDIO_EXTENSIONS:
        return tracks
    return [dataclasses.replace(t, byte_order=None) for t in tracks]


def _image_resolver(names: list[str]) -> Callable[[str], str | None]:
    """The file of a folder (of ``names``) that a sheet's FILE means: the name as
    written (its base name: Windows rippers write paths), else the one file whose name
    differs only in case or Unicode normalisation (a sheet from Windows, a folder from
    a Mac), else the one audio file of the same stem (EAC writes album.wav in the
    sheet and then compresses the rip to album.flac). None when none, or several."""
    from fpcli.extensions import AUDIO_EXTENSIONS

    present = set(names)

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    by_name: dict[str, list[str]] = {}
    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_name.setdefault(key(name), []).append(name)
        stem, extension = os.path.splitext(name)
        if extension.lower() in AUDIO_EXTENSIONS:
            by_stem.setdefault(key(stem), []).append(name)

    def resolve(written: str) -> str | None:
        base = _base_name(written)
        if base in present:
            return base
        for candidates in (by_name.get(key(base), []), by_stem.get(key(os.path.splitext(base)[0]), [])):
            if len(candidates) == 1:
                return candidates[0]
        return None

    return resolve


def _add_sheet(found: FolderSheets, sheet: str, name: str, folder: str, files: dict[str, list[CueTrack]]) -> None:
    """Add a parsed sheet's images (``files``: by their file names in ``folder``) to
    ``found`` (an image another sheet split is left to it), all or none: a CueError for
    a track past its image's end adds nothing."""
    taken = []
    splits = [image for image, image_tracks in files.items()
              if len(image_tracks) >= 2 or any(t.byte_order for t in image_tracks)]
    for image in splits:
        if image not in found.images:
            path = os.path.join(folder, image)
            _check_within(sheet, path, files[image])
            taken.append((image, [dataclasses.replace(t, image=path) for t in files[image]]))
    if splits and not taken:
        found.shadowed.add(name)
    for image, tracks in taken:
        found.images.add(image)
        found.sheets.add(name)
        found.tracks += tracks


def _base_name(written: str) -> str:
    """The file name of a sheet's FILE (Windows rippers write backslashes)."""
    return os.path.basename(written.replace("\\", "/"))


def album_image_of(path: str) -> str | None:
    """The album image of a CUE sheet ``path`` is (its tracks are the tracks: the image
    is none): ``path`` itself, or for a link to an image the file it points to, whose
    tracks are named ``IMAGE#NN`` (the scan takes a link to an image as its tracks, and
    a search or --every through the link stored the image as a track). None when
    ``path`` is no album image, or its folder cannot be read or its sheet is unusable
    (then the file is an ordinary one, as the scan takes it)."""
    if _beside_its_sheet(path):
        return path
    if os.path.islink(path) and _beside_its_sheet(real := os.path.realpath(path)):
        return real
    return None


def _beside_its_sheet(path: str) -> bool:
    folder, name = os.path.split(path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return False
    if not any(n.lower().endswith(CUE_EXTENSION) for n in names):
        return False
    return name in cue_tracks_of_folder(folder or ".", names).images


def _check_within(sheet: str, image: str, tracks: list[CueTrack]) -> None:
    """``CueError`` for a track that starts at or after the end of its image (a sheet
    of another rip, a typo in a time): read, it has no audio at all, and it failed as
    "no audio frames could be decoded", naming neither the sheet nor the time."""
    seconds = _image_seconds(image, tracks[0].byte_order if tracks else None)
    late = next((t for t in tracks if seconds is not None and t.start_s >= seconds), None)
    if late is not None:
        raise CueError(sheet, f"track {late.number:02d} starts at {late.start_s:.2f} s, after the end of "
                              f"{os.path.basename(image)} ({seconds:.2f} s)")


def _image_seconds(image: str, byte_order: str | None) -> float | None:
    """The image's length as its header states it (raw CD audio: as its size does);
    None when unknown (an image that cannot be opened is reported by its own analysis;
    an estimated length, as of an MP3 without a stated frame count, might be short)."""
    from fpcli.audio import MAX_STATED_S, open_source  # the decoders: only for a folder with a sheet
    from fpcli.errors import AudioReadError

    try:
        source = open_source(image, cd_byte_order=byte_order)
    except (AudioReadError, OSError):
        return None
    source.close()
    seconds = source.expected_frames / source.info.samplerate
    if not source.length_exact or source.expected_frames <= 0 or seconds > MAX_STATED_S:
        return None
    return seconds


def is_entry(path: str) -> bool:
    """Whether ``path`` is shaped as a CUE track's entry (``album.flac#03``) with no
    file of that name. Reads no sheet: an entry whose sheet has changed since is still
    no file a player could open (``track_of_entry`` finds the track itself)."""
    return _ENTRY.match(path) is not None and not os.path.lexists(path)


def _entry_tracks(path: str) -> tuple[int, str, list[CueTrack]] | None:
    """(the track number, the image's file name, the image's tracks) of an entry such
    as ``album.flac#03`` whose image is a file; None for any other path. The image's
    folder is read whole, as the walk reads it: with the image's name alone, album.wav
    beside album.flac was no match, and a sheet naming album.wav split album.flac."""
    match = _ENTRY.match(path)
    if match is None or not os.path.isfile(match["image"]):
        return None
    folder, name = os.path.split(match["image"])
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return None
    tracks = [t for t in cue_tracks_of_folder(folder or ".", names).tracks if os.path.basename(t.image) == name]
    return int(match["number"]), name, tracks


def missing_track_reason(path: str) -> str | None:
    """Why an entry such as ``album.flac#07`` names no track when its image is a file
    (it was "no such file or folder" beside the image), or None when ``path`` is no
    such entry, or its image is not there."""
    entry = _entry_tracks(path)
    if entry is None:
        return None
    number, name, tracks = entry
    if not tracks:
        return f"no usable CUE sheet beside {name} splits it into tracks"
    numbers = [t.number for t in tracks]
    return f"{name} has no track {number:02d} (its sheet lists {min(numbers):02d}-{max(numbers):02d})"


def track_of_entry(path: str) -> CueTrack | None:
    """The CUE track an entry such as ``album.flac#03`` names, or None when ``path`` is
    an ordinary path (a real file may be called ``Song #12.flac``: it wins)."""
    if _ENTRY.match(path) is None or os.path.lexists(path):   # the regex first: every analysed file asks
        return None
    entry = _entry_tracks(path)
    if entry is None:
        return None
    number, _, tracks = entry
    return next((t for t in tracks if t.number == number), None)


def salted(digest: str, salt: str) -> str:
    """A 32-hex-digit identity for a part of a file: the file's digest with the part."""
    return hashlib.blake2b(f"{digest}{salt}".encode(), digest_size=16).hexdigest() if salt else digest
