#!/bin/sh
# The Debian packages as a user gets them: build them from the tree (packaging/build-deb.sh),
# check them with lintian, install them on this machine with dpkg, check where every file went
# and what is a conffile, check the installed configuration and start the installed daemon as
# the arqonbus user the way the systemd unit does (its own ExecStartPre, ExecStart and
# ExecReload lines, with the readiness protocol read from NOTIFY_SOCKET; systemd itself is not
# needed), talk to it with the installed arqonbus-cli, build the out-of-tree example against
# the installed arqonbus-dev through pkg-config and through CMake and load it, then purge the
# packages and leave the machine as it was.
# Needs root (dpkg -i), dpkg-buildpackage, debhelper and lintian; exits 77 (skipped) without
# them, or when an arqonbus package is already installed here (it would be replaced).
# Usage: test_deb.sh SOURCE_DIR
set -eu
src=$(cd "$1" && pwd)
pkgs="arqonbus arqonbus-plugin-redis arqonbus-plugin-jwt arqonbus-cli arqonbus-dev"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root, to install the packages"
for tool in dpkg-buildpackage dh lintian setpriv ss /usr/bin/python3 cmake cc; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
for p in $pkgs; do
    case "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" in
        "" | not-installed) ;;
        *) skip "$p is already installed here; not replacing it" ;;
    esac
done
user_existed=no
getent passwd arqonbus >/dev/null && user_existed=yes
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
plugindir=/usr/lib/$ma/arqonbus/plugins
major=$(sed -n 's/^#define ARQ_ABI_MAJOR \([0-9]*\).*/\1/p' "$src/sdk/include/arqonbus/plugin.h")
minor=$(sed -n 's/^#define ARQ_ABI_MINOR \([0-9]*\).*/\1/p' "$src/sdk/include/arqonbus/plugin.h")
abi="$major.$minor"

