# cprof-bpf build. `make` builds build/cprof-bpf; `make test`, `make demo`, `make bench`.
# Quiet by default; V=1 shows the commands. SAN=1 builds with ASan+UBSan into build/san/.

.DELETE_ON_ERROR:
.SECONDARY:
.DEFAULT_GOAL := all

ARCH       := x86
SAN        ?= 0
OUT        := build$(if $(filter 1,$(SAN)),/san)
BPF_OUT    := build/bpf
CLANG      ?= clang
BPFTOOL    ?= bpftool
LLVM_STRIP ?= llvm-strip
CC         ?= gcc
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

PKGS       := libbpf libelf libdw zlib libprotobuf-c libmicrohttpd libcurl
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 -Wall -Wextra -Wshadow -Wformat=2 -Werror -Wno-missing-field-initializers \
	      -D_GNU_SOURCE -DCPROF_VERSION='"$(VERSION)"' -Ibpf -I$(BPF_OUT) -Iuser -I$(OUT)/gen
ifeq ($(SAN),1)
CFLAGS     += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS    += -fsanitize=address,undefined
endif
# libmicrohttpd and libcurl are not linked: user/util/lazy_libs.c opens them on first use.
LINK_PKGS  := $(filter-out libmicrohttpd libcurl,$(PKGS))
LDLIBS     += $(shell pkg-config --libs $(LINK_PKGS) 2>/dev/null || echo -lbpf -lelf -ldw -lz -lprotobuf-c) -lpthread -lm -ldl
# libiberty (static, no pkg-config file): cplus_demangle for C++ and Rust names.
LDLIBS     += -liberty

BPF_CFLAGS := -target bpf -g -O2 -D__TARGET_ARCH_$(ARCH) -Ivmlinux/$(ARCH) -Ibpf -Wall -Werror

BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(BPF_SRCS))
BPF_SKELS  := $(patsubst bpf/%.bpf.c,$(BPF_OUT)/%.skel.h,$(BPF_SRCS))

# The generated protobuf code exists only once user/pprof/profile.proto does.
PROTO_SRC  := $(wildcard user/pprof/profile.proto)
PROTO_C    := $(if $(PROTO_SRC),$(OUT)/gen/profile.pb-c.c)
USER_SRCS  := $(shell find user -name '*.c' | sort)
USER_OBJS  := $(patsubst %.c,$(OUT)/obj/%.o,$(USER_SRCS)) \
	      $(if $(PROTO_SRC),$(OUT)/obj/gen/profile.pb-c.o)
# Everything but main.o, so unit tests link the modules they test.
LIB_OBJS   := $(filter-out $(OUT)/obj/user/main.o,$(USER_OBJS))

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRCS))

DEPS_STAMP := build/.deps-ok

.PHONY: all deps test unit e2e demo bench vmlinux format format-check clean fuzz fuzz-build
all: $(OUT)/cprof-bpf

# `make` installs what is missing; the stamp keeps later builds from asking dpkg each time.
$(DEPS_STAMP): tools/install-deps.sh
	$(Q)mkdir -p build
	$(Q)bash tools/install-deps.sh
	$(Q)touch $@
deps: $(DEPS_STAMP)

# Each BPF object depends on the headers it includes (clang -MMD), so touching one program or one
# header rebuilds only the programs, skeletons and user objects that use it.
$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c vmlinux/$(ARCH)/vmlinux.h | $(DEPS_STAMP)
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -MMD -MP -MF $@.d -c $< -o $@
	$(Q)$(LLVM_STRIP) -g $@

$(BPF_OUT)/%.skel.h: $(BPF_OUT)/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUT)/gen/profile.pb-c.c: user/pprof/profile.proto | $(DEPS_STAMP)
	$(call msg,PROTOC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)protoc-c --c_out=$(OUT)/gen --proto_path=user/pprof user/pprof/profile.proto

$(OUT)/obj/gen/profile.pb-c.o: $(PROTO_C)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(filter-out -Werror -Wextra,$(CFLAGS)) -c $< -o $@

# Skeletons and the protobuf code are order-only: they must exist before the first compile, but an
# object is rebuilt only when what it includes changes, as the compiler listed it (-MMD, the .d
# files included at the end). Touching one bpf/*.bpf.c rebuilds its skeleton and the objects that
# include that skeleton, not all of user space.
$(OUT)/obj/%.o: %.c | $(BPF_SKELS) $(PROTO_C) $(DEPS_STAMP)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The flame graph page is linked in with .incbin: rebuild when it changes.
$(OUT)/obj/user/http/flamegraph.o: user/http/flamegraph.html

$(OUT)/cprof-bpf: $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# A unit test is compiled like the modules (the pattern rule above) and linked with them.
$(OUT)/tests/%: $(OUT)/obj/tests/unit/%.o $(LIB_OBJS)
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

unit: $(UNIT_BINS)

# The test files run PYTEST_JOBS at a time (pytest-xdist, each file whole in one worker: most of
# an end-to-end test waits for a capture or a window rather than using a CPU); PYTEST_JOBS=1 runs
# them one after another, as does a machine without pytest-xdist.
PYTEST_JOBS ?= 2
PYTEST = /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	$$([ "$(PYTEST_JOBS)" != 1 ] && /usr/bin/python3 -c 'import xdist' 2>/dev/null && \
	   echo "-n $(PYTEST_JOBS) --dist loadfile")

