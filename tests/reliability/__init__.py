"""Reliability tests: fuzzing, chaos soak, durable history, security.

Run them with ``python -m pytest tests/reliability -p no:cacheprovider``.
Environment knobs: ``WSLAB_TIME_SCALE`` (multiplies every timeout, default 1),
``WSLAB_SOAK_SECONDS`` (length of the chaos soak, default 18; "full mode" is 60),
``WSLAB_FUZZ_SEED`` (seed of the live fuzz), ``WSLAB_RESULTS_DIR`` (where the
figures are written as JSON).
"""
