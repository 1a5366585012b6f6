"""Finding the tracks of a library: folders walked recursively in a stable order,
exclusions (``--exclude`` globs, ``.fpcliignore`` files in gitignore syntax, folders
marked ``.nomedia`` or ``.notmusic``), CUE sheets (an album image becomes one entry per
track, ``album.flac#03``), and an account of every file that is not analysed.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import stat
from collections.abc import Callable, Iterable, Iterator

import pathspec

from fpcli.cue import CUE_EXTENSION, CueTrack, cue_tracks_of_folder, missing_track_reason, track_of_entry
from fpcli.errors import ParameterError
from fpcli.extensions import AUDIO_EXTENSIONS
from fpcli.files import read_regular
from fpcli.ignore import compile_patterns, file_verdict, folder_verdict, lead_excluded
from fpcli.store.records import os_reason, resolve, stat_regular

IGNORE_FILE = ".fpcliignore"
MAX_IGNORE_BYTES = 64 << 20   # an ignore file is read whole: a bound on what a stray file costs
SKIP_MARKERS = (".nomedia", ".notmusic")
# A file already taken, reached again (by a link to it, or named twice): left out and
# counted, as a folder reached twice is (it vanished from the run unsaid).
SAME_FILE = "same file reached twice"
SHADOWED_SHEET = ".cue (its image split by another sheet)"


@dataclasses.dataclass(frozen=True)
class ScanProblem:
    path: str
    message: str


@dataclasses.dataclass
class Scan:
    """What a scan found: ``files`` to analyse (paths, or ``image#NN`` CUE tracks),
    ``problems`` (missing paths, unreadable folders, bad CUE sheets), ``ignored``:
    files not analysed, counted by reason (".jpg", "excluded", SAME_FILE, ...), and
    ``skipped_folders``: folders not walked again, counted by reason ("already
    scanned": given twice, inside another folder given, or linked to from inside the
    library; "symlink loop": a link to a folder above it). Skipping those is what a
    user wants (each file once), so they are not problems."""

    files: list[str] = dataclasses.field(default_factory=list)
    problems: list[ScanProblem] = dataclasses.field(default_factory=list)
    ignored: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    skipped_folders: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def ignored_summary(self) -> str:
        """"ignored 14 files: .jpg 9, .cue 2, excluded 3; skipped 1 folder: already
        scanned 1" ('' when nothing was ignored or skipped)."""
        notes = [_counted("ignored", "file", self.ignored), _counted("skipped", "folder", self.skipped_folders)]
        return "; ".join(note for note in notes if note)


def _counted(verb: str, noun: str, reasons: collections.Counter[str]) -> str:
    """"ignored 3 files: .jpg 2, .txt 1" ('' for no count)."""
    total = sum(reasons.values())
    if not total:
        return ""
    parts = ", ".join(f"{reason} {count}" for reason, count in reasons.most_common())
    return f"{verb} {total} {noun}{'s' if total != 1 else ''}: {parts}"


def scan(paths: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str] = ()) -> Scan:
    """Audio files (by extension) under ``paths``, recursively, in a stable order.

    Files given explicitly are taken whatever their extension, and so is one track
    of an album image named as the store names it (``album.flac#02``). Every file and folder
    is taken once however many ways it is reached (a folder given twice or inside
    another given, a symlink to a folder already walked or to one above it): a
    folder reached again is skipped and counted in ``skipped_folders``. Unreadable
    folders and missing paths (a path given that is a symlink loop) are reported as
    problems, never fatal. ``exclude``: gitignore-style
    patterns matched against paths relative to each root given.
    """
    result = Scan()
    spec, bad = compile_patterns(exclude)
    if bad:
        raise ParameterError("; ".join(f"{line!r} is not a valid pattern ({reason})" for _, line, reason in bad),
                             "exclude")
    walker = _Walker(result, spec, list(exclude))
    for root in map(os.fsdecode, paths):
        try:
            is_folder = stat.S_ISDIR(os.stat(root).st_mode)
        except OSError as exc:
            track = track_of_entry(root)
            if track is not None:   # album.flac#02, as `cache list` names it: that track alone
                walker.add_track(track)
            else:
                result.problems.append(ScanProblem(root, missing_track_reason(root) or os_reason(exc)))
            continue
        if is_folder:
            walker.walk(root)
        else:
            walker.add(root, given=True)
    return result


