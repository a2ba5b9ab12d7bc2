"""Consent again, as of now, for the samples a run already downloaded (``consentfetch recheck``).

A recheck never touches the run it reads: it writes
``rechecks/<UTC stamp>/recheck.parquet`` (one row per rechecked ``success``
sample, :mod:`.table`) and ``summary.json`` beside it. Applying a recheck
rewrites the affected shards without the withdrawn samples.

* :mod:`.table` — the recheck table's columns and statuses, where it is written;
* :mod:`.settings` — the recheck's config: the run's own, tightened, never loosened;
* :mod:`.decide` — :func:`~.decide.recheck_shards`: every sample decided again.
"""
