#!/usr/bin/env bash
# Create .venv and install the pinned requirements; re-installs only when a requirements file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"

# libsodium (the VOPRF's ristretto255, through pysodium): Debian's package, installed when missing.
have_libsodium() {
  local f
  for f in /usr/lib/*/libsodium.so.* /lib/*/libsodium.so.* /usr/lib/libsodium.so.* /usr/local/lib/libsodium.so.* \
           /usr/local/lib/libsodium*.dylib /opt/homebrew/lib/libsodium*.dylib; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_libsodium; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing libsodium (Debian package libsodium23)"
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsodium23 >/dev/null; } ||
      { echo "libsodium could not be installed: install libsodium23 (Debian) or libsodium (brew)"; exit 1; }
  else
    echo "libsodium is missing: install libsodium23 (Debian/Ubuntu) or libsodium (brew), then run again"
    exit 1
  fi
fi
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$req")"
if [ ! -f "$stamp" ]; then
  echo "==> installing $req"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