# The suite runs against both the release build and the ASan+UBSan build.
test: all $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory SAN=1 all unit
	$(Q)$(MAKE) --no-print-directory unit fuzz-build
	$(Q)$(MAKE) --no-print-directory format-check
	$(Q)$(PYTEST) tests $(PYTEST_ARGS)

# The end-to-end tests only (tests/test_*.py but the unit-test runner), on the ASan+UBSan build
# they use by default and the release build test_release.py checks.
E2E_TESTS  := $(filter-out tests/test_unit.py,$(wildcard tests/test_*.py))
e2e: all $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory SAN=1 all
	$(Q)$(PYTEST) $(E2E_TESTS) $(PYTEST_ARGS)

# libFuzzer targets (tests/fuzz/): fuzz_elf on the symbolizer's ELF/DWARF entry points,
# fuzz_unwind on the unwind table compiler (.eh_frame_hdr/.eh_frame). `make fuzz` runs each for
# FUZZ_SECONDS; `make test` builds them and the suite (tests/test_fuzz.py) runs each for a short
# fixed time. Seeds are small objects built here (with and without DWARF and frame pointers,
# stripped, a separate debug file, a shared library); each target keeps its corpus in
# build/fuzz/corpus-NAME, and findings land in build/fuzz/ as crash-*, leak-*, timeout-* files.
FUZZ_SECONDS ?= 240
FUZZ_TARGETS := fuzz_elf fuzz_unwind
FUZZ_BINS  := $(addprefix build/fuzz/,$(FUZZ_TARGETS))
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iuser -Ibpf \
	       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS_fuzz_elf := user/sym/elf_module.c user/sym/dwarf.c user/sym/debug_cache.c \
	      user/sym/gopclntab.c user/util/dir.c user/util/hashmap.c user/util/log.c \
	      user/util/elf_head.c
FUZZ_SRCS_fuzz_unwind := user/unwind/table.c user/unwind/cfi_check.c user/unwind/cfi_rows.c \
	      user/util/elf_head.c
build/fuzz/fuzz_elf: $(FUZZ_SRCS_fuzz_elf) $(wildcard user/sym/*.h) user/util/elf_head.h
build/fuzz/fuzz_unwind: $(FUZZ_SRCS_fuzz_unwind) $(wildcard user/unwind/*.h) $(wildcard bpf/*.h) \
			 user/util/elf_head.h
build/fuzz/%: tests/fuzz/%.c | $(DEPS_STAMP)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(FUZZ_SRCS_$*) -ldw -lelf -lz -lbpf -o $@
build/fuzz/seeds/.done: tests/fixtures/sym/inline.c tests/fixtures/unit/sym_fixlib.c \
			tests/fixtures/unit/unwind_probe_target.c
	$(Q)mkdir -p $(@D)
	$(Q)cc -O2 -g -o $(@D)/inline $<
	$(Q)cc -O0 -g -shared -fPIC -o $(@D)/lib.so tests/fixtures/unit/sym_fixlib.c
	$(Q)objcopy --only-keep-debug $(@D)/inline $(@D)/inline.debug
	$(Q)strip --strip-all -o $(@D)/inline.stripped $(@D)/inline
	$(Q)cc -O2 -fomit-frame-pointer -o $(@D)/nofp tests/fixtures/unit/unwind_probe_target.c
	$(Q)strip --strip-all $(@D)/nofp
	$(Q)# fuzz_unwind's short form: 0xff, then an .eh_frame section (tests/fuzz/fuzz_unwind.c).
	$(Q)for f in nofp inline lib.so; do \
		objcopy -O binary --only-section=.eh_frame $(@D)/$$f $(@D)/$$f.eh_frame.raw && \
		{ printf '\377'; cat $(@D)/$$f.eh_frame.raw; } > $(@D)/$$f.eh_frame && \
		rm $(@D)/$$f.eh_frame.raw; \
	done
	$(Q)touch $@
fuzz-build: $(FUZZ_BINS) build/fuzz/seeds/.done
# FUZZ=fuzz_unwind runs only that one.
fuzz: fuzz-build
	$(Q)set -e; cd build/fuzz && for t in $(or $(FUZZ),$(FUZZ_TARGETS)); do \
		mkdir -p corpus-$$t; \
		./$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 \
			-timeout=10 -artifact_prefix=./$$t- corpus-$$t seeds; \
	done

demo: all
	$(Q)bash tools/demo.sh

# BENCH="cpu heap" runs only those; BENCH_ARGS=--quick checks that every benchmark runs.
bench: all
	$(Q)bash tools/install-deps.sh --bench
	$(Q)BENCH="$(BENCH)" BENCH_ARGS="$(BENCH_ARGS)" bash tools/bench/run.sh

vmlinux:
	$(Q)bash tools/gen-vmlinux.sh $(ARCH)

FORMAT_SRCS = $(shell find user bpf tests/unit tests/fixtures tests/fuzz -name '*.[ch]' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_SRCS)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	$(Q)rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
