#!/bin/sh
# Runs fuzz targets for a bounded time each, at most JOBS at once, and fails on any crash,
# leak, timeout or out-of-memory.
#
#   tests/fuzz/run.sh [-j JOBS] [-c CORPUS_ROOT] BUILD_DIR SECONDS [TARGET...]
#
# TARGET is a name under tests/fuzz/corpus (envelope, config, ...); none: all of them. Each
# target starts from its checked-in seeds, copied into CORPUS_ROOT/TARGET (kept between runs,
# so that a long run builds on the last one), or into a scratch directory removed afterwards
# when no -c is given: the tree is never written. Findings (crash-*, leak-*, timeout-*,
# oom-*) are kept in BUILD_DIR/fuzz-artifacts/TARGET, and each run's log beside them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
jobs=2
corpus_root=
while getopts j:c: opt; do
    case $opt in
    j) jobs=$OPTARG ;;
    c) corpus_root=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { echo "usage: $0 [-j JOBS] [-c CORPUS_ROOT] BUILD_DIR SECONDS [TARGET...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
seconds=$2
shift 2
# shellcheck disable=SC2046 # target names are plain words
[ $# -gt 0 ] || set -- $(cd "$here/corpus" && ls)
if [ -n "$corpus_root" ]; then
    mkdir -p "$corpus_root"
    corpus_root=$(cd "$corpus_root" && pwd)
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/arq-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM

# One target: its corpus ready, then libFuzzer for `seconds`. Writes its exit status to
# $scratch/TARGET.rc.
run_one() {
    t=$1
    bin=$build/tests/fuzz/fuzz_$t
    out=$build/fuzz-artifacts/$t
    mkdir -p "$out"
    if [ -n "$corpus_root" ]; then
        corpus=$corpus_root/$t
    else
        corpus=$scratch/corpus-$t
    fi
    mkdir -p "$corpus"
    cp "$here/corpus/$t"/* "$corpus"/
    rc=0
    # -timeout: one input running this long is a hang; -rss_limit_mb: a runaway allocation.
    (cd "$scratch" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/" "$corpus") >"$out/last-run.log" 2>&1 ||
        rc=$?
    echo "$rc" >"$scratch/$t.rc"
}

for t in "$@"; do
    [ -x "$build/tests/fuzz/fuzz_$t" ] || { echo "fuzz: no target fuzz_$t in $build" >&2; exit 2; }
done

# At most `jobs` at once.
running=0
for t in "$@"; do
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
    echo "fuzz: $t for ${seconds}s"
    run_one "$t" &
    running=$((running + 1))
done
wait

failed=0
for t in "$@"; do
    log=$build/fuzz-artifacts/$t/last-run.log
    rc=$(cat "$scratch/$t.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([^ ]*\).*/cov \1, features \2, corpus \3/p')
    if [ "$rc" -eq 0 ]; then
        echo "fuzz: $t ok: ${execs:-?} executions, ${cov:-no coverage line}"
    else
        failed=1
        echo "fuzz: $t FAILED (exit $rc), log: $log" >&2
        grep -E 'ERROR|property failed|runtime error|SUMMARY|Test unit written' "$log" | head -20 >&2
    fi
done
exit "$failed"