@dataclasses.dataclass
class _Sheets:
    """A folder's CUE sheets: their tracks, the album images they split (names), the
    sheets' own names, and the names of sheets that cannot be used (each reported once)."""

    tracks: list[CueTrack] = dataclasses.field(default_factory=list)
    images: set[str] = dataclasses.field(default_factory=set)
    names: set[str] = dataclasses.field(default_factory=set)
    bad: set[str] = dataclasses.field(default_factory=set)
    shadowed: set[str] = dataclasses.field(default_factory=set)   # usable, but their images another one split


# An ignore file's rules as a walk applies them: (base, rules, lead), a path matched as
# ``lead + its path relative to base``. Base is the ignore file's folder with lead "",
# or, for one above the folder walked, that folder with its path below the ignore file's.
_Rules = tuple[str, pathspec.PathSpec, str]


class _Walker:
    def __init__(self, result: Scan, exclude: pathspec.PathSpec, exclude_lines: list[str]) -> None:
        self.result = result
        self.exclude = exclude
        self.exclude_lines = exclude_lines
        self.rooted_excludes: dict[str, pathspec.PathSpec] = {}   # root walked -> --exclude for it
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: dict[str, tuple[int, int]] = {}   # real path -> (its place in files, rank of its name)
        self.seen_tracks: set[tuple[str, int]] = set()   # (image's real path, track number)
        self.real_folders: dict[str, str] = {}   # folder walked -> its realpath
        self.link_rules: dict[tuple[str, str], list[_Rules]] = {}   # (root's path, folder) -> its ignore files
        # ``_lies_left_out``: by the ids of the specs, which the value holds
        self.leads_excluded: dict[tuple[tuple[int, str], ...], tuple[tuple[pathspec.PathSpec, ...], bool]] = {}
        self.sheets: dict[tuple[str, frozenset[str]], _Sheets] = {}   # (folder, sheets used) -> read once
        self.walked_sheets: dict[str, _Sheets] = {}   # real folder walked -> the sheets its walk used
        self.sheets_alone: dict[str, _Sheets] = {}    # real folder -> the sheets for its files taken alone
        self.ignore_specs: dict[str, pathspec.PathSpec | None] = {}   # folder -> its ignore file, read once

    def add(self, path: str, real_folder: str | None = None, *, given: bool = False, root: str | None = None) -> None:
        """Take one file (once, however many ways it is reached). ``real_folder``: the
        symlink-free path of its folder, when known: then only a symlinked file needs a
        full ``realpath`` (one lstat per file instead of one per path component).

        Reached again by a better name, the file keeps its place under that name: a
        name given on the command line before one a walk found, a file's own name
        before a symlink's. The first name in walk order was kept, so a path named
        on the command line could get no line at all (a link to it in a folder given
        before it stood in for it), and a folder of a file and links to it reported
        the link that sorted first. ``root``: the folder walked, which a link found
        there (not given) must not take in what the walk leaves out. (A folder
        reached twice is walked once: ``_walk`` takes links to folders last.)"""
        is_link = os.path.islink(path)
        if real_folder is not None and not is_link:
            resolved = os.path.join(real_folder, os.path.basename(path))
        else:
            resolved = resolve(path)
        if is_link and root is not None and self._left_out_where_it_lies(path, resolved, root, False):
            self.result.ignored["excluded"] += 1
            return
        real_folder_of, name = os.path.split(resolved)
        sheets = self._sheets_beside(real_folder_of)
        if name in sheets.images:
            # An album image is its tracks however it is reached (named, or through a
            # link): it was analysed as one whole track too, and came back as a search
            # hit for its own track. Named as given, unless through a link (its sheet
            # lies beside the real file, where a track entry is read from).
            image = resolved if is_link else path
            for track in sheets.tracks:
                if os.path.basename(track.image) == name:
                    self.add_track(dataclasses.replace(track, image=image))
            return
        rank = 2 if given else 0 if is_link else 1
        seen = self.seen_files.get(resolved)
        if seen is not None:
            place, earlier = seen
            if earlier < 3:   # a file taken: one of its names is left out, counted (it vanished unsaid)
                self.result.ignored[SAME_FILE] += 1
            if rank > earlier:
                self.result.files[place] = path
                self.seen_files[resolved] = (place, rank)
            return
        try:
            stat_regular(resolved, named=given)  # a FIFO or device named *.wav would block the reader forever
        except OSError as exc:
            self.seen_files[resolved] = (-1, 3)   # reported once, never taken
            self.result.problems.append(ScanProblem(path, os_reason(exc)))
            return
        self.seen_files[resolved] = (len(self.result.files), rank)
        self.result.files.append(path)

    def _sheets_beside(self, folder: str) -> _Sheets:
        """The CUE sheets that split the files of ``folder`` when a file is taken alone
        (named on the command line, or reached through a link): those its walk used, if
        it was walked; else those that --exclude (matched against a sheet's name) and
        the ignore files of the folder and those above it leave in. A sheet left out
        was applied all the same to an image named, or to a folder whose image was
        named before it."""
        known = self.walked_sheets.get(folder) or self.sheets_alone.get(folder)
        if known is not None:
            return known
        try:
            names = os.listdir(folder or ".")
        except OSError:
            names = []
        own = self._ignore_spec(folder, names)
        rules = [*self._rules_above(folder), *([(folder, own, "")] if own is not None else [])]
        # A file named in a folder left out is taken all the same, and so are its sheets.
        ignored = self._ignored_by(folder, rules, whole_folder=False)
        found = self.sheets_alone[folder] = self._sheets(folder, [name for name in names if not (
            _is_sheet(name) and ignored(os.path.join(folder, name), False))])
        return found

    def _ignore_spec(self, folder: str, names: list[str]) -> pathspec.PathSpec | None:
        """The rules of ``folder``'s ignore file, read (and its problems reported) once."""
        if folder not in self.ignore_specs:
            self.ignore_specs[folder] = _ignore_file(folder, names, self.result)
        return self.ignore_specs[folder]

    def _sheets(self, folder: str, names: list[str]) -> _Sheets:
        """The CUE sheets among ``names`` in ``folder``, read once per folder and set of
        sheets however many of its files are taken: each file named on the command
        line listed its folder and parsed its sheets again (3,000 files of one folder
        named by a shell glob: 11 s instead of 4), and a bad sheet was reported once
        per file. A bad sheet is one problem, and its images are ordinary files."""
        used = frozenset(name for name in names if _is_sheet(name))
        known = self.sheets.get((folder, used))
        if known is not None:
            return known
        sheets = _Sheets()
        if used:
            found = cue_tracks_of_folder(folder or ".", names)
            sheets.tracks, sheets.images, sheets.names = found.tracks, found.images, found.sheets
            sheets.shadowed = found.shadowed
            for error in found.errors:
                self.result.problems.append(ScanProblem(error.path, str(error)))
                sheets.bad.add(os.path.basename(error.path))
        self.sheets[(folder, used)] = sheets
        return sheets

    def add_track(self, track: CueTrack) -> None:
        """Take one track of an album image (once, however the image is reached)."""
        key = (os.path.realpath(track.image), track.number)
        if key in self.seen_tracks:   # the image reached again (named, or by a link): counted as a file is
            self.result.ignored[SAME_FILE] += 1
            return
        self.seen_tracks.add(key)
        if os.path.lexists(track.entry):
            # A file named as the track's entry (album.flac#02) is what every later
            # reader of that name opens: it stood in for the track without a word.
            self.result.problems.append(ScanProblem(track.entry, f"a file of this name stands where track "
                                                    f"{track.number:02d} of {os.path.basename(track.image)} would "
                                                    "be listed: rename it to analyse the track"))
            return
        self.result.files.append(track.entry)

    def walk(self, root: str) -> None:
        rules: dict[str, list[_Rules]] = {}  # folder -> the ignore files that apply

        def on_error(exc: OSError) -> None:
            self.result.problems.append(ScanProblem(exc.filename or root, f"cannot list folder: {os_reason(exc)}"))

        # "dir/": its subfolders' parent "dir" had no rules, its own were lost (not
        # normpath: it folds "link/.." to ".", another folder than the one given).
        root = root.rstrip(os.sep) or os.sep
        for folder, subfolders, names in _walk(root, on_error):
            if not self._enter(folder, names, subfolders, given=folder == root):
                continue
            spec = self._ignore_spec(folder, names)
            # The ignore files of the folders above and this one's: the parent's list (a
            # folder is walked after its parent) and its own, not every rule scanned
            # (an ignore file in each of 8,000 album folders: 41 s per run).
            above = rules.get(os.path.dirname(folder), []) if folder != root else self._rules_above(root)
            rules[folder] = [*above, (folder, spec, "")] if spec is not None else above
            ignored = self._left_out_by(root, rules[folder])
            kept = sorted(d for d in subfolders if not ignored(os.path.join(folder, d), True))
            # Said in the summary: "--exclude 'Podcasts/'" left a folder out without a word.
            if len(kept) < len(subfolders):
                self.result.skipped_folders["excluded"] += len(subfolders) - len(kept)
            subfolders[:] = kept
            self._files(folder, sorted(names), ignored, root)

    def _enter(self, folder: str, names: list[str], subfolders: list[str], *, given: bool) -> bool:
        """Whether to take the files of ``folder`` (``given``: a path given, not one
        reached by the walk): not when it cannot be read, was walked already or is
        marked to be skipped; its subfolders are then not walked either."""
        try:
            st = os.stat(folder)
        except OSError as exc:
            self.result.problems.append(ScanProblem(folder, f"cannot read: {os_reason(exc)}"))
            subfolders[:] = []
            return False
        if not given and os.path.islink(folder) and _is_loop(folder):
            # A link to a folder above it, whether or not that folder was walked: given a
            # subfolder, a link to its parent took the walk up through the whole library.
            self.result.skipped_folders["symlink loop"] += 1
            subfolders[:] = []
            return False
        if (st.st_dev, st.st_ino) in self.seen_dirs:
            looped = not given and _is_loop(folder)
            self.result.skipped_folders["symlink loop" if looped else "already scanned"] += 1
            subfolders[:] = []
            return False
        self.seen_dirs.add((st.st_dev, st.st_ino))
        if any(marker in names for marker in SKIP_MARKERS):
            # Counted as a folder, as an excluded one is: its own files alone were counted
            # (the marker among them), its subfolders' not at all, and a marked folder of
            # subfolders only was left out without a word.
            self.result.skipped_folders["marked .nomedia/.notmusic"] += 1
            subfolders[:] = []
            return False
        return True

    def _rules_above(self, root: str) -> list[_Rules]:
        """The ignore files of the folders above ``root``, up to /, outermost first: the
        walk of ``~/Music/Album`` left out nothing of what ``~/Music/.fpcliignore``
        leaves out of the whole library (git reads the ignore files above too). Only a
        regular file of this user's (or root's) that can be read: one another user left
        in /tmp changed what every walk below it took, and an unusable one cost the run
        of a folder below it (it is reported when its own folder is walked)."""
        found: list[_Rules] = []
        here = _as_opened(root)
        lead = ""
        while (parent := os.path.dirname(here)) != here:
            lead = os.path.basename(here) + "/" + lead
            here = parent
            spec = self._ignore_spec_above(os.path.join(here, IGNORE_FILE))
            if spec is not None:
                found.append((root, spec, lead))
        return found[::-1]

    def _ignore_spec_above(self, path: str) -> pathspec.PathSpec | None:
        """The rules of the ignore file ``path`` above a folder walked, or None (absent,
        another user's, not a regular file, unreadable or too large; bad lines left out)."""
        mine = (os.getuid(), 0)
        try:
            link, st = os.lstat(path), os.stat(path)   # a dotfile manager's link to one's own file counts
        except OSError:
            return None
        if link.st_uid not in mine or st.st_uid not in mine:
            return None
        return _ignore_file(os.path.dirname(path), [IGNORE_FILE], Scan())   # its problems: its own folder's walk

    def _lies_left_out(self, applicable: list[_Rules]) -> bool:
        """``_lead_excluded`` of these rules, computed once per set of them (a link's
        check asks it at every depth, 10,000 links: 3.3 s against 1.6 s)."""
        key = tuple((id(spec), lead) for _, spec, lead in applicable if lead)
        if not key:
            return False
        known = self.leads_excluded.get(key)
        if known is None:
            # The specs are kept with the answer: keyed by id(), a spec freed after its
            # root's walk left its id to another root's, which then read this answer.
            known = self.leads_excluded[key] = (tuple(spec for _, spec, lead in applicable if lead),
                                                lead_excluded(applicable))
        return known[1]

    def _left_out_by(self, root: str, applicable: list[_Rules]) -> Callable[[str, bool], bool]:
        """``_ignored_by``, and for a symlink, whether what it points to lies under the
        root where the walk leaves it out: a link in "Favourites" to an excluded folder
        (or file) took it in all the same, under the link's name."""
        ignored = self._ignored_by(root, applicable)

        def left_out(path: str, is_dir: bool) -> bool:
            # Files: ``add`` checks a link's target (it looks whether a file is a link anyway).
            return ignored(path, is_dir) or (is_dir and os.path.islink(path)
                                             and self._left_out_where_it_lies(path, os.path.realpath(path), root, True))
        return left_out

    def _left_out_where_it_lies(self, link: str, real: str, root: str, is_dir: bool) -> bool:
        """Whether what ``link`` points to (``real``: resolved) lies under ``root`` and
        is left out there: itself or a folder above it excluded by --exclude or the
        ignore files of the folders on its way (git does not follow links at all).
        Judged by each name it has under the root: its target as written, from the
        link's name (~/Music/Albums/Fav/pods -> ../Podcasts, where ~/Music/Albums is a
        link to /mnt/disk/Albums) when that name is the file's (a ".." across a linked
        folder names another: not then), or from the link's real folder; and by its
        real path under the real root."""
        real_root = self.real_folders.get(root) or self._real_folder(root)   # the walk's, once it has it
        try:
            target = os.readlink(link)
        except OSError:
            return self._left_out_under(real, real_root, is_dir)
        by_name = os.path.normpath(os.path.join(_as_opened(os.path.dirname(link) or "."), target))
        if by_name != real and os.path.realpath(by_name) == real and \
                self._left_out_under(by_name, _as_opened(root), is_dir):
            return True
        folder = os.path.dirname(link)
        real_folder = self.real_folders.get(folder) or os.path.realpath(folder)   # the walk's, when it has it
        from_real = os.path.normpath(os.path.join(real_folder, target))
        if from_real != real and self._left_out_under(from_real, real_root, is_dir):
            return True
        return self._left_out_under(real, real_root, is_dir)

    def _left_out_under(self, target: str, base: str, is_dir: bool) -> bool:
        """Whether ``target``, if under the folder ``base``, is left out there."""
        parts = _relative(target, base).split(os.sep)
        if target == base or parts[0] == os.pardir:
            return False   # outside the root: its own walk's rules are not known here
        folder = base
        for depth, part in enumerate(parts):
            rules = self._rules_at(base, folder)
            folder = os.path.join(folder, part)
            if self._ignored_by(base, rules)(folder, depth < len(parts) - 1 or is_dir):
                return True
        return False

    def _rules_at(self, base: str, folder: str) -> list[_Rules]:
        """The ignore files that apply in ``folder``, a path under ``base`` (a root's
        real or absolute path) whose folders above it down from ``base`` were asked
        for before: read once per folder (once per link, 10,000 links to files took
        2-4 times as long to walk), their problems left to the walk that reads them as
        its own."""
        known = self.link_rules.get((base, folder))
        if known is None:
            above = self._rules_above(base) if folder == base else self.link_rules[(base, os.path.dirname(folder))]
            own = _ignore_file(folder, [IGNORE_FILE] if os.path.isfile(os.path.join(folder, IGNORE_FILE)) else [],
                               Scan())
            known = self.link_rules[(base, folder)] = [*above, (folder, own, "")] if own is not None else above
        return known

    def _ignored_by(self, root: str, applicable: list[_Rules], *,
                    whole_folder: bool = True) -> Callable[[str, bool], bool]:
        """A predicate: is this path excluded by --exclude or by one of ``applicable``,
        the .fpcliignore files of a folder and of those above it?"""

        if not self.exclude.patterns and not applicable:
            return lambda path, is_dir: False   # no rule at all (the common case): no path to make relative
        if whole_folder and self._lies_left_out(applicable):
            # The folder given lies in a folder an ignore file above it leaves out (the
            # walk of ~/Music/Podcasts under ~/Music's `Podcasts/`): all of it, as git.
            return lambda path, is_dir: True
        exclude = self._exclude_under(root)

        def ignored(path: str, is_dir: bool) -> bool:
            verdict_of = folder_verdict if is_dir else file_verdict
            if exclude.patterns and verdict_of(exclude, _relative(path, root)):
                return True
            # As git reads its ignore files: the deepest one whose rules say anything
            # decides, so a folder's `!keep.wav` takes back its parent's `*.wav` (any
            # file that excluded a path excluded it).
            for base, spec, lead in reversed(applicable):
                verdict = verdict_of(spec, lead + _relative(path, base))
                if verdict is not None:
                    return verdict
            return False
        return ignored

    def _exclude_under(self, root: str) -> pathspec.PathSpec:
        """--exclude for the walk of ``root``: a pattern that is an absolute path under
        the root (as a shell writes --exclude ~/Music/Podcasts) made relative to it,
        anchored there. Matched against paths relative to the root, it matched nothing,
        without a word."""
        spec = self.rooted_excludes.get(root)
        if spec is None:
            lines = []
            for line in self.exclude_lines:
                negation = "!" if line.startswith("!") else ""
                body = line[len(negation):]
                if os.path.isabs(body):
                    body = _anchored_under(body, root) or body
                lines.append(negation + body)
            spec = self.rooted_excludes[root] = compile_patterns(lines)[0]
        return spec

    def _real_folder(self, folder: str) -> str:
        """``os.path.realpath(folder)``, from its parent's when it is no link: realpath
        looks at every component (a tree 1,000 folders deep took 600,000 lstat calls)."""
        parent = self.real_folders.get(os.path.dirname(folder))
        real = os.path.join(parent, os.path.basename(folder)) if parent is not None and not os.path.islink(
            folder) else os.path.realpath(folder)
        self.real_folders[folder] = real
        return real

    def _files(self, folder: str, names: list[str], ignored: Callable[[str, bool], bool], root: str) -> None:
        real_folder = self._real_folder(folder)
        # A sheet left out by --exclude or an ignore file splits nothing (it was counted
        # "excluded" and applied all the same): leaving it out is how a wrong split is undone.
        # One decision per folder: a folder whose image was named before it keeps the
        # sheets that split the image then (a walk that left the sheet out took the
        # image whole as well, beside its tracks).
        found = self.sheets_alone.get(real_folder) or self._sheets(folder, [name for name in names if not (
            _is_sheet(name) and ignored(os.path.join(folder, name), False))])
        self.walked_sheets.setdefault(real_folder, found)   # what a file of it taken alone looks up
        tracks, images, sheets = found.tracks, found.images, found.names
        reported = found.bad   # that problem: counted among the ignored files too, it was two
        for track in tracks:   # a track is left out by its image's name, or by its own (album.flac#02)
            if ignored(track.image, False):
                continue   # the image is counted as excluded below, once
            if ignored(track.entry, False):
                self.result.ignored["excluded"] += 1   # it was left out unsaid
                continue
            self.add_track(track)
        for name in names:
            path = os.path.join(folder, name)
            extension = os.path.splitext(name)[1].lower() or "(no extension)"
            if name in (IGNORE_FILE, *SKIP_MARKERS):
                continue
            if ignored(path, False):
                self.result.ignored["excluded"] += 1
            elif name in images:
                continue  # an album image: its tracks were added above
            elif name in reported:
                continue
            elif name in sheets:
                self.result.ignored[".cue (tracks listed)"] += 1
            elif name in found.shadowed:   # counted as a junk .cue, it left the user no clue
                self.result.ignored[SHADOWED_SHEET] += 1
            elif name.startswith("._") and extension in AUDIO_EXTENSIONS and _is_apple_double(path):
                self.result.ignored[APPLE_DOUBLE] += 1
            elif extension in AUDIO_EXTENSIONS:
                self.add(path, real_folder, root=root)
            else:
                self.result.ignored[extension] += 1


