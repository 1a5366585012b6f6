"""Where per-file work runs: ``local`` worker processes or a ``dask`` cluster. Both run
the halves of ``fpcli.analyze.fingerprint_of``."""

DEFAULT_TIMEOUT_S = 600.0  # per file; a 60-minute track streams in well under 30 s
