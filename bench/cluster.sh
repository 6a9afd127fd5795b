#!/usr/bin/env bash
# Two arqonbusd nodes joined by broker-redis (one redis-server), on loopback: the latency of the
# hop from one node to the other, and what the broker costs when every subscriber is local.
#
#   bench/cluster.sh [--quick] [--out DIR] [--no-broker] [BUILD_DIR]
#
# BUILD_DIR (default build-release) must hold a Release build with arqonbusd, the plugins
# (broker-redis among them) and bench/arqonbus-bench; this script builds nothing. It starts a
# redis-server and three arqonbusd: n1 and n2 with broker-redis, and solo without (the
# baseline); each has transport-websocket and commands-builtin on 127.0.0.1, port 0, and
# storage-memory, in a temporary conf.d. Every process it starts is stopped on exit, also on
# Ctrl-C. With 2+ CPUs the servers (the three nodes and redis-server) run on CPU 0 and the
# generator on CPU 1.
#
#   --quick      shorter runs (1 s warm-up, 2 s measured), one fan-out round instead of three
#   --out DIR    keep the JSON reports (results.jsonl) and the logs in DIR
#   --no-broker  only the runs of one node without a broker (the baseline)
#
# Runs (name [label]):
#   cluster-latency-10k-n1, -n10   1 -> 1 at 10k messages/s, 1 -> 10 at 1k messages/s:
#       [broker-off] one node without broker; [local] broker on, every client on node 1;
#       [cross-node] the publisher on node 1, the subscribers on node 2
#   cluster-fanout-1000   1 -> 1000 on one node, 20 messages in flight, three rounds of:
#       [broker-off] the node without broker; [broker-on] node 1, node 2 up with no member of
#       the channel; [broker-on-remote] node 1, node 2 holding one more subscriber (1000 on
#       node 1, 1 on node 2)
# The numbers: docs/benchmarks.md, "Cluster: two nodes joined by broker-redis".
set -euo pipefail

QUICK=0
OUT=""
BROKER=1
BUILD=build-release
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --no-broker) BROKER=0 ;;
    --out)
        OUT=$2
        shift
        ;;
    -h | --help)
        sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "cluster.sh: unknown option $1" >&2
        exit 2
        ;;
    *) BUILD=$1 ;;
    esac
    shift
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
if [ "$BROKER" = 1 ]; then
    bench_init "$BUILD" "$OUT" redis-server redis-cli
    [ -e "$PLUGINS/broker-redis.so" ] || {
        log "cluster.sh: no $PLUGINS/broker-redis.so (build it, or run with --no-broker)"
        exit 1
    }
else
    bench_init "$BUILD" "$OUT"
fi

if [ "$QUICK" = 1 ]; then
    WARM=1 DUR=2 ROUNDS=1
else
    WARM=2 DUR=5 ROUNDS=3
fi

# latency LABEL PORT PID REMOTE_PORT [ARGS...]: both latency runs (10k deliveries/s), the
# publisher on node PORT, the subscribers on node REMOTE_PORT (or PORT when it is empty).
latency() {
    local label=$1 port=$2 pid=$3 remote=$4 n
    shift 4
    for n in 1 10; do
        gen "cluster-latency-10k-n$n" "$label" "$port" "$pid" latency --subscribers "$n" \
            --target 10000 --payload-bytes 128 \
            ${remote:+--remote-port "$remote" --remote-subscribers "$n"} "$@"
    done
}

# fanout LABEL PORT PID [ARGS...]: 1 -> 1000 at capacity on node PORT.
fanout() {
    local label=$1 port=$2 pid=$3
    shift 3
    gen cluster-fanout-1000 "$label" "$port" "$pid" fanout --subscribers 1000 --window 20 \
        --payload-bytes 128 "$@"
}

START=$(date +%s)
echo "cluster.sh: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $PINNING;" \
    "$([ "$QUICK" = 1 ] && echo quick || echo full) run; warm-up $WARM s, measured $DUR s"

# Every node is up for the whole run, idle but for the run at hand: the fan-out runs alternate
# between the node without broker and node 1, so that a change in the machine's other load
# touches both alike.
start_arqonbus solo memory
SOLO_PID=$APID SOLO_PORT=$APORT
log "servers: arqonbusd solo (no broker) pid $SOLO_PID port $SOLO_PORT"
if [ "$BROKER" = 1 ]; then
    echo "cluster.sh: $(redis-server --version | cut -d' ' -f3)"
    start_redis
    start_arqonbus n1 memory broker "$REDIS_PORT"
    N1_PID=$APID N1_PORT=$APORT
    start_arqonbus n2 memory broker "$REDIS_PORT"
    N2_PID=$APID N2_PORT=$APORT
    log "servers: redis-server pid $REDIS_PID port $REDIS_PORT; node n1 pid $N1_PID port" \
        "$N1_PORT; node n2 pid $N2_PID port $N2_PORT"
fi

latency broker-off "$SOLO_PORT" "$SOLO_PID" ""
if [ "$BROKER" = 1 ]; then
    # Server CPU is node 1's (the publisher's node); the aux process is redis-server.
    latency local "$N1_PORT" "$N1_PID" "" --aux-pid "$REDIS_PID"
    latency cross-node "$N1_PORT" "$N1_PID" "$N2_PORT" --aux-pid "$REDIS_PID"
fi
for _ in $(seq "$ROUNDS"); do
    fanout broker-off "$SOLO_PORT" "$SOLO_PID"
    [ "$BROKER" = 1 ] || continue
    fanout broker-on "$N1_PORT" "$N1_PID" --aux-pid "$REDIS_PID"
    fanout broker-on-remote "$N1_PORT" "$N1_PID" --aux-pid "$REDIS_PID" --subscribers 1001 \
        --remote-port "$N2_PORT" --remote-subscribers 1
done

echo "cluster.sh: done in $(($(date +%s) - START)) s; $(wc -l <"$RESULTS") reports in" \
    "$([ -n "$OUT" ] && echo "$RESULTS" || echo "a temporary file (use --out DIR to keep them)")"
"$BIN" summary "$RESULTS"
