# holdfast: top-level driver.  Every target that needs packages installs them
# first (scripts/install-deps.sh is fast when they are present).
BUILD ?= $(CURDIR)/build
export HOLDFAST_CACHE ?= $(HOME)/.cache/holdfast
CMAKE_BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build userspace selftests check check-unit check-host check-vm vm-selftests kernel check-asan fuzz demo bench format clean

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
check: build vm-selftests
	@./scripts/check.sh unit host vm migrate dax asan

check-unit: deps userspace
	@./scripts/check.sh unit

check-host: build
	@./scripts/check.sh host

# Guest selftests, static, for the test VMs' initramfs.
vm-selftests: deps
	@$(MAKE) -s -C selftests/guest O=$(BUILD)/selftests/guest

# The guest suite in QEMU (TCG) VMs on the Debian 6.12 and 6.1 cloud
# kernels, served by holdfastd as vhost-user-fs back-end, live migration
# of a guest between QEMUs (selftests/vm/migrate-vm.sh), and the DAX
# window through our patched QEMU (selftests/vm/dax-smoke.sh, dax-guest.sh).
check-vm: build vm-selftests
	@./scripts/check.sh vm migrate dax

# holdfast's fuse.ko/virtiofs.ko/cuse.ko for the Debian 6.1 guest kernel:
# Debian's fs/fuse + kernel/patches/6.1/series, built out of tree into
# $(HOLDFAST_CACHE)/kernel/<version>/out (kernel/build.sh).
kernel:
	@./kernel/build.sh --checkpatch >/dev/null

# Unit tests + host selftests again under ASan/UBSan (build/asan).
check-asan: deps
	@./scripts/check-asan.sh

# libFuzzer targets, FUZZ_SECONDS each (default 20): make fuzz FUZZ_SECONDS=600
FUZZ_SECONDS ?= 20
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

demo: deps userspace
	@./scripts/demo.sh

bench: deps userspace
	@./scripts/bench/run.sh $(BENCH_ARGS)

format:
	@clang-format -i $$(find userspace -name '*.cc' -o -name '*.h')

clean:
	rm -rf $(BUILD)
