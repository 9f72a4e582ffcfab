#!/usr/bin/env bash
# axe-core (the accessibility engine) for the console's browser test, pinned, installed with npm
# into var/node/ (git-ignored); does nothing when that version is there already. Not vendored:
# a 550 KB minified file has no place in reviews; it is fetched the way pip fetches the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
AXE_VERSION=4.14.1
dest=var/node
if grep -qs "\"version\": \"$AXE_VERSION\"" "$dest/node_modules/axe-core/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing npm (Debian package) for axe-core"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  else
    echo "npm is not installed: cannot install axe-core $AXE_VERSION" >&2
    exit 1
  fi
fi
echo "==> installing axe-core $AXE_VERSION into $dest"
mkdir -p "$dest"
npm install --prefix "$dest" --no-save --no-audit --no-fund --loglevel=error "axe-core@$AXE_VERSION" >/dev/null
