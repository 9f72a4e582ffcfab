#!/usr/bin/env bash
# One command to run the exchange locally: venv, SQLite, demo data with printed keys, server on :8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh requirements.txt
export DEBUG="${DEBUG:-1}"
export SECURE_SSL_REDIRECT="${SECURE_SSL_REDIRECT:-0}"
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py seed_demo
# Background work (bulk files, audit sealing backstop) runs beside the server and stops with it.
if $PY manage.py help run_worker >/dev/null 2>&1; then
  $PY manage.py run_worker &
  worker=$!
  trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
fi
echo "==> serving the exchange on http://127.0.0.1:8000 (admin console at /admin/, API docs at /api/v1/docs)"
$PY manage.py runserver 127.0.0.1:8000 --noreload
