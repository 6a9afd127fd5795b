#!/bin/sh
# Static analysis: the clang static analyzer (run by clang-tidy) and cppcheck, over the C
# sources of the host, the plugins, the tools and the SDK's example plugin (and the headers
# they include), with the flags and include paths of BUILD_DIR/compile_commands.json. Fails
# on any finding; both tools run either way, so that one run shows everything.
#
#   tests/analyze/run.sh [-j JOBS] BUILD_DIR [DIR...]
#
# DIR: top-level directories of the repository to analyse; default: host plugins tools sdk
# docs/examples (tests works too, but is not kept clean). BUILD_DIR must be configured with
# clang (`make analyze` does it), so that the analyzer parses the flags the compiler gets.
#
# A false positive is suppressed where it is reported, with the reason beside it:
#   clang analyzer  /* why ... NOLINTNEXTLINE(clang-analyzer-CHECK) */ ending on the line
#                   before, or /* NOLINT(clang-analyzer-CHECK) */ at the end of the line;
#   cppcheck        /* cppcheck-suppress ID
#                    * (why) */ on the line before.
# The suppressions that apply everywhere are below, each with its reason.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
jobs=2
while getopts j: opt; do
    case $opt in
    j) jobs=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-j JOBS] BUILD_DIR [DIR...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
shift
[ $# -gt 0 ] || set -- host plugins tools sdk docs/examples
db=$build/compile_commands.json
[ -f "$db" ] || { echo "analyze: no $db (configure $build with cmake first)" >&2; exit 2; }
for tool in clang-tidy cppcheck; do
    command -v $tool >/dev/null ||
        { echo "analyze: $tool is missing (packaging/install-deps.sh)" >&2; exit 2; }
done

# The sources of the compile database under DIR... (CMake writes one "file" per line).
dirs=$(printf '%s|' "$@")
dirs=${dirs%|}
files=$(sed -n 's/^ *"file": "\(.*\)",\{0,1\}$/\1/p' "$db" | grep -E "^$root/($dirs)/" | sort -u)
[ -n "$files" ] || { echo "analyze: no sources under $* in $db" >&2; exit 2; }
nfiles=$(printf '%s\n' "$files" | wc -l)

out=$build/analyze
rm -rf "$out/tidy"
mkdir -p "$out/tidy" "$out/cppcheck"
cd "$root"
status=0

# --- the clang static analyzer ---------------------------------------------------------------
# Every analyzer check but one: DeprecatedOrUnsafeBufferHandling asks for C11 Annex K
# (memcpy_s, snprintf_s), which glibc does not have; it would flag every memcpy and snprintf.
# max-nodes bounds the paths explored per function to a third of the default ("deep"): on
# this code it finds what the default finds (the same defects, fewer duplicate reports of
# each) in under half the time, so that `make test` can afford it.
start=$(date +%s)
printf '%s\n' "$files" | xargs -P "$jobs" -I{} sh -c '
    log=$2/$(printf %s "$1" | tr / _).log
    f=$1
    shift 2
    clang-tidy "$@" "$f" >"$log" 2>&1 || { touch "$log.failed"; exit 1; }
' sh {} "$out/tidy" -p "$build" --quiet \
    --checks='-*,clang-analyzer-*,-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling' \
    --warnings-as-errors='*' --header-filter="^$root/($dirs)/" \
    --extra-arg=-Xclang --extra-arg=-analyzer-config \
    --extra-arg=-Xclang --extra-arg=max-nodes=75000 || true
for failed in "$out"/tidy/*.failed; do
    [ -e "$failed" ] || continue
    grep -Ev '^[0-9]+ (warning|error)s? generated\.$' "${failed%.failed}"
    status=1
done
echo "analyze: clang analyzer ($(clang-tidy --version | sed -n 's/.*LLVM version //p')):" \
    "$nfiles files in $(($(date +%s) - start)) s, $(ls "$out"/tidy/*.failed 2>/dev/null |
    wc -l) with findings"

# --- cppcheck --------------------------------------------------------------------------------
# Suppressed everywhere:
#   missingIncludeSystem  cppcheck reads no system header, by design (the libraries it must
#                         know are described by --library);
#   variableScope         where a variable is declared is left to the author, not the tool;
#   readdirCalled         it recommends readdir_r, which glibc deprecates: readdir on a stream
#                         of one's own is thread-safe.
start=$(date +%s)
set --
for d in $(printf '%s' "$dirs" | tr '|' ' '); do
    set -- "$@" --file-filter="$root/$d/*"
done
cppcheck --project="$db" "$@" --enable=warning,style,performance,portability \
    --library=posix --library=openssl --library="$here/cppcheck.cfg" --inline-suppr \
    --suppress=missingIncludeSystem --suppress=variableScope --suppress=readdirCalled \
    --cppcheck-build-dir="$out/cppcheck" -j "$jobs" --quiet --error-exitcode=1 \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' || status=1
echo "analyze: $(cppcheck --version): $(($(date +%s) - start)) s"

[ $status -eq 0 ] && echo "analyze: no findings"
exit $status
