"""Background tasks (Django's tasks API, the django-tasks backport on Django 5.2).

The backend is a setting (TASKS); by default tasks wait in the database for `manage.py run_worker`.
`process_submission` is defined in exchange.bulk.worker, beside what it runs, so that enqueueing
needs no import of this module; it is listed here too, under the path of the tasks already queued.
"""

from exchange.bulk.worker import process_submission

__all__ = ["process_submission"]
