#!/bin/sh
# The manual pages cannot fall behind the programs: every option (long, and short) that
# `arqonbusd --help` and `arqonbus-cli --help` print is in the program's page, and groff
# renders each page of man/ without a warning (lintian checks pages the same way).
#
# Usage: test_man_pages.sh SOURCE_DIR ARQONBUSD ARQONBUS_CLI
set -eu
src=$1 daemon=$2 cli=$3
fail=0

# The options a --help text lists: every --long one, and the -x of "-x, --long" lines.
options() {
    "$1" --help | grep -o -- '--[a-z][a-z0-9-]*' || true
    "$1" --help | sed -n 's/^ *\(-[A-Za-z]\), --.*/\1/p'
}

# A page's text with its escapes undone: \- is -, font changes go.
plain() {
    sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' "$1"
}

check_options() { # PROGRAM PAGE
    text=$(plain "$2")
    for opt in $(options "$1" | sort -u); do
        if ! printf '%s\n' "$text" | grep -Eq -- "(^|[^A-Za-z0-9-])$opt([^A-Za-z0-9-]|\$)"; then
            echo "$2: $(basename "$1") --help lists $opt, the page does not" >&2
            fail=1
        fi
    done
}

check_options "$daemon" "$src/man/arqonbusd.8"
check_options "$cli" "$src/man/arqonbus-cli.1"

for page in "$src"/man/*.[1-8]; do
    warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
    if [ -n "$warnings" ]; then
        printf '%s: groff warns:\n%s\n' "$page" "$warnings" >&2
        fail=1
    fi
done
for page in arqonbusd.8 arqonbus-cli.1 arqonbus.conf.d.5; do
    [ -f "$src/man/$page" ] || { echo "man/$page is missing" >&2; fail=1; }
done
exit $fail
