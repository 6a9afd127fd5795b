#!/bin/sh
# arqonbusd --describe-options as a command: its formats and usage errors, and with -c the
# shipped conf.d, whose enabled modules it names with their instances while the configured
# WebSocket port is taken by another process (it checks, it does not bind).
#
# Usage: test_describe_options.sh ARQONBUSD PLUGIN_DIR SOURCE_DIR
set -eu
daemon=$1 plugins=$2 src=$3
py=/usr/bin/python3
export ARQONBUS_PLUGIN_DIR="$plugins"
fail() {
    echo "test_describe_options: $*" >&2
    exit 1
}

status=0
"$daemon" --describe-options --format yaml >/dev/null 2>&1 || status=$?
[ $status = 2 ] || fail "--format yaml: exit $status, expected 2"
status=0
"$daemon" --format json >/dev/null 2>&1 || status=$?
[ $status = 2 ] || fail "--format without --describe-options: exit $status, expected 2"
status=0
"$daemon" --describe-options -c "$src/does-not-exist" >/dev/null 2>&1 || status=$?
[ $status = 1 ] || fail "a missing configuration: exit $status, expected 1"

for fmt in text markdown man; do
    "$daemon" --describe-options --format $fmt | grep -q max_connections ||
        fail "--format $fmt does not list bus.max_connections"
done

# A listener on 127.0.0.1 holds a port; the shipped conf.d is told to use it.
fifo=$(mktemp -u)
mkfifo "$fifo"
$py -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(30)' >"$fifo" &
holder=$!
trap 'kill $holder 2>/dev/null; rm -f "$fifo"' EXIT
read -r port <"$fifo"
ARQONBUS_SERVER_PORT=$port "$daemon" --describe-options -c "$src/conf.d" --format json |
    $py -c '
import json, sys
d = json.load(sys.stdin)
assert [s["name"] for s in d["sections"]] == ["host", "bus"], d["sections"]
mods = {m["name"]: m for m in d["modules"]}
assert mods["transport-websocket"]["instances"] == ["ws"], mods.keys()
assert mods["transport-websocket"]["kind"] == "transport"
port = [o for o in mods["transport-websocket"]["options"] if o["name"] == "port"][0]
assert (port["default"], port["min"], port["max"]) == ("9100", 0, 65535), port
assert "storage-redis" not in mods, "a disabled instance is not loaded"
assert any(c["name"] == "ping" for c in mods["commands-builtin"]["commands"])
' || fail "-c conf.d --format json: unexpected description"
