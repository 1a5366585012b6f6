"""The file name extensions fpcli reads as audio, in a module of their own: code that
decides by a name alone (the scan, the guard that refuses to write over a track) needs
neither numpy nor the decoders, and the decoders need nothing of that code."""

from __future__ import annotations

# What libsndfile reads (FFmpeg takes over when it cannot: an MP3 it refuses, say).
# .bwf is a broadcast WAV, .mp2 the MPEG layer II of radio archives.
SNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".bwf", ".rf64", ".w64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".mp2", ".aif", ".aiff",
     ".aifc", ".au", ".caf"}
)
# What libsndfile never reads: these go to FFmpeg (PyAV) directly. DSD (.dsf, .dff)
# decodes to 1/8 of its bit rate (352.8 kHz for DSD64).
AV_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".m4r", ".mp4", ".aac", ".wma", ".ape", ".wv", ".tta", ".mka", ".mkv", ".webm", ".mpc", ".ac3",
     ".dsf", ".dff", ".amr"}
)
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS | AV_EXTENSIONS
