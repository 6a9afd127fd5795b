#!/usr/bin/env bash
# Where a latency tail comes from: one arqonbus-bench scenario against a fresh arqonbusd, with
# the whole machine traced by perf (context switches, and the server's and generator's
# epoll_wait, sendto and recvfrom), then a report of what could have delayed a message in the
# measured window:
#
#   - server turns: from epoll_wait's return to the next epoll_wait, the longest (work done
#     by arqonbusd in one loop turn);
#   - preemptions: arqonbusd or a generator thread switched out while runnable, how long, and
#     what ran instead (other processes on the machine);
#   - silent CPUs: stretches with no event at all on a CPU (no switch, no system call: not even
#     a timer wake-up), which a guest sees when its virtual CPU is not run.
#
#   bench/tail.sh [--out DIR] [BUILD_DIR] [-- SCENARIO ARGS...]
#
# The default scenario is compare.sh's latency-20k-n10 (1 -> 10 at 20k deliveries/s). Needs
# perf (linux-perf) and root. Findings: docs/benchmarks.md, "The latency tail".
set -euo pipefail

OUT=""
BUILD=build-release
while [ $# -gt 0 ]; do
    case "$1" in
    --out)
        OUT=$2
        shift
        ;;
    --)
        shift
        break
        ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "tail.sh: unknown option $1" >&2
        exit 2
        ;;
    *) BUILD=$1 ;;
    esac
    shift
done
SCENARIO=("$@")
[ ${#SCENARIO[@]} -gt 0 ] || SCENARIO=(latency --subscribers 10 --target 20000 --payload-bytes 128)

ME=tail.sh
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init "$BUILD" "$OUT" perf
WARM=2 DUR=5

start_arqonbus tail
ev="-e sched:sched_switch"
for s in epoll_wait sendto recvfrom; do
    ev="$ev -e syscalls:sys_enter_$s -e syscalls:sys_exit_$s"
done
# shellcheck disable=SC2086 # $ev is a list of options
perf record -q -a -k CLOCK_MONOTONIC $ev -o "$LOGS/tail.data" 2>/dev/null &
rec=$!
sleep 0.3
start=$(awk '{print $1}' /proc/uptime) # only to name the run in the log
gen tail arqonbus "$APORT" "$APID" "${SCENARIO[@]}" >/dev/null
kill -INT "$rec"
wait "$rec" 2>/dev/null || true
stop "$APID"
log "$ME: traced from uptime $start s; report of $RESULTS:"
sed -n 's/.*"lat_p50_us":\([0-9.]*\).*"lat_p99_us":\([0-9.]*\).*"lat_p999_us":\([0-9.]*\).*"lat_max_us":\([0-9.]*\).*/latency p50 \1 us, p99 \2 us, p99.9 \3 us, max \4 us/p' "$RESULTS"
sed -n 's/.*"cmd_p99_us":\([0-9.]*\).*"cmd_p999_us":\([0-9.]*\).*"cmd_max_us":\([0-9.]*\).*/command round trip p99 \1 us, p99.9 \2 us, max \3 us/p' "$RESULTS"

perf script -i "$LOGS/tail.data" -F comm,tid,cpu,time,event,trace 2>/dev/null | awk -v srv="$APID" -v warm="$WARM" -v dur="$DUR" '
function ms(x) { return sprintf("%.2f", x * 1000) }
{
    # comm tid [cpu] time: event: trace (a comm may hold spaces: find the [cpu] field)
    for (i = 2; i <= NF && $i !~ /^\[[0-9]+\]$/; i++) ;
    comm = $1; for (j = 2; j < i - 1; j++) comm = comm " " $j
    tid = $(i - 1); cpu = $i; t = $(i + 1) + 0; ev = $(i + 2)
    if (t0 == 0 && comm == "arqonbus-bench") t0 = t            # the generator starts
    if (t0 == 0) next
    if (t < t0 + warm || t > t0 + warm + dur) next               # the measured window only
    if (last[cpu] && t - last[cpu] > 0.02)
        silent[++ns] = sprintf("%s ms on CPU %s at +%.3f s", ms(t - last[cpu]), cpu, t - t0 - warm)
    last[cpu] = t
    if (tid == srv && ev == "syscalls:sys_exit_epoll_wait:") woke = t
    if (tid == srv && ev == "syscalls:sys_enter_epoll_wait:" && woke) {
        turn = t - woke; turns++
        if (turn > 0.001) long1++
        if (turn > worst) { worst = turn; worst_at = t - t0 - warm }
    }
    if (ev == "sched:sched_switch:") {
        line = $0
        prev_comm = line; sub(/.*prev_comm=/, "", prev_comm); sub(/ prev_pid=.*/, "", prev_comm)
        prev_pid = line; sub(/.*prev_pid=/, "", prev_pid); sub(/ .*/, "", prev_pid)
        state = line; sub(/.*prev_state=/, "", state); sub(/ .*/, "", state)
        next_pid = line; sub(/.*next_pid=/, "", next_pid); sub(/ .*/, "", next_pid)
        next_comm = line; sub(/.*next_comm=/, "", next_comm); sub(/ next_pid=.*/, "", next_comm)
        who = (prev_pid == srv) ? "arqonbusd" : (prev_comm == "arqonbus-bench" ? "generator" : "")
        if (who != "" && state ~ /^R/) { out[prev_pid] = t; outwho[prev_pid] = who; by[prev_pid] = next_comm }
        if (next_pid in out) {
            d = t - out[next_pid]; w = outwho[next_pid]
            pre[w]++; pre_sum[w] += d
            if (d > 0.0005) {
                key = w " by " by[next_pid]; big[key]++; big_sum[key] += d
                if (d > big_max[key]) big_max[key] = d
            }
            delete out[next_pid]
        }
    }
}
END {
    printf "server loop turns: %d; over 1 ms: %d; longest %s ms at +%.3f s\n", turns, long1, ms(worst), worst_at
    for (w in pre) printf "%s preempted while runnable: %d times, %s ms in all\n", w, pre[w], ms(pre_sum[w])
    for (k in big) printf "  over 0.5 ms: %s: %d times, %s ms in all, longest %s ms\n", k, big[k], ms(big_sum[k]), ms(big_max[k])
    printf "CPUs silent for over 20 ms: %d\n", ns
    for (i = 1; i <= ns && i <= 10; i++) print "  " silent[i]
}'