# macOS keeps a file's metadata beside it as "._name" on drives without its own file
# system (FAT, exFAT, network shares): "._track.flac" of a library copied to a stick
# was taken as audio, failed as "not a decodable audio file", and made every run exit 3.
APPLE_DOUBLE = "macOS ._ metadata"
APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"


def _is_apple_double(path: str) -> bool:
    """Whether ``path`` opens with the AppleDouble magic number (unreadable: no)."""
    try:
        return read_regular(path, len(APPLE_DOUBLE_MAGIC)) == APPLE_DOUBLE_MAGIC
    except OSError:
        return False


def _anchored_under(pattern: str, root: str) -> str | None:
    """An absolute ``pattern`` as a gitignore pattern anchored at ``root`` (``/rest``),
    or None when it names no path under it. The part that names the root is compared
    as the root really is (`cd` through a link: the shell's $PWD names the link, and
    os.path.abspath(".") the real folder); the rest is kept as written (a link inside
    the root, Podcasts -> another disk, is still the root's Podcasts)."""
    written = os.path.normpath(pattern)
    roots = {_as_opened(root), os.path.realpath(root)}   # "link/..": not the current folder
    head, rest = written, ""
    while head != os.path.dirname(head):
        if head in roots or os.path.realpath(head) in roots:
            if not rest:
                return None   # the root itself
            return "/" + rest + ("/" if pattern.endswith("/") else "")
        head, tail = os.path.split(head)
        rest = tail + ("/" + rest if rest else "")
    return None


