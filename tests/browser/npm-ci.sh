#!/bin/sh
# Installs the browser test's npm packages (package-lock.json, exactly) into the build tree:
# npm-ci.sh SOURCE_DIR BUILD_DIR. Does nothing when BUILD_DIR already has what the lock file
# says, so that a second run needs no registry.
set -eu
src=$1
dst=$2
mkdir -p "$dst"
if cmp -s "$src/package-lock.json" "$dst/package-lock.json" &&
    [ -f "$dst/node_modules/.package-lock.json" ]; then
    exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dst/"
cd "$dst"
npm ci --no-audit --no-fund --ignore-scripts --prefer-offline
