#!/usr/bin/env bash
# The npm packages of tests/node (the official `openai` client, exactly as package-lock.json
# pins it), installed with `npm ci` under $FLEET_HOME/node/<the lock's hash>, once: a changed
# lock gets a directory of its own. Without node there is nothing to do (the test that needs
# it says it is skipped, and why).
# usage: deploy/local/node-clients.sh [install|dir]
#   install (default): install them; dir: print the directory they are (to be) installed in
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

lock="$REPO_ROOT/tests/node/package-lock.json"
dir="$FLEET_HOME/node/$(sha256sum "$lock" | cut -c1-16)"
case "${1:-install}" in
  dir) echo "$dir"; exit 0 ;;
  install) ;;
  *) die "usage: $0 [install|dir]" ;;
esac
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node or npm not found: the tests that drive the gateway from node will be skipped"
  exit 0
fi
if [[ -f "$dir/.installed" ]]; then
  say "npm packages of tests/node present in $dir"
  exit 0
fi
say "installing the npm packages of tests/node into $dir (once)"
rm -rf "$dir" && mkdir -p "$dir"
cp "$REPO_ROOT/tests/node/package.json" "$lock" "$dir/"
# --ignore-scripts: nothing of a package runs at install; the npm cache stays under .fleet.
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --cache "$FLEET_HOME/npm-cache") \
  >"$FLEET_LOG_DIR/npm-install.log" 2>&1 \
  || { tail -n 20 "$FLEET_LOG_DIR/npm-install.log" >&2; die "npm could not install tests/node's packages"; }
touch "$dir/.installed"
