"""Settings for the performance harness only: production settings plus the bench URLs (the floor).

Production code has no bench endpoint; `bench/perf/run.py` serves with
DJANGO_SETTINGS_MODULE=bench.perf.settings.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.perf.urls"
