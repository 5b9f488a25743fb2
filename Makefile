# corral's two commands: `make run` and `make test` (see README.md).
BUILD ?= build
STATE ?= $(CURDIR)/.corral
GUEST := $(BUILD)/guest
DEBIAN_GUEST := $(BUILD)/debian-guest
CMAKE_FLAGS ?=

.PHONY: run test deps build guest debian-guest bench asan clean

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

guest: deps
	@scripts/build-test-guest $(GUEST)

# Debian 12 with cloud-init (debootstrap, needs root), for the slow test
# tests/integration/cloud_init_debian_test.cc.
debian-guest: deps
	@scripts/build-debian-guest $(DEBIAN_GUEST)

test: build guest debian-guest
	cd $(BUILD) && ctest --output-on-failure --timeout 600

# The unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: deps
	cmake -S . -B $(BUILD)-asan -G Ninja -DCORRAL_SANITIZE=ON -DCORRAL_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan
	cd $(BUILD)-asan && ctest --output-on-failure -L unit

bench: build guest
	scripts/run-benchmarks $(BUILD)

run: build guest
	scripts/run-demo $(BUILD) $(STATE)

clean:
	rm -rf $(BUILD) $(BUILD)-asan
