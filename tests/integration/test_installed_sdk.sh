#!/bin/sh
# The SDK as a user gets it: install the project into a scratch prefix (not the one it was
# configured for), build the plugin guide's example against the installed header through
# plain pkg-config, and have the installed arqonbusd load it from its own plugin directory
# and check its own conf.d, without being told where they are; then the same after moving the
# whole tree. Usage: test_installed_sdk.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/usr" >/dev/null
pc=$(find "$tmp/usr" -name arqonbus-sdk.pc)
test -n "$pc" || { echo "arqonbus-sdk.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"

# Plain pkg-config: arqonbus-sdk.pc itself must point into the prefix it was installed to.
unset ARQONBUS_PLUGIN_DIR
plugindir=$(pkg-config --variable=plugindir arqonbus-sdk)
test -d "$plugindir" || { echo "plugindir $plugindir does not exist"; exit 1; }
test -f "$plugindir/telemetry-log.so" || { echo "telemetry-log.so not in $plugindir"; exit 1; }
test -f "$tmp/usr/include/arqonbus/plugin.h" || { echo "plugin.h not installed"; exit 1; }

# Only the installed header: no path into the source tree.
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -fPIC -shared \
    $(pkg-config --cflags arqonbus-sdk) \
    "$src/docs/examples/minimal-plugin/minimal.c" -o "$plugindir/example-minimal.so"
# Exactly one exported symbol of ours: the entry point.
exported=$(nm -D --defined-only "$plugindir/example-minimal.so" | awk '$2 == "T" {print $3}')
test "$exported" = "arq_plugin_v1" || { echo "exported: $exported"; exit 1; }

# The third-party-style command set, the same way: it uses jansson, which arqonbus-sdk.pc
# brings (Requires), with -z defs so that a missing library fails the link here.
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -fPIC -shared -Wl,-z,defs \
    "$src/plugins/commands-example/commands_example.c" -o "$plugindir/my-commands.so" \
    $(pkg-config --cflags --libs arqonbus-sdk)

mkdir "$tmp/conf.d"
cat > "$tmp/conf.d/10-example.yaml" <<YAML
plugins:
  counter:
    module: example-minimal
    config:
      interval: 1s
  mine:
    module: my-commands
YAML
out=$("$tmp/usr/bin/arqonbusd" --check-config -c "$tmp/conf.d" 2>&1)
echo "$out"
echo "$out" | grep -q "arqonbusd: configuration OK: $tmp/conf.d"

# Its own conf.d, installed beside it, is the default and is valid.
out=$("$tmp/usr/bin/arqonbusd" --check-config 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -q "arqonbusd: configuration OK: $tmp/usr/etc/arqonbus/conf.d" ||
    { echo "$out"; exit 1; }

# The installed tree moved elsewhere still finds itself.
mv "$tmp/usr" "$tmp/moved"
export PKG_CONFIG_PATH="$(dirname "$(find "$tmp/moved" -name arqonbus-sdk.pc)")"
test "$(pkg-config --variable=plugindir arqonbus-sdk)" -ef "$tmp/moved/${plugindir#"$tmp/usr/"}" ||
    { echo "plugindir after a move: $(pkg-config --variable=plugindir arqonbus-sdk)"; exit 1; }
out=$("$tmp/moved/bin/arqonbusd" --check-config -c "$tmp/conf.d" 2>&1) || { echo "$out"; exit 1; }
out=$("$tmp/moved/bin/arqonbusd" --check-config 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -q "arqonbusd: configuration OK: $tmp/moved/etc/arqonbus/conf.d" ||
    { echo "$out"; exit 1; }
echo "installed SDK: OK"
