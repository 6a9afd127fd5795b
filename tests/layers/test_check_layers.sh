#!/usr/bin/env bash
# tools/check-layers.sh accepts the tree as it is, and refuses each way of breaking the
# direction: a runtime file including a bus header (by name or by relative path), the bus
# including the runtime's internals, and the runtime library needing a bus symbol.
#
#   tests/layers/test_check_layers.sh SOURCE_DIR RUNTIME_LIB BUS_LIB
set -euo pipefail
src=$1 runtime_lib=$2 bus_lib=$3
check=$src/tools/check-layers.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/arq-layers-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() { # expect OK|REFUSED DESCRIPTION HOST_DIR [LIBS...]
    local want=$1 what=$2
    shift 2
    if "$check" "$@" 2>"$tmp/err"; then got=OK; else got=REFUSED; fi
    if [[ $got != "$want" ]]; then
        echo "FAIL: $what: expected $want, got $got" >&2
        cat "$tmp/err" >&2
        fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}

variant() { # a copy of host/ with one change: variant NAME FILE LINE
    rm -rf "$tmp/$1"
    cp -r "$src/host" "$tmp/$1"
    printf '%s\n' "$3" >>"$tmp/$1/$2"
}

expect OK "the tree as it is" "$src/host" "$runtime_lib" "$bus_lib"
variant by-name runtime/generation.c '#include "bus.h"'
expect REFUSED "a runtime file includes a bus header by name" "$tmp/by-name"
variant by-path runtime/log.h '#include "../bus/router.h"'
expect REFUSED "a runtime header includes a bus header by path" "$tmp/by-path"
variant internals bus/router.c '#include "host.h"'
expect REFUSED "the bus includes the runtime's internals" "$tmp/internals"
# The runtime library linking the bus: the bus library given as both.
expect REFUSED "the runtime library needs a bus symbol" "$src/host" "$bus_lib" "$runtime_lib"
exit $((fails > 0))
