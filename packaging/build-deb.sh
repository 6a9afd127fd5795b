#!/bin/sh
# Builds the Debian packages of a tree (its debian/) into OUT_DIR without writing into the tree:
# the tree's files (those git tracks or would track, else everything but build*/) are copied
# to OUT_DIR/src and built there with `dpkg-buildpackage -us -uc -b`, which leaves the .deb,
# .buildinfo and .changes files in OUT_DIR. Runs lintian on them when it is installed.
# Usage: build-deb.sh SOURCE_DIR OUT_DIR   (JOBS: parallel jobs, default 2)
set -eu
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
rm -rf "$out/src" "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes
mkdir "$out/src"

if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Deleted files are still listed as tracked: --ignore-failed-read skips them.
    (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$src" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
        tar -C "$out/src" -xf -
else
    tar -C "$src" --exclude=./.git --exclude='./build' --exclude='./build-*' \
        --exclude='./obj-*' -cf - . | tar -C "$out/src" -xf -
fi

cd "$out/src"
dpkg-buildpackage -us -uc -b --jobs-try="${JOBS:-2}"
cd "$out"
ls -1 "$out"/*.deb
if command -v lintian >/dev/null; then
    # Every tag lintian may still print is explained in debian/*.lintian-overrides.
    lintian --display-info --pedantic "$out"/*.changes
fi
