#!/bin/sh
# The option reference of docs/configuration.md and man/arqonbus.conf.d.5 is what
# `arqonbusd --describe-options` prints (markdown, man) for the modules of PLUGIN_DIR, between
# the BEGIN and END GENERATED OPTION REFERENCE comments of each file. This rewrites that part;
# with --check it rewrites nothing and fails, showing the difference, when either file is not
# what the build prints (an option added or changed without `make docs-ref`).
#
# Usage: config-ref.sh [--check] ARQONBUSD PLUGIN_DIR SOURCE_DIR
set -eu
check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
if [ $# -ne 3 ]; then
    echo "usage: $0 [--check] ARQONBUSD PLUGIN_DIR SOURCE_DIR" >&2
    exit 2
fi
daemon=$1 plugins=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0

splice() { # FILE FORMAT
    file=$src/$1
    ARQONBUS_PLUGIN_DIR=$plugins "$daemon" --describe-options --format "$2" >"$tmp/ref"
    if ! awk -v ref="$tmp/ref" '
        /BEGIN GENERATED OPTION REFERENCE/ {
            print
            while ((getline line < ref) > 0)
                print line
            inside = 1
            pairs++
            next
        }
        /END GENERATED OPTION REFERENCE/ { inside = 0 }
        !inside { print }
        END { exit (pairs == 1 && !inside) ? 0 : 1 }' "$file" >"$tmp/new"; then
        echo "$1: needs one BEGIN and one END GENERATED OPTION REFERENCE comment" >&2
        exit 1
    fi
    if cmp -s "$file" "$tmp/new"; then
        return 0
    fi
    if [ $check = 1 ]; then
        diff -u "$file" "$tmp/new" || true
        echo "$1: the option reference differs from what arqonbusd --describe-options" \
             "prints: run make docs-ref" >&2
        status=1
    else
        cat "$tmp/new" >"$file"
        echo "rewrote the option reference of $1"
    fi
}

splice docs/configuration.md markdown
splice man/arqonbus.conf.d.5 man
exit $status
