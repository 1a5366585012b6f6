"""Where per-file work runs: ``local`` worker processes or a ``dask`` cluster. Both run
the halves of ``fpcli.analyze.fingerprint_of``."""
