"""Per-frame maths shared by the batch and streaming analyzers.

One implementation of each frame feature; the analyzers differ only in how they
reduce the per-frame series (exact statistics vs fixed-resolution histograms).
"""
