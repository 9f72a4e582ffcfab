#!/usr/bin/env bash
# One command to run the exchange locally: venv, SQLite, demo data with printed keys, a server.
# The address comes from HOST (default 127.0.0.1) and PORT (default 8000); the port is checked
# before anything touches the database. The development settings go to a git-ignored .env that
# manage.py reads in any shell (docs/configuration.md), so commands typed elsewhere just work.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
scripts/setup-venv.sh requirements.txt
PY=.venv/bin/python

if ! $PY - "$HOST" "$PORT" <<'PYEOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver binds
    try:
        s.bind((host, port))
    except OSError as exc:
        sys.exit(f"==> cannot serve on {host}:{port}: {exc.strerror}. Another server may be running;"
                 f" pick another port, e.g.  PORT={port + 1} scripts/run.sh")
PYEOF
then
  exit 1
fi

# The settings every shell of this checkout uses in development; the environment still wins.
allowed="${ALLOWED_HOSTS:-}"
case "$HOST" in 127.0.0.1|localhost|0.0.0.0|::) ;; *) allowed="${allowed:-localhost,127.0.0.1,$HOST}" ;; esac
{
  echo "# Written by scripts/run.sh for development; rewritten at each start. Never used in"
  echo "# production: manage.py reads it only while DEBUG is on, gunicorn never reads it."
  echo "DEBUG=${DEBUG:-1}"
  echo "SECURE_SSL_REDIRECT=${SECURE_SSL_REDIRECT:-0}"
  [ -z "${DATABASE_URL:-}" ] || echo "DATABASE_URL=$DATABASE_URL"
  [ -z "$allowed" ] || echo "ALLOWED_HOSTS=$allowed"
} > .env
chmod 600 .env

url="http://$HOST:$PORT"
case "$HOST" in 0.0.0.0|::) url="http://127.0.0.1:$PORT" ;; esac
$PY manage.py migrate --noinput
$PY manage.py seed_demo --base-url "$url"
# Background work (bulk files, audit sealing backstop) runs beside the server and stops with it.
if $PY manage.py help run_worker >/dev/null 2>&1; then
  $PY manage.py run_worker &
  worker=$!
  trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
fi
echo "==> serving the exchange on $url (admin console at /admin/, API docs at /api/v1/docs)"
$PY manage.py runserver "$HOST:$PORT" --noreload
