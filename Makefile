# The front door. `make run` and `make test` set everything up on a fresh Debian 12 machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
REL_BUILD  ?= build-release
JOBS       ?= $(shell nproc)
CONF       ?= conf.d
SOURCES     = $(shell find sdk host plugins tests tools bench docs -name '*.[ch]' 2>/dev/null)

.PHONY: all deps build build-asan build-release run check-config test test-debug test-asan \
        format format-check clean bench fuzz test-fuzz analyze docs-ref deb

all: build

deps:
	@packaging/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Debug

$(ASAN_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DARQ_SANITIZE=ON

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

$(REL_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(REL_BUILD) -DCMAKE_BUILD_TYPE=Release -DARQ_TESTS=OFF

# The optimised build: -O2 finds warnings (treated as errors) that -O0 does not.
build-release: deps $(REL_BUILD)/CMakeCache.txt
	cmake --build $(REL_BUILD) -j $(JOBS)

# Runs the host in the foreground on the in-tree configuration (memory storage).
run: build
	ARQONBUS_PLUGIN_DIR=$(CURDIR)/$(BUILD)/plugins $(BUILD)/arqonbusd -c $(CONF)

# The option reference of docs/configuration.md and man/arqonbus.conf.d.5, rewritten from the
# option specs (`arqonbusd --describe-options`); run it after adding or changing an option.
docs-ref: build
	cmake --build $(BUILD) --target docs-ref

check-config: build
	ARQONBUS_PLUGIN_DIR=$(CURDIR)/$(BUILD)/plugins $(BUILD)/arqonbusd -c $(CONF) --check-config

# Every test: formatting, unit and integration tests, then all of them again under ASan+UBSan,
# the Release build must compile cleanly, static analysis finds nothing, and a short run of
# every fuzz target finds nothing.
test: deps format-check test-debug test-asan build-release analyze test-fuzz

test-debug: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# Benchmarks, not tests (kept out of `make test`), on the Release build; see
# docs/benchmarks.md. First ArqonBus side by side with Mosquitto and a plain relay
# (bench/compare.sh; COMPARE_ARGS: e.g. --quick), two nodes joined by broker-redis
# (bench/cluster.sh; CLUSTER_ARGS: e.g. --quick), then fan-out with and without a 10k events/s
# telemetry stream (BENCH_ARGS: e.g. -n 3), then the envelope's parse paths, slow and fast.
bench: build-release
	bench/compare.sh $(COMPARE_ARGS) $(REL_BUILD)
	bench/cluster.sh $(CLUSTER_ARGS) $(REL_BUILD)
	$(REL_BUILD)/bench/arqonbus-bench-telemetry $(BENCH_ARGS) $(REL_BUILD)
	$(REL_BUILD)/bench/arqonbus-bench-envelope

# libFuzzer targets (tests/fuzz/README.md), built with clang, ASan and UBSan in their own build
# directory. `fuzz` runs each for FUZZ_SECONDS and keeps what it learns in $(FUZZ_BUILD)/corpus;
# `test-fuzz` runs each for FUZZ_TEST_SECONDS from the checked-in seeds only. FUZZ_JOBS run at
# once. Either fails on any crash, leak or timeout; findings go to $(FUZZ_BUILD)/fuzz-artifacts.
FUZZ_BUILD        ?= build-fuzz
FUZZ_SECONDS      ?= 300
FUZZ_TEST_SECONDS ?= 20
FUZZ_JOBS         ?= 2

$(FUZZ_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DARQ_FUZZ=ON \
	      -DARQ_TESTS=OFF

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	tests/fuzz/run.sh -j $(FUZZ_JOBS) -c $(FUZZ_BUILD)/corpus $(FUZZ_BUILD) $(FUZZ_SECONDS)

test-fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	tests/fuzz/run.sh -j $(FUZZ_JOBS) $(FUZZ_BUILD) $(FUZZ_TEST_SECONDS)

# Static analysis (tests/analyze/run.sh): the clang static analyzer and cppcheck over the host,
# the plugins, the tools and the SDK, with the flags of a clang build directory's compile
# database (configured each time, so that new sources are seen; nothing is compiled). Fails on
# any finding; a false positive is suppressed where it is reported, with the reason.
ANALYZE_BUILD ?= build-analyze

analyze: deps
	cmake -S . -B $(ANALYZE_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug >/dev/null
	tests/analyze/run.sh -j $(JOBS) $(ANALYZE_BUILD)

# Debian packages (debian/README.source): a copy of the tree is built with
# `dpkg-buildpackage -us -uc -b` in $(DEB_BUILD)/src, the .deb files land in $(DEB_BUILD)/, and
# lintian checks them (packaging/build-deb.sh). `make test` builds, installs and purges them.
DEB_BUILD ?= build-deb

deb: deps
	JOBS=$(JOBS) packaging/build-deb.sh . $(DEB_BUILD)

format:
	clang-format -i $(SOURCES)

format-check: deps
	@clang-format --dry-run -Werror $(SOURCES) && echo "format-check: $(words $(SOURCES)) files OK"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(REL_BUILD) $(FUZZ_BUILD) $(ANALYZE_BUILD) $(DEB_BUILD)
