# corral's two commands: `make run` and `make test` (see README.md).
#
# `make test SANITIZE=1` (what .ci/run calls) is CI's one build: the whole tree,
# benchmarks included, built once with AddressSanitizer and UndefinedBehaviorSanitizer
# (Debug: -O0 compiles in half the time of -O1 under the sanitizers), and every test,
# unit and integration, run under them. A person's `make test` stays the plain build.
SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build-san
CMAKE_FLAGS += -DCORRAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD ?= build
endif
STATE ?= $(CURDIR)/.corral
GUEST := $(BUILD)/guest
DEBIAN_GUEST := $(BUILD)/debian-guest
CMAKE_FLAGS ?=
# Tests at once. Integration tests each count for 2 (tests/CMakeLists.txt): at most
# two TCG guests' tests together, with unit tests filling the gaps.
TEST_JOBS ?= 4
CTEST := ctest --output-on-failure --timeout 600 --parallel $(TEST_JOBS)

.PHONY: run test test-unit test-integration deps build guest debian-guest bench asan clean

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

# Test images are built once per machine under /var/cache/corral/test-images,
# keyed by the hash of what builds them; $(BUILD)/guest is a link to it.
guest: deps
	@scripts/cached-test-image guest $(GUEST) scripts/build-test-guest scripts/guest/*

# Debian 12 with cloud-init (debootstrap, needs root), for the slow test
# tests/integration/cloud_init_debian_test.cc.
debian-guest: deps
	@scripts/cached-test-image debian-guest $(DEBIAN_GUEST) scripts/build-debian-guest

# Every test; at the end, the ten slowest and the total (scripts/test-summary).
test: build guest debian-guest
	@scripts/test-summary $(BUILD) $(CTEST)

# While working: the unit tests in about two minutes, or tests by name in seconds:
#   cd build && ctest -R 'Monitor|QmpTransport'      (see README.md, "Tests")
test-unit: build
	@scripts/test-summary $(BUILD) $(CTEST) -L unit

test-integration: build guest debian-guest
	@scripts/test-summary $(BUILD) $(CTEST) -L integration

# The unit tests under AddressSanitizer and UndefinedBehaviorSanitizer, for a
# person; CI runs every test under them with `make test SANITIZE=1`.
asan:
	@$(MAKE) --no-print-directory test-unit SANITIZE=1

bench: build guest
	scripts/run-benchmarks $(BUILD)

run: build guest
	scripts/run-demo $(BUILD) $(STATE)

clean:
	rm -rf build build-san
