# shellcheck shell=bash
# The pieces the benchmark scripts share (bench/compare.sh, bench/cluster.sh), sourced, never
# run: starting servers on free loopback ports, pinning, one generator run, and stopping every
# process started, also on Ctrl-C.
#
# bench_init BUILD_DIR OUT sets BIN, DAEMON, PLUGINS, LOGS, RESULTS, SRV, GEN, PINNING and
# NOFILE, and arms the traps. The caller sets WARM and DUR (and may set WS_OPTIONS) before the
# first gen or start_arqonbus.

ME=${0##*/}
PIDS=()
TMP=""
WS_OPTIONS=${WS_OPTIONS:-}

log() { printf '%s\n' "$*" >&2; }

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    [ -z "$TMP" ] || rm -rf "$TMP"
}

# bench_init BUILD_DIR OUT_DIR_OR_EMPTY TOOL...: the TOOLs must be on PATH.
bench_init() {
    local build=$1 out=$2 f tool
    shift 2
    BIN=$build/bench/arqonbus-bench
    DAEMON=$build/arqonbusd
    for f in "$BIN" "$DAEMON"; do
        [ -x "$f" ] || {
            log "$ME: no $f (build first: cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release" \
                "&& cmake --build $build -j)"
            exit 1
        }
    done
    PLUGINS=$(cd "$build/plugins" && pwd)
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            log "$ME: $tool is missing (packaging/install-deps.sh installs it)"
            exit 1
        }
    done

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/arq-${ME%.sh}-XXXXXX")
    if [ -n "$out" ]; then
        mkdir -p "$out"
        LOGS=$(cd "$out" && pwd)
    else
        LOGS=$TMP
    fi
    RESULTS=$LOGS/results.jsonl
    : >"$RESULTS"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM

    # Every descriptor the hard limit allows: 10k+ connections need them on both ends.
    ulimit -n "$(ulimit -Hn)"
    NOFILE=$(ulimit -n)

    if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
        SRV=(taskset -c 0)
        GEN=(taskset -c 1)
        PINNING="servers on CPU 0, generator on CPU 1"
    else
        SRV=()
        GEN=()
        PINNING="not pinned (fewer than 2 CPUs, or no taskset)"
    fi
    # On a machine shared with other work (builds), servers and generator run at nice -20 when
    # allowed, so that background jobs do not sit in the middle of a latency measurement. Every
    # server gets the same treatment.
    if [ "$(nice -n -20 nice 2>/dev/null)" = -20 ]; then
        SRV=(nice -n -20 "${SRV[@]}")
        GEN=(nice -n -20 "${GEN[@]}")
        PINNING="$PINNING, at nice -20"
    fi
}

stop() {
    local keep=() pid
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# wait_port PID LOG PATTERN: prints the port of the first log line matching PATTERN.
wait_port() {
    local pid=$1 logf=$2 pattern=$3 port=""
    for _ in $(seq 200); do
        port=$(grep -m1 -E "$pattern" "$logf" 2>/dev/null | sed -n 's/.* port=\([0-9]*\).*/\1/p')
        [ -n "$port" ] && {
            echo "$port"
            return 0
        }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    log "$ME: no listening port in $logf:"
    tail -5 "$logf" >&2 || true
    return 1
}

# start_arqonbus NAME [memory | redis PORT | broker PORT]...: sets APID and APORT. memory and
# redis add a storage plugin (storage-redis on 127.0.0.1:PORT), broker the broker-redis instance
# on 127.0.0.1:PORT; the node is named NAME.
start_arqonbus() {
    local dir=$LOGS/arqonbusd-$1 node=$1
    shift
    mkdir -p "$dir/conf.d"
    cat >"$dir/conf.d/00-host.yaml" <<EOF
host:
  plugin_dir: $PLUGINS
  log_level: info
  node: $node
bus:
  auto_create: true
  max_queued_bytes: 64MiB
EOF
    cat >"$dir/conf.d/10-ws.yaml" <<EOF
plugins:
  ws:
    module: transport-websocket
    config:
      host: 127.0.0.1
      port: 0
      max_connections: 1000000
      max_queued_bytes: 64MiB
${WS_OPTIONS}
EOF
    cat >"$dir/conf.d/20-commands.yaml" <<EOF
plugins:
  builtin:
    module: commands-builtin
EOF
    while [ $# -gt 0 ]; do
        case "$1" in
        memory)
            printf 'plugins:\n  history:\n    module: storage-memory\n' >"$dir/conf.d/30-storage.yaml"
            ;;
        redis)
            printf 'plugins:\n  history:\n    module: storage-redis\n    config:\n      url: %s\n' \
                "redis://127.0.0.1:$2" >"$dir/conf.d/30-storage.yaml"
            shift
            ;;
        broker)
            printf 'plugins:\n  broker:\n    module: broker-redis\n    config:\n      url: %s\n' \
                "redis://127.0.0.1:$2" >"$dir/conf.d/70-broker.yaml"
            shift
            ;;
        *)
            log "$ME: start_arqonbus: unknown option $1"
            return 1
            ;;
        esac
        shift
    done
    "${SRV[@]}" "$DAEMON" -c "$dir/conf.d" >"$dir/arqonbusd.log" 2>&1 &
    APID=$!
    PIDS+=("$APID")
    APORT=$(wait_port "$APID" "$dir/arqonbusd.log" 'component=ws msg=listening')
}

free_port() {
    local p
    while :; do
        p=$("$BIN" free-port)
        case " $* " in *" $p "*) ;; *) break ;; esac
    done
    echo "$p"
}

wait_tcp() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    log "$ME: nothing listens on 127.0.0.1:$1"
    return 1
}

# start_redis: a redis-server without persistence on a free loopback port; sets REDIS_PID and
# REDIS_PORT.
start_redis() {
    mkdir -p "$LOGS/redis"
    REDIS_PORT=$(free_port)
    "${SRV[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$LOGS/redis" >"$LOGS/redis/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    log "$ME: redis-server did not answer"
    return 1
}

# gen NAME LABEL PORT PID SCENARIO ARGS...: one run of the generator (ARGS override the
# defaults); a failed run is reported, not fatal.
gen() {
    local name=$1 label=$2 port=$3 pid=$4 scenario=$5
    shift 5
    "${GEN[@]}" "$BIN" "$scenario" --port "$port" --server-pid "$pid" --name "$name" \
        --label "$label" --warmup "$WARM" --duration "$DUR" --json "$RESULTS" "$@" ||
        log "$ME: $name [$label] failed"
    echo
}
