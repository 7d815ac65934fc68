# livesplice: see README.md. Everything kernel-related targets Debian 12's
# 6.1.0-56-amd64 kernel (source 6.1.192-2) and runs it only inside qemu.
# The other-build test also builds for and boots the security update
# before it, 6.1.0-53-amd64 (source 6.1.187-1).

RELEASE      := 6.1.0-56-amd64
SOURCE_VER   := 6.1.192-2
OLD_RELEASE  := 6.1.0-53-amd64
OLD_SOURCE_VER := 6.1.187-1
CACHE        ?= $(HOME)/.cache/livesplice
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GO           ?= go

# The pinned Debian packages the builder and the guest need.
APT_PACKAGES := linux-source-6.1=$(SOURCE_VER) linux-image-$(RELEASE) \
	linux-headers-$(RELEASE) linux-image-$(OLD_RELEASE) \
	linux-headers-$(OLD_RELEASE) qemu-system-x86 busybox-static cpio \
	bc bison flex libelf-dev libssl-dev dwarves gcc-12 patch xz-utils openssl

# linux-source-6.1 is installed in one version only (SOURCE_VER): the old
# release's source is downloaded and unpacked into the cache instead.
OLD_SOURCE_DIR := $(CACHE)/sources/$(OLD_SOURCE_VER)
OLD_TARBALL    := $(OLD_SOURCE_DIR)/usr/src/linux-source-6.1.tar.xz

export LIVESPLICE_CACHE := $(CACHE)

.PHONY: all build demo test unit vet fuzz kernel-inputs apt-packages bench bench-stop soak coverage clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o bin/livesplice ./cmd/livesplice

# Installs the pinned packages (once) and prepares the source trees (once,
# cached in $(CACHE)/trees/RELEASE, reused afterwards), one after the other.
kernel-inputs: apt-packages $(OLD_TARBALL)
	$(GO) run ./cmd/livesplice prepare --config /boot/config-$(RELEASE) \
		--tarball /usr/src/linux-source-6.1.tar.xz
	$(GO) run ./cmd/livesplice prepare --config /boot/config-$(OLD_RELEASE) \
		--tarball $(OLD_TARBALL)

# Unpacked next to, not into, the final directory, which appears whole or
# not at all. apt-get download needs no root; a stale package list is
# refreshed once.
$(OLD_TARBALL): | apt-packages
	@rm -rf $(OLD_SOURCE_DIR).tmp && mkdir -p $(OLD_SOURCE_DIR).tmp
	cd $(OLD_SOURCE_DIR).tmp && { apt-get download -q linux-source-6.1=$(OLD_SOURCE_VER) || \
		{ $(SUDO) apt-get update -q && apt-get download -q linux-source-6.1=$(OLD_SOURCE_VER); }; }
	dpkg-deb -x $(OLD_SOURCE_DIR).tmp/linux-source-6.1_$(OLD_SOURCE_VER)_all.deb $(OLD_SOURCE_DIR).tmp/root
	rm -rf $(OLD_SOURCE_DIR) && mv $(OLD_SOURCE_DIR).tmp/root $(OLD_SOURCE_DIR) && rm -rf $(OLD_SOURCE_DIR).tmp

apt-packages:
	@missing=; for p in $(APT_PACKAGES); do n=$${p%%=*}; \
		got=$$(dpkg-query -W -f='$${db:Status-Status} $${Version}' $$n 2>/dev/null); \
		case "$$got" in "installed "*) [ "$$n" = "$$p" ] || [ "$$got" = "installed $${p#*=}" ] || missing="$$missing $$p";; \
		*) missing="$$missing $$p";; esac; done; \
	if [ -n "$$missing" ]; then \
		echo "kernel inputs: installing$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	else echo "kernel inputs: packages installed"; fi

# The main job: a real patch built, applied, listed and undone on Debian's
# kernel in qemu.
demo: kernel-inputs
	$(GO) run ./cmd/livesplice-demo --cache $(CACHE)

vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Every test: unit tests, the module build, the qemu harness, then the
# end-to-end tests on Debian's kernel, verbose so that their measurements
# (stop time, ratio to an empty stop_machine) are printed.
test: kernel-inputs vet fuzz
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -count=1 -timeout 60m -v ./e2e/

# The readers of untrusted or damaged input, each fuzzed for FUZZTIME from
# its seeds of real inputs (see docs/design.md, "Fuzzing"); a failing input
# is written to PKG/testdata/fuzz/TARGET/. FUZZTIME=1000000x fuzzes longer.
# A count of executions, not a duration: Go 1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when a duration ends while
# a worker is busy (go.dev/issue/75804, fixed in Go 1.27); a count has no
# deadline to race.
FUZZTIME ?= 20000x
FUZZ_TARGETS := internal/xzdec:FuzzDecompress pack:FuzzRead pack:FuzzArchive \
	pack:FuzzManifest kallsyms:FuzzParse bootimage:FuzzParse bootimage:FuzzImage \
	bootimage:FuzzBuildID elfobj:FuzzParse sign:FuzzVerify
fuzz: kernel-inputs
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "fuzz: $$pkg $$fn -fuzztime $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) \
			-fuzzminimizetime 5s ./$$pkg || exit 1; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Stop time (not part of `make test`): per configuration (2 and 4 vCPUs,
# ~50 and ~2,000 tasks) one boot of 20 apply/undo cycles of the demo fix,
# each apply after a calibrate of 7 empty stop_machines; prints medians and
# spread. BENCH_STOP_FLAGS: --cycles N, --vcpus 2,4, --tasks 50,2000.
bench-stop: kernel-inputs
	$(GO) run ./cmd/livesplice-bench-stop --cache $(CACHE) $(BENCH_STOP_FLAGS)

# Soak (not part of `make test`, whose TestSoak runs 100 cycles): 1,000
# apply/undo cycles of the demo fix in one boot while a reader on every
# vCPU checks each answer of /proc/cmdline. SOAK_FLAGS: --cycles N,
# --vcpus N, --tasks N, --console FILE.
soak: kernel-inputs
	$(GO) run ./cmd/livesplice-soak --cache $(CACHE) $(SOAK_FLAGS)

# Coverage on the dev corpus, written to docs/coverage.md (not part of
# `make test`): every .c patch of the corpus delta that Debian builds,
# built for 6.1.0-53-amd64 and run in its guest, in a seeded random order.
# Resumable: results stay in $(CACHE)/coverage and a new run continues;
# COVERAGE_FLAGS=--fresh starts over, --limit N stops after N patches.
CORPUS ?= ../shared/corpus/debian-6.1.187-to-6.1.190
coverage: kernel-inputs
	$(GO) run ./cmd/livesplice-coverage --corpus $(CORPUS) --cache $(CACHE) \
		--report docs/coverage.md $(COVERAGE_FLAGS)

clean:
	rm -rf bin
