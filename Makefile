# holdfast: top-level driver.  Every target that needs packages installs them
# first (scripts/install-deps.sh is fast when they are present).
BUILD ?= $(CURDIR)/build
export HOLDFAST_CACHE ?= $(HOME)/.cache/holdfast
CMAKE_BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build userspace selftests check check-unit check-host demo bench format clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps userspace selftests

userspace:
	@cmake -S userspace -B $(BUILD)/userspace -G Ninja -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) >/dev/null
	@ninja -C $(BUILD)/userspace

selftests: userspace
	@$(MAKE) -s -C selftests O=$(BUILD)/selftests

# Every test; the last line is "N passed, N failed".
check: build
	@./scripts/check.sh unit host

check-unit: deps userspace
	@./scripts/check.sh unit

check-host: build
	@./scripts/check.sh host

demo: deps userspace
	@./scripts/demo.sh

bench: deps userspace
	@./scripts/bench/run.sh $(BENCH_ARGS)

format:
	@clang-format -i $$(find userspace -name '*.cc' -o -name '*.h')

clean:
	rm -rf $(BUILD)
