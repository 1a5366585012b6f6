"""Ignore rules as git reads them: gitignore patterns (``--exclude`` and ``.fpcliignore``
files) compiled line by line, and the verdict of a rule set on a file or a folder.

pathspec compiles the patterns; its matching of a folder ("folder/", as a path inside
it) is not git's, so a folder and a file are judged here by the patterns that match
them themselves (``folder_verdict``, ``file_verdict``), and the folders on the way
from an ignore file above a folder given to that folder by ``lead_excluded``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import pathspec


def lead_excluded(applicable: Sequence[tuple[str, pathspec.PathSpec, str]]) -> bool:
    """Whether the ignore files above a folder given (the rules of ``applicable`` with
    a lead: the way from their folder to it, "a/b/") leave out one of the folders on
    that way, which the walk never judges. Each folder, outermost first, by the
    deepest of the files above it that says anything of it (a deeper `!Podcasts/`
    takes back an outer `Podcasts/`, as in git)."""
    above = [(spec, lead.rstrip("/").split("/")) for _, spec, lead in applicable if lead]
    for height in range(max((len(parts) for _, parts in above), default=0) - 1, -1, -1):   # folders, root last
        for spec, parts in reversed(above):   # the deepest file first
            if len(parts) > height:
                verdict = folder_verdict(spec, "/".join(parts[:len(parts) - height]))
                if verdict is not None:
                    if verdict:
                        return True
                    break
    return False


def file_verdict(spec: pathspec.PathSpec, relative: str) -> bool | None:
    """Whether ``spec`` excludes the file at ``relative`` (True), takes it back (False)
    or says nothing of it (None): by the last pattern that matches the file itself.
    The walk judged its folders already (an excluded one is not entered), so a
    pattern that matches only through a folder above it says nothing here, nor does
    a folder-only one: pathspec took ``e/**/`` to exclude the files in e (git: only
    the folders in e and what they hold)."""
    return _verdict(spec, relative, folder=False)


def folder_verdict(spec: pathspec.PathSpec, relative: str) -> bool | None:
    """``file_verdict`` for the folder at ``relative`` (no trailing slash), as git reads
    a folder: by the last pattern that matches the folder itself. pathspec matches
    ``relative + "/"`` as a path inside the folder, where ``Podcasts/**`` matched
    the folder Podcasts itself (git: only what is in it, so ``!Podcasts/keep.wav``
    takes a file back) and a later ``!*/`` did not take back a folder an earlier
    ``*`` excluded: the walk then never entered the folder, and its audio was
    skipped as "excluded". A folder-only pattern (``name/``) matches as its text
    without the slash (``e/**/`` as ``e/**``: the folders in e, not e itself)."""
    return _verdict(spec, relative, folder=True)


def _verdict(spec: pathspec.PathSpec, relative: str, *, folder: bool) -> bool | None:
    verdict: bool | None = None
    for pattern in spec.patterns:
        regex = _own_regex(pattern, folder)
        if pattern.include is None or regex is None:
            continue
        found = regex.search(relative)
        if found is not None and "ps_d" in regex.groupindex and found.group("ps_d") is not None:
            continue   # matched as inside a folder it names, not as the path itself
        if found is not None:
            verdict = pattern.include
    return verdict


def _own_regex(pattern: pathspec.Pattern, folder: bool) -> re.Pattern[str] | None:
    """The regular expression that matches a path itself by ``pattern`` (None: none
    does): its own, or for a folder-only pattern (its text ends with ``/``), for a
    folder that of its text without the slash and for a file none."""
    text = getattr(pattern, "pattern", None)
    if not isinstance(text, str) or not text.rstrip(" ").endswith("/"):
        regex: re.Pattern[str] | None = getattr(pattern, "regex", None)
        return regex
    return _regex_of(text.rstrip(" ")[:-1]) if folder else None


@functools.lru_cache(maxsize=4096)
def _regex_of(text: str) -> re.Pattern[str] | None:
    """The regular expression of one gitignore pattern (None: it matches nothing, as
    ``/`` without its slash)."""
    try:
        patterns = pathspec.GitIgnoreSpec.from_lines([text]).patterns
    except (re.error, ValueError):
        return None
    regex: re.Pattern[str] | None = getattr(patterns[0], "regex", None) if patterns else None
    return regex



def compile_patterns(lines: Iterable[str]) -> tuple[pathspec.PathSpec, list[tuple[int, str, str]]]:
    """The gitignore-style spec of the ``lines`` that are valid patterns, in their
    order, and (line number from 1, line, reason) of each that is not: one bad line
    of an ignore file costs that line, not the file or the run. (pathspec raises
    ``re.error`` for some, such as ``[z-a]``, and ValueError for others, such as ``!``.)"""
    good: list[str] = []
    bad: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, start=1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (re.error, ValueError) as exc:
            bad.append((number, line, _pattern_reason(exc)))
        else:
            if _unclosed_bracket(line):   # git's rule: it matches nothing, which no one means
                bad.append((number, line, UNCLOSED_BRACKET))
            else:
                good.append(line)
    return pathspec.GitIgnoreSpec.from_lines(good), bad


UNCLOSED_BRACKET = "a '[' that no ']' closes matches nothing; write \\[ for the character itself"


def _unclosed_bracket(line: str) -> bool:
    """Whether a '[' of ``line`` opens a character class that no ']' closes (after the
    '[', a '!' or '^' and then a ']' belong to the class; a backslash escapes the next
    character). Git, and pathspec after it, make such a pattern match nothing:
    ``--exclude '[Live'`` excluded nothing, silently."""
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            j = i + 1
            if j < len(line) and line[j] in "!^":
                j += 1
            if j < len(line) and line[j] == "]":
                j += 1
            close = line.find("]", j)
            if close < 0:
                return True
            i = close
        i += 1
    return False



def _pattern_reason(exc: Exception) -> str:
    """pathspec's reason without what means nothing to a user: the pattern again
    ("Invalid git pattern: '!'") or a position in the regular expression it made."""
    return re.sub(r" at position \d+$", "", str(exc).split(": ")[0])
