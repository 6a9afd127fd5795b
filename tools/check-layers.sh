#!/usr/bin/env bash
# The host's two layers, one way: host/runtime (the plugin runtime) must not include or link
# host/bus (the message bus), and the bus sees the runtime through its environment, not
# through the runtime's own state (host.h, generation.h).
#
#   tools/check-layers.sh HOST_DIR [RUNTIME_LIB BUS_LIB]
#
# HOST_DIR holds runtime/ and bus/. With the two static libraries, also check that no symbol
# the runtime library needs is defined by the bus library. Exit 1, naming every violation.
set -euo pipefail
host=$(realpath "$1")
bad=0

# Every #include "..." of a runtime file resolves to a file inside host/runtime.
while IFS=: read -r f n inc; do
    target=$host/runtime/$inc
    [[ $inc == */* ]] && target=$(realpath -m "$target")
    if [[ $target != "$host"/runtime/* || ! -e $target ]]; then
        echo "check-layers: $f:$n: the runtime includes \"$inc\", which is not a runtime header" >&2
        bad=1
    fi
done < <(grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$host"/runtime/*.[ch] |
         sed 's/^\([^:]*\):\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2:\3/')

# The bus reaches the runtime through struct bus_env, never through its internals.
if grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(\.\./runtime/\)\{0,1\}\(host\|generation\)\.h"' \
    "$host"/bus/*.[ch] >&2; then
    echo "check-layers: the bus includes the runtime's internals (host.h or generation.h) above" >&2
    bad=1
fi

if [[ $# -ge 3 ]]; then
    both=$(comm -12 <(nm -u "$2" | awk '{ print $NF }' | sort -u) \
                    <(nm -g --defined-only "$3" | awk 'NF == 3 { print $3 }' | sort -u))
    if [[ -n $both ]]; then
        echo "check-layers: the runtime library needs symbols the bus library defines:" $both >&2
        bad=1
    fi
fi
exit $bad
