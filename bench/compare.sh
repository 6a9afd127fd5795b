#!/usr/bin/env bash
# ArqonBus side by side with Mosquitto (MQTT over WebSocket) and a plain relay, on loopback.
#
#   bench/compare.sh [--quick] [--out DIR] [--perf] [--ws-option 'KEY: VALUE']... [BUILD_DIR]
#
# BUILD_DIR (default build-release) must hold a Release build with arqonbusd, the plugins and
# bench/arqonbus-bench; this script builds nothing. It starts arqonbusd (transport-websocket +
# commands-builtin on 127.0.0.1, port 0, a temporary conf.d), mosquitto (a temporary config),
# the relay and redis-server (for the Redis history run), each on a free loopback port, and
# stops them all on exit. With 2+ CPUs the servers run on CPU 0 and the generator on CPU 1.
#
#   --quick    about a minute: shorter runs, fewer sizes
#   --out DIR  keep the JSON reports (results.jsonl), the logs and perf profiles in DIR
#   --perf     after the measured runs, profile arqonbusd (perf record -e cpu-clock) on the
#              fan-out, rooms, latency and connections scenarios and print the top symbols
#   --ws-option 'KEY: VALUE'
#              one more option of arqonbusd's transport-websocket, e.g. 'rx_buffer_size: 4KiB'
#
# The numbers: docs/benchmarks.md, "Scenarios side by side with Mosquitto".
set -euo pipefail

QUICK=0
PERF=0
OUT=""
WS_OPTIONS=""
BUILD=build-release
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --perf) PERF=1 ;;
    --out)
        OUT=$2
        shift
        ;;
    --ws-option)
        WS_OPTIONS+="      $2"$'\n'
        shift
        ;;
    -h | --help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "compare.sh: unknown option $1" >&2
        exit 2
        ;;
    *) BUILD=$1 ;;
    esac
    shift
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init "$BUILD" "$OUT" mosquitto redis-server redis-cli
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
    echo "compare.sh: --perf needs perf (linux-perf)" >&2
    exit 1
fi

if [ "$QUICK" = 1 ]; then
    WARM=1 DUR=2 SIZES="100 1000"
else
    WARM=2 DUR=5 SIZES="100 1000 10000"
fi

# Mosquitto 2.0.11: a websockets listener bound to an address binds every interface (lws), so
# it is bound to the interface lo; and a websockets listener alone is refused, so a plain MQTT
# listener on another loopback port comes first. Sets MPID and MPORT.
start_mosquitto() {
    local dir=$LOGS/mosquitto-$1 mqtt_port
    mkdir -p "$dir"
    mqtt_port=$(free_port)
    MPORT=$(free_port "$mqtt_port")
    cat >"$dir/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stdout
log_type error
log_type warning
connection_messages false
set_tcp_nodelay true
user root
listener $mqtt_port 127.0.0.1
listener $MPORT lo
protocol websockets
EOF
    "${SRV[@]}" mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
    MPID=$!
    PIDS+=("$MPID")
    wait_tcp "$MPORT"
}

start_relay() {
    "${SRV[@]}" "$BIN" relay --host 127.0.0.1 --port 0 >"$LOGS/relay.log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    RPORT=$(wait_port "$RPID" "$LOGS/relay.log" 'msg=listening')
}

# profile NAME PID SCENARIO ARGS...: a run under perf (apart from the results): where arqonbusd
# spends its CPU (perf record -e cpu-clock), and its syscalls per delivery (or per command).
profile() {
    local name=$1 pid=$2 scenario=$3 ev="" s rec st ops unit one
    shift 3
    for s in epoll_ctl epoll_wait sendto write writev recvfrom read; do
        ev="$ev${ev:+,}syscalls:sys_enter_$s"
    done
    perf record -q -e cpu-clock -g -p "$pid" -o "$LOGS/perf-$name.data" 2>/dev/null &
    rec=$!
    perf stat -x, -e "$ev" -p "$pid" -o "$LOGS/perf-$name.syscalls" 2>/dev/null &
    st=$!
    sleep 0.3
    # no warm-up: the counts cover the measured window (plus the short setup)
    "${GEN[@]}" "$BIN" "$scenario" --server-pid "$pid" --name "profile-$name" --label arqonbus \
        --warmup 0 --duration "$DUR" --json "$LOGS/profile.jsonl" "$@" >/dev/null || true
    kill -INT "$rec" "$st" 2>/dev/null || true
    wait "$rec" "$st" 2>/dev/null || true
    if [ "$scenario" = commands ]; then unit=commands one=command; else unit=deliveries one=delivery; fi
    ops=$(tail -1 "$LOGS/profile.jsonl" | sed -n "s/.*\"$unit\":\([0-9]*\).*/\1/p")
    echo "### arqonbusd during $name: CPU by object, then the top symbols (self time)"
    perf report -i "$LOGS/perf-$name.data" --stdio --no-children --sort dso -g none \
        --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]' || true
    perf report -i "$LOGS/perf-$name.data" --stdio --no-children --sort dso,symbol -g none \
        --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]' | head -25 || true # head closes early
    echo "### syscalls per $one (${ops:-?} $unit)"
    awk -F, -v ops="${ops:-0}" '$3 ~ /sys_enter_/ && ops > 0 {
        sub(/.*sys_enter_/, "", $3); printf "  %-12s %.3f\n", $3, $1 / ops }' \
        "$LOGS/perf-$name.syscalls"
    echo
}

