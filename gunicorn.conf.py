"""gunicorn settings for serving the exchange: `gunicorn -c gunicorn.conf.py config.wsgi:application`.

The worker model was chosen by measurement (docs/performance.md, "Worker model"); every value can
be overridden from the environment or the command line.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# gthread, one worker per core, 4 threads each: measured against sync workers (docs/performance.md).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("GUNICORN_WORKERS", os.cpu_count() or 1))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = 30
# Access lines would repeat what the JSON request log already says; set GUNICORN_ACCESSLOG=- to have them.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"


def post_worker_init(worker):
    # Seal audit events on one thread per worker, woken after each commit, instead of on the
    # request's thread after its commit (docs/audit.md); EXCHANGE_SEAL_IN_REQUEST=1 keeps the latter.
    if os.environ.get("EXCHANGE_SEAL_IN_REQUEST") != "1":
        from audit.sealing import start_background_sealer

        start_background_sealer()


def worker_exit(server, worker):
    try:
        from audit.sealing import stop_background_sealer
    except Exception:  # noqa: BLE001 - the app may never have loaded
        return
    stop_background_sealer(timeout=5)
