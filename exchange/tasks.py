"""Background tasks (Django's tasks API, the django-tasks backport on Django 5.2).

The backend is a setting (TASKS); by default tasks wait in the database for `manage.py run_worker`.
"""

from __future__ import annotations

from django_tasks import task

from exchange import bulk


@task()
def process_submission(submission_id: str) -> dict:
    """Process a bulk submission from where it stopped; a no-op if another worker holds it."""
    submission = bulk.submission_process(submission_id)
    if submission is None:
        return {"submission": submission_id, "status": "held_elsewhere"}
    return {
        "submission": submission_id,
        "status": submission.status,
        "accepted": submission.accepted,
        "rejected": submission.rejected,
    }