START=$(date +%s)
echo "compare.sh: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $PINNING;" \
    "descriptor limit $NOFILE; $( [ "$QUICK" = 1 ] && echo quick || echo full) run;" \
    "warm-up $WARM s, measured $DUR s"
echo "compare.sh: mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version //p' | head -1)," \
    "$(redis-server --version | cut -d' ' -f3)"
echo

start_arqonbus main
start_mosquitto main
start_relay
log "servers: arqonbusd pid $APID port $APORT; mosquitto pid $MPID port $MPORT; relay pid $RPID port $RPORT"

# Fan-out at capacity: the window (messages in flight) keeps ~10-40k deliveries queued.
for n in $SIZES; do
    case $n in 100) w=100 ;; 1000) w=20 ;; *) w=4 ;; esac
    common=(fanout --subscribers "$n" --window "$w" --payload-bytes 128)
    gen "fanout-$n" arqonbus "$APORT" "$APID" "${common[@]}" --protocol arqonbus
    gen "fanout-$n" mosquitto "$MPORT" "$MPID" "${common[@]}" --protocol mqtt
    gen "fanout-$n" relay "$RPORT" "$RPID" "${common[@]}" --protocol raw
done

# Latency at a fixed 20k deliveries/s: 1 -> 100 at 200 messages/s, then 1 -> 10 at 2000/s
# (a shorter fan-out sweep per message).
for n in 100 10; do
    name=latency-20k
    [ "$n" = 10 ] && name=latency-20k-n10
    common=(latency --subscribers "$n" --target 20000 --payload-bytes 128)
    gen "$name" arqonbus "$APORT" "$APID" "${common[@]}" --protocol arqonbus
    gen "$name" mosquitto "$MPORT" "$MPID" "${common[@]}" --protocol mqtt
    gen "$name" relay "$RPORT" "$RPID" "${common[@]}" --protocol raw
done

# ArqonBus alone: rooms, commands.
gen rooms arqonbus "$APORT" "$APID" rooms --clients 1000 --room-size 10 --window 8
gen commands-ping arqonbus "$APORT" "$APID" commands --clients 1000 --rate 10 --command ping
gen commands-join arqonbus "$APORT" "$APID" commands --clients 1000 --rate 10 --command join
if [ "$QUICK" = 0 ]; then
    gen commands-ping-max arqonbus "$APORT" "$APID" commands --clients 100 --command ping
    # The nearest MQTT round trips, for scale: PINGREQ and SUBSCRIBE/UNSUBSCRIBE.
    gen commands-ping mosquitto "$MPORT" "$MPID" commands --clients 1000 --rate 10 \
        --command ping --protocol mqtt
    gen commands-join mosquitto "$MPORT" "$MPID" commands --clients 1000 --rate 10 \
        --command join --protocol mqtt
fi
stop "$MPID"
stop "$RPID"

# History: the rooms run against storage-memory, then storage-redis (a real redis-server).
start_arqonbus history-memory memory
gen history-memory arqonbus "$APORT" "$APID" rooms --clients 1000 --room-size 10 --window 8
stop "$APID"
start_redis
start_arqonbus history-redis redis "$REDIS_PORT"
gen history-redis arqonbus "$APORT" "$APID" rooms --clients 1000 --room-size 10 --window 8 \
    --aux-pid "$REDIS_PID"
stop "$APID"
stop "$REDIS_PID"

# Idle connections, each on a fresh server so that RSS grows from its start.
MAXC=$((NOFILE - 200))
[ "$MAXC" -gt 100000 ] && MAXC=100000
CONNS="10000"
[ "$QUICK" = 0 ] && [ "$MAXC" -gt 10000 ] && CONNS="10000 $MAXC"
for k in $CONNS; do
    start_arqonbus "connections-$k"
    gen "connections-$k" arqonbus "$APORT" "$APID" connections --clients "$k" --warmup 2
    stop "$APID"
done
if [ "$QUICK" = 0 ]; then
    start_mosquitto connections
    gen connections-10000 mosquitto "$MPORT" "$MPID" connections --clients 10000 --protocol mqtt \
        --warmup 2
    stop "$MPID"
fi

if [ "$PERF" = 1 ]; then
    start_arqonbus profile
    profile fanout-1000 "$APID" fanout --subscribers 1000 --window 20 --port "$APORT"
    profile rooms "$APID" rooms --clients 1000 --window 8 --port "$APORT"
    profile latency-20k "$APID" latency --subscribers 100 --target 20000 --port "$APORT"
    profile commands-ping "$APID" commands --clients 1000 --rate 10 --port "$APORT"
    profile commands-join "$APID" commands --clients 1000 --rate 10 --command join --port "$APORT"
    stop "$APID"
fi

echo "compare.sh: done in $(($(date +%s) - START)) s; $(wc -l <"$RESULTS") reports in" \
    "$([ -n "$OUT" ] && echo "$RESULTS" || echo "a temporary file (use --out DIR to keep them)")"
"$BIN" summary "$RESULTS"
