"""The file name extensions fpcli reads as audio, in a module of their own: code that
decides by a name alone (the scan, the guard that refuses to write over a track) needs
neither numpy nor the decoders, and the decoders need nothing of that code."""

from __future__ import annotations

# What libsndfile reads (FFmpeg takes over when it cannot: an MP3 it refuses, say).
SNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc"}
)
# What libsndfile never reads: these go to FFmpeg (PyAV) directly.
AV_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".wma", ".ape", ".wv", ".mka", ".mkv", ".webm", ".mpc", ".ac3"}
)
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS | AV_EXTENSIONS
