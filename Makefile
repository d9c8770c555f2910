# What people type. Each target installs missing Debian packages first, then builds, then runs.
# The build itself is CMake (CMakeLists.txt); this file only strings the steps together.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
# make fuzz: seconds per target, and which targets (all when empty); FUZZ_RUNS, FUZZ_JOBS and
# FUZZ_FLAGS are read by tests/fuzz/run-fuzz.sh from the environment.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
# make soak: SOAK_SCALE multiplies the soak's counts (1: 10^6 accesses, 500 add/remove cycles...).
SOAK_SCALE ?= 1

# Everything a clean Debian 12 machine lacks for building, testing and the demo guest.
DEPS := gcc make cmake pkg-config clang-format python3 \
	libuv1-dev libprotobuf-c-dev protobuf-c-compiler libcap-ng-dev libseccomp-dev \
	libcmocka-dev libsystemd-dev libinih-dev libjson-c-dev \
	qemu-system-x86 linux-image-amd64 busybox-static cpio kmod debootstrap clang libclang-rt-14-dev systemd man-db groff-base

.PHONY: all deps build asan check demo bench fuzz soak format clean

all: build

deps:
	@missing=""; \
	for p in $(DEPS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make: missing Debian packages:$$missing" >&2; \
			echo "make: run 'sudo apt-get install$$missing' (or make as root), then again" >&2; \
			exit 1; \
		fi; \
		echo "make: installing Debian packages:$$missing"; \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
			|| { echo "make: apt-get install failed" >&2; exit 1; }; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVB_SANITIZE=ON -DVB_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory

check: build asan
	@tests/run-tests.sh $(BUILD) $(ASAN_BUILD)

demo: build
	@tests/demo.sh $(BUILD)

bench: build
	@bench/run-bench.sh $(BUILD)

# The full soak in the test guest (tests/guest/vbsoak.py, tests/guest/soak/); not part of check,
# which runs the same at small counts (soak_short). Prints the figures as `# soak:` lines.
soak: build
	@SOAK_SCALE=$(SOAK_SCALE) VB_GUEST_CASES=$(CURDIR)/tests/guest/soak VB_GUEST_TESTS=soak \
		nice -n 19 tests/guest/run.sh $(BUILD)

# libFuzzer targets (clang, ASan + UBSan), each run for FUZZ_SECONDS from its corpus.
fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DVB_FUZZ=ON -DVB_BENCH=OFF \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all -- --no-print-directory
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