tmp=$(mktemp -d /tmp/arqonbus-deb.XXXXXX)
chmod 755 "$tmp" # the daemon, as arqonbus, writes to the notify socket in here
installed=no
daemon=
listener=
cleanup() {
    rc=$?
    if [ -n "$daemon" ]; then
        kill -KILL "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true # before userdel, which refuses a user still running
    fi
    [ -z "$listener" ] || kill "$listener" 2>/dev/null || true
    rm -f "$plugindir/example-minimal.so" /etc/arqonbus/conf.d/99-bad.yaml
    if [ "$installed" = yes ]; then
        # shellcheck disable=SC2086
        dpkg --purge $pkgs >/dev/null 2>&1 || echo "cleanup: dpkg --purge failed"
    fi
    if [ "$user_existed" = no ] && getent passwd arqonbus >/dev/null; then
        userdel arqonbus 2>/dev/null || true
        groupdel arqonbus 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

step() { echo "--- $*"; }

# --- build and lint ------------------------------------------------------------------------
step "building the packages"
start=$(date +%s)
if ! JOBS=2 "$src/packaging/build-deb.sh" "$src" "$tmp/deb" >"$tmp/build.log" 2>&1; then
    tail -60 "$tmp/build.log"
    fail "the package build failed"
fi
echo "built in $(($(date +%s) - start)) s"
step "lintian (every tag it may print is overridden in debian/, with the reason)"
lintian --display-info --pedantic --fail-on error,warning,info,pedantic "$tmp"/deb/*.changes ||
    fail "lintian printed a tag that debian/*.lintian-overrides does not explain"

# --- install -----------------------------------------------------------------------------
step "installing"
debs=
for p in $pkgs; do
    f=$(ls "$tmp"/deb/"${p}"_*.deb)
    debs="$debs $f"
done
installed=yes
# shellcheck disable=SC2086
dpkg -i $debs >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i failed"; }

step "files, owners and permissions"
owner() { dpkg -S "$1" 2>/dev/null | cut -d: -f1; }
expect_owner() { [ "$(owner "$1")" = "$2" ] || fail "$1: owned by '$(owner "$1")', not $2"; }
[ -x /usr/sbin/arqonbusd ] || fail "/usr/sbin/arqonbusd"
expect_owner /usr/sbin/arqonbusd arqonbus
for p in transport-websocket transport-http telemetry-websocket telemetry-log commands-builtin \
    commands-example storage-memory auth-rbac auth-tokens; do
    expect_owner "$plugindir/$p.so" arqonbus
done
expect_owner "$plugindir/storage-redis.so" arqonbus-plugin-redis
expect_owner "$plugindir/broker-redis.so" arqonbus-plugin-redis
expect_owner "$plugindir/auth-jwt.so" arqonbus-plugin-jwt
expect_owner /usr/share/arqonbus/conf-available/30-storage-redis.yaml arqonbus-plugin-redis
expect_owner /usr/share/arqonbus/conf-available/70-broker-redis.yaml arqonbus-plugin-redis
expect_owner /usr/share/arqonbus/conf-available/60-auth-jwt.yaml arqonbus-plugin-jwt
expect_owner /usr/bin/arqonbus-cli arqonbus-cli
expect_owner /lib/systemd/system/arqonbus.service arqonbus
expect_owner /etc/logrotate.d/arqonbus arqonbus
expect_owner /usr/include/arqonbus/plugin.h arqonbus-dev
expect_owner "/usr/lib/$ma/pkgconfig/arqonbus-sdk.pc" arqonbus-dev
expect_owner "/usr/lib/$ma/cmake/ArqonbusSDK/ArqonbusSDKConfig.cmake" arqonbus-dev
expect_owner /usr/share/doc/arqonbus-dev/examples/minimal-plugin/minimal.c arqonbus-dev
expect_owner /usr/share/doc/arqonbus-dev/examples/minimal-plugin/CMakeLists.txt arqonbus-dev
# Every manual page of man/, in the package of the program it describes.
for page in "$src"/man/*.[1-8]; do
    name=$(basename "$page")
    f=/usr/share/man/man${name##*.}/$name.gz
    case "$name" in arqonbus-cli.*) want=arqonbus-cli ;; *) want=arqonbus ;; esac
    expect_owner "$f" "$want"
done
getent passwd arqonbus | grep -q ':/usr/sbin/nologin$' || fail "no arqonbus system user"
[ "$(stat -c %U:%G:%a /var/log/arqonbus)" = arqonbus:adm:2750 ] ||
    fail "/var/log/arqonbus is $(stat -c %U:%G:%a /var/log/arqonbus)"
[ "$(stat -c %U:%G:%a /etc/arqonbus/conf.d)" = root:arqonbus:750 ] ||
    fail "/etc/arqonbus/conf.d is $(stat -c %U:%G:%a /etc/arqonbus/conf.d)"

step "dependencies"
dpkg-query -W -f='${Provides}' arqonbus | grep -q "arqonbus-abi-$abi" || fail "Provides"
dpkg-query -W -f='${Depends}' arqonbus | grep -q libwebsockets-evlib-uv ||
    fail "arqonbus does not depend on libwebsockets-evlib-uv"
for p in arqonbus-plugin-redis arqonbus-plugin-jwt; do
    dpkg-query -W -f='${Depends}' $p | grep -q "arqonbus-abi-$abi" || fail "$p: Depends"
done
dpkg-query -W -f='${Suggests}' arqonbus-plugin-redis | grep -q redis-server || fail "Suggests"
[ "$(pkg-config --variable=abi arqonbus-sdk)" = "$abi" ] || fail "arqonbus-sdk.pc: abi"

step "conffiles"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' arqonbus | awk 'NF {print $1}')
echo "$conffiles"
for f in "$src"/conf.d/*.yaml; do
    echo "$conffiles" | grep -qx "/etc/arqonbus/conf.d/${f##*/}" || fail "${f##*/} is not a conffile"
done
echo "$conffiles" | grep -qx /etc/logrotate.d/arqonbus || fail "logrotate.d/arqonbus: no conffile"

step "the unit"
unit=/lib/systemd/system/arqonbus.service
if command -v systemd-analyze >/dev/null; then
    man=yes
    command -v man >/dev/null || man=no
    systemd-analyze verify --man=$man "$unit" || fail "systemd-analyze verify"
fi
for want in Type=notify User=arqonbus Restart=on-failure NoNewPrivileges=yes \
    ProtectSystem=strict CapabilityBoundingSet= PrivateTmp=yes; do
    grep -qx "$want" "$unit" || fail "the unit has no $want"
done

# --- the daemon, as the unit runs it ------------------------------------------------------
# The unit's command lines, as systemd would run them: as User=/Group=, without privileges.
unit_lines() { sed -n "s/^$1=//p" "$unit"; }
unit_user="--reuid=arqonbus --regid=arqonbus --init-groups --no-new-privs --inh-caps=-all
    --bounding-set=-all"
# shellcheck disable=SC2086
as_unit() { setpriv $unit_user -- "$@"; }
free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
ws_port=$(free_port)
http_port=$(free_port)
while [ "$http_port" = "$ws_port" ]; do http_port=$(free_port); done
export ARQONBUS_SERVER_PORT="$ws_port" ARQONBUS_HTTP_PORT="$http_port"
export ARQONBUS_SERVER_HOST=127.0.0.1 ARQONBUS_HTTP_HOST=127.0.0.1

step "ExecStartPre: --check-config on /etc/arqonbus/conf.d"
[ "$(unit_lines ExecStartPre)" = "/usr/sbin/arqonbusd --check-config -c /etc/arqonbus/conf.d" ] ||
    fail "ExecStartPre is '$(unit_lines ExecStartPre)'"
# shellcheck disable=SC2046
as_unit $(unit_lines ExecStartPre) || fail "the installed configuration does not check"

# The supervisor's end of sd_notify: every datagram, one per paragraph, into notify.log.
/usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as log:
    while True:
        log.write(s.recv(4096).decode() + "\n\n")
        log.flush()
' "$tmp/notify" "$tmp/notify.log" &
listener=$!
# Wait until `pattern` has been seen `count` times in notify.log (10 s at most).
wait_notify() {
    n=0
    while [ "$(grep -c -- "$1" "$tmp/notify.log" 2>/dev/null || true)" -lt "$2" ]; do
        n=$((n + 1))
        [ $n -le 100 ] || { cat "$tmp/notify.log"; fail "no '$1' (x$2) from the daemon"; }
        kill -0 "$daemon" 2>/dev/null || [ -z "$daemon" ] || fail "the daemon died"
        sleep 0.1
    done
}
while [ ! -S "$tmp/notify" ]; do sleep 0.05; done

step "ExecStart as arqonbus, Type=notify"
# shellcheck disable=SC2046,SC2086
NOTIFY_SOCKET=$tmp/notify setpriv $unit_user -- $(unit_lines ExecStart) >"$tmp/daemon.log" 2>&1 &
daemon=$!
wait_notify READY=1 1
[ "$(ps -o user= -p "$daemon")" = arqonbus ] || fail "the daemon runs as $(ps -o user= -p "$daemon")"
for port in "$ws_port" "$http_port"; do
    ss -ltnpH "sport = :$port" | grep -q "127.0.0.1:$port .*pid=$daemon," ||
        fail "the daemon does not listen on 127.0.0.1:$port: $(ss -ltnpH "sport = :$port")"
done

step "the installed arqonbus-cli"
out=$(arqonbus-cli -H 127.0.0.1 -p "$ws_port" --timeout 10 cmd status) || fail "cmd status: $out"
echo "$out"
echo "$out" | grep -q '"status":"success"' || fail "cmd status did not succeed"
out=$(arqonbus-cli -H 127.0.0.1 -p "$ws_port" --timeout 10 pub lobby general '{"text":"hi"}') ||
    fail "pub: $out"
echo "$out"

step "ExecReload: a good configuration is reloaded, a bad one is refused before any signal"
reload() {
    unit_lines ExecReload | while read -r line; do
        # shellcheck disable=SC2046
        as_unit $(echo "$line" | sed "s/\\\$MAINPID/$daemon/") || return 1
    done
}
reload || fail "ExecReload failed on a good configuration"
wait_notify X_ARQONBUS_RELOAD=ok 1
printf 'host:\n  no_such_option: 1\n' >/etc/arqonbus/conf.d/99-bad.yaml
if reload >"$tmp/bad-reload.log" 2>&1; then fail "ExecReload accepted a bad configuration"; fi
cat "$tmp/bad-reload.log"
rm /etc/arqonbus/conf.d/99-bad.yaml
reload || fail "ExecReload failed on a good configuration"
wait_notify X_ARQONBUS_RELOAD=ok 2
# The refused one never reached the daemon: two reloads began, and none failed.
[ "$(grep -c RELOADING=1 "$tmp/notify.log")" -eq 2 ] || { cat "$tmp/notify.log"; fail "reloads"; }
! grep -q X_ARQONBUS_RELOAD=failed "$tmp/notify.log" || fail "a reload reached the daemon and failed"
arqonbus-cli -H 127.0.0.1 -p "$ws_port" --timeout 10 cmd status >/dev/null ||
    fail "the daemon does not answer after the reloads"

step "stop (SIGTERM, as systemctl stop sends)"
kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=
[ "$status" -eq 0 ] || { cat "$tmp/daemon.log"; fail "the daemon exited with $status"; }
grep -q STOPPING=1 "$tmp/notify.log" || fail "no STOPPING=1"

step "the plugin packages' snippets, in place of the shipped files they replace"
mkdir "$tmp/snippets"
cp /etc/arqonbus/conf.d/*.yaml "$tmp/snippets/"
cp /usr/share/arqonbus/conf-available/30-storage-redis.yaml "$tmp/snippets/30-storage.yaml"
cp /usr/share/arqonbus/conf-available/70-broker-redis.yaml "$tmp/snippets/70-broker.yaml"
cp /usr/share/arqonbus/conf-available/60-auth-jwt.yaml "$tmp/snippets/60-auth.yaml"
ARQONBUS_AUTH_JWT_SECRET=0123456789abcdef0123456789abcdef \
    /usr/sbin/arqonbusd --check-config -c "$tmp/snippets" || fail "the snippets do not check"

# --- arqonbus-dev ------------------------------------------------------------------------
ex=/usr/share/doc/arqonbus-dev/examples/minimal-plugin
step "the example through pkg-config"
mkdir "$tmp/pc"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -fPIC -shared -Wl,-z,defs \
    $(pkg-config --cflags arqonbus-sdk) "$ex/minimal.c" -o "$tmp/pc/example-minimal.so" \
    $(pkg-config --libs arqonbus-sdk)
mkdir "$tmp/conf-pc"
printf 'plugins:\n  counter:\n    module: %s\n' "$tmp/pc/example-minimal.so" >"$tmp/conf-pc/10.yaml"
/usr/sbin/arqonbusd --check-config -c "$tmp/conf-pc" || fail "the pkg-config build does not load"

step "the example through CMake, installed into the plugin directory"
cmake -S "$ex" -B "$tmp/cmake" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null ||
    fail "cmake could not configure the example"
cmake --build "$tmp/cmake" >/dev/null || fail "cmake could not build the example"
cmake --install "$tmp/cmake" || fail "cmake could not install the example"
[ -f "$plugindir/example-minimal.so" ] || fail "not installed into $plugindir"
exported=$(nm -D --defined-only "$plugindir/example-minimal.so" | awk '$2 == "T" {print $3}')
[ "$exported" = arq_plugin_v1 ] || fail "the CMake build exports: $exported"
mkdir "$tmp/conf-cmake"
printf 'plugins:\n  counter:\n    module: example-minimal\n' >"$tmp/conf-cmake/10.yaml"
/usr/sbin/arqonbusd --check-config -c "$tmp/conf-cmake" || fail "the CMake build does not load"
rm "$plugindir/example-minimal.so"

# --- purge -------------------------------------------------------------------------------
step "purge"
# shellcheck disable=SC2086
dpkg --purge $pkgs >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg --purge"; }
installed=no
for gone in /etc/arqonbus /var/log/arqonbus /usr/lib/$ma/arqonbus /usr/share/arqonbus \
    /usr/sbin/arqonbusd /lib/systemd/system/arqonbus.service /etc/logrotate.d/arqonbus; do
    [ ! -e "$gone" ] || fail "$gone is left after the purge"
done
echo "packages: OK"