def _is_sheet(name: str) -> bool:
    return name.lower().endswith(CUE_EXTENSION)


def _relative(path: str, base: str) -> str:
    """``os.path.relpath(path, base)`` for a path the walk made under ``base`` (a prefix
    cut off, not both paths made absolute and compared part by part: 41,000 calls
    were a tenth of a warm run over 20,000 files); relpath for any other."""
    prefix = os.path.join(base, "")
    if path.startswith(prefix):
        return path[len(prefix):]
    return os.path.relpath(path, base)


def _is_loop(folder: str) -> bool:
    """Whether ``folder`` (reached again) is a symlink to a folder above it: its real
    path is an ancestor of its parent's, so walking it would never end."""
    real = os.path.realpath(folder)
    return os.path.join(os.path.realpath(os.path.dirname(folder) or "."), "").startswith(os.path.join(real, ""))


def _walk(root: str, on_error: Callable[[OSError], None]) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root, onerror=on_error, followlinks=True)`` (top down: the caller may
    prune the folder list it is given), without recursion: Python 3.11's recurses, and
    a tree about 1,000 folders deep stopped the run with a RecursionError traceback.
    Links to folders are walked after every other folder: a folder reached twice is
    walked once, by the first way, and a "Favourites" folder of links that sorted
    before the albums named their files by the links."""
    stack: list[str] = [root]
    linked: list[str] = []   # links to folders, walked once the stack is empty
    while stack or linked:
        if not stack:
            stack, linked = linked[::-1], []
        top = stack.pop()
        try:
            with os.scandir(top) as listing:
                entries = list(listing)
        except OSError as exc:
            on_error(exc)
            continue
        folders: list[str] = []
        files: list[str] = []
        links: set[str] = set()
        for entry in entries:
            try:
                is_folder = entry.is_dir()   # through a link, as followlinks=True
                if is_folder and entry.is_symlink():
                    links.add(entry.name)
            except OSError:
                is_folder = False
            (folders if is_folder else files).append(entry.name)
        yield top, folders, files
        stack.extend(os.path.join(top, name) for name in reversed(folders) if name not in links)
        linked.extend(os.path.join(top, name) for name in folders if name in links)


def _as_opened(root: str) -> str:
    """``root`` made absolute as the system opens it: up to its last "..", resolved (in
    "link/..", the folder above the link's target, not "."), the rest by its names
    (~/Music a link to /mnt/disk/Music stays ~/Music: the ignore files above it are
    ~/'s, as for the same folder given without ".." )."""
    parts = root.split(os.sep)
    if os.pardir not in parts:
        return os.path.abspath(root)
    last = len(parts) - 1 - parts[::-1].index(os.pardir)
    head = os.sep.join(parts[:last + 1]) or os.sep
    return os.path.abspath(os.path.join(os.path.realpath(head), *parts[last + 1:]))


def _ignore_file(folder: str, names: list[str], result: Scan) -> pathspec.PathSpec | None:
    if IGNORE_FILE not in names:
        return None
    path = os.path.join(folder, IGNORE_FILE)
    try:
        raw = read_regular(path, MAX_IGNORE_BYTES + 1)
    except OSError as exc:
        result.problems.append(ScanProblem(path, f"cannot use this ignore file: {exc.strerror or exc}"))
        return None
    if len(raw) > MAX_IGNORE_BYTES:
        result.problems.append(ScanProblem(path, f"cannot use this ignore file: larger than "
                                                 f"{MAX_IGNORE_BYTES >> 20} MiB"))
        return None
    # A byte-order mark (Windows Notepad writes one) made the first line a pattern
    # matching nothing, without a word; git skips it.
    lines = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff").splitlines()
    spec, bad = compile_patterns(lines)
    for number, line, reason in bad:
        result.problems.append(ScanProblem(path, f"line {number}: {line!r} is not a valid pattern ({reason}); "
                                                 "its other lines apply"))
    return spec


