#!/bin/sh
# Installs every Debian package ArqonBus needs to build, test and run, when missing.
# Each package is listed once, here. Idempotent; needs root only when something is missing.
set -eu

PACKAGES="
build-essential
cmake
pkg-config
clang-format
clang-tidy
cppcheck
valgrind
clang
libclang-rt-14-dev
openssl
libuv1-dev
libyaml-dev
libjansson-dev
libwebsockets-dev
libhiredis-dev
libmicrohttpd-dev
libjwt-dev
libssl-dev
libcmocka-dev
libedit-dev
zlib1g-dev
redis-server
mosquitto
python3-websockets
groff-base
haproxy
debhelper
lintian
adduser
iproute2
chromium
"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root, or install these packages yourself:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
