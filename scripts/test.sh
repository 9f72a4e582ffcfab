#!/usr/bin/env bash
# One command to run every check: ruff (lint and format), migrations check, the test suite on a
# throwaway PostgreSQL 15 (started here as a non-root user in a temporary folder), then on SQLite.
# Each suite runs on TEST_WORKERS pytest-xdist workers (default: one per CPU), each with its own
# test database; extra arguments go to pytest (`scripts/test.sh tests/core`).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh requirements-dev.txt || exit 1
PY=.venv/bin/python
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PG_BIN
failed=0
step() { echo; echo "==> $*"; }

step "ruff check"
.venv/bin/ruff check . || failed=1

step "ruff format --check"
.venv/bin/ruff format --check . || failed=1

step "makemigrations --check"
DEBUG=1 $PY manage.py makemigrations --check --dry-run || failed=1

step "import layers (lint-imports, contracts in pyproject.toml)"
.venv/bin/lint-imports || failed=1

# --- Chromium for the console's browser test (tests/admin/test_browser.py) --------------
# Debian's package, never a browser download of Playwright's own; without it that test skips.
if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing chromium (Debian package) for the browser test"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "chromium could not be installed: the browser test will be skipped"
  else
    echo "no chromium and not root: the browser test will be skipped"
  fi
fi

# --- redis-server for the Redis store of the limits (tests/security/test_limits_live.py) ----
# Debian's package; without it the Redis half of that test skips, saying so.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing redis-server (Debian package) for the limits' Redis store test"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } ||
      echo "redis-server could not be installed: the Redis store test will be skipped"
  else
    echo "no redis-server and not root: the Redis store test will be skipped"
  fi
fi

# --- axe-core for the browser test's accessibility checks (scripts/install-axe.sh) -------
scripts/install-axe.sh || echo "axe-core could not be installed: the browser test will fail"

# --- throwaway PostgreSQL -------------------------------------------------------------
pgdir=$(mktemp -d /tmp/exchange-pg.XXXXXX)
chmod 755 "$pgdir"
run_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  pguser=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
  chown "$pguser" "$pgdir"
  run_pg() { runuser -u "$pguser" -- "$@"; }
fi
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_pg() {
  run_pg "$PG_BIN/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap stop_pg EXIT

step "starting PostgreSQL on port $port in $pgdir"
run_pg "$PG_BIN/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null || exit 1
run_pg "$PG_BIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
  -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=100" \
  start >/dev/null || { cat "$pgdir/log"; exit 1; }
psql_su() { "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
# The owner role runs migrations and owns the tables; the app role (see docs/operations.md)
# gets data rights only, so it cannot disable the audit triggers.
psql_su -c "CREATE ROLE exchange LOGIN CREATEDB PASSWORD 'exchange';" \
        -c "CREATE ROLE exchange_app LOGIN PASSWORD 'exchange_app';" \
        -c "CREATE DATABASE exchange OWNER exchange;" || exit 1

export EXCHANGE_TEST_PG_PORT="$port"
export EXCHANGE_TEST_PG_SUPERUSER_URL="postgres://postgres@127.0.0.1:$port/postgres"

workers="${TEST_WORKERS:-auto}"
step "pytest on PostgreSQL ($workers workers)"
DATABASE_URL="postgres://exchange:exchange@127.0.0.1:$port/exchange" \
  $PY -m pytest -q -p no:cacheprovider -n "$workers" "$@"
rc=$?; [ $rc -eq 0 ] || failed=1

step "pytest on SQLite ($workers workers)"
DATABASE_URL="sqlite:///$pgdir/sqlite-test.db" $PY -m pytest -q -p no:cacheprovider -n "$workers" "$@"
rc=$?; [ $rc -eq 0 ] || failed=1

echo
if [ $failed -ne 0 ]; then echo "==> FAILED"; exit 1; fi
echo "==> all checks passed"
