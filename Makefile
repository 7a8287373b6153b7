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

# The suite runs against both the release build and the ASan+UBSan build.
test: all $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory SAN=1 all unit
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory format-check
	$(Q)/usr/bin/python3 -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

# The end-to-end tests only (tests/test_*.py but the unit-test runner), on the ASan+UBSan build
# they use by default and the release build test_release.py checks.
E2E_TESTS  := $(filter-out tests/test_unit.py,$(wildcard tests/test_*.py))
e2e: all $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory SAN=1 all
	$(Q)/usr/bin/python3 -m pytest -q -p no:cacheprovider $(E2E_TESTS) $(PYTEST_ARGS)

# libFuzzer on the symbolizer's ELF/DWARF entry points (not part of `make test`):
# FUZZ_SECONDS of fuzzing, seeded with small objects built here (with and without DWARF,
# stripped, a separate debug file). Findings land in build/fuzz/ as crash-* files.
FUZZ_SECONDS ?= 240
FUZZ_SRCS  := user/sym/elf_module.c user/sym/dwarf.c user/sym/debug_cache.c user/sym/gopclntab.c \
	      user/util/dir.c user/util/hashmap.c user/util/log.c
build/fuzz/fuzz_elf: tests/fuzz/fuzz_elf.c $(FUZZ_SRCS) $(wildcard user/sym/*.h) | $(DEPS_STAMP)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iuser \
		-fsanitize=fuzzer,address,undefined $< $(FUZZ_SRCS) -ldw -lelf -lz -lbpf -o $@
build/fuzz/seeds/.done: tests/fixtures/sym/inline.c tests/fixtures/unit/sym_fixlib.c
	$(Q)mkdir -p $(@D)
	$(Q)cc -O2 -g -o $(@D)/inline $<
	$(Q)cc -O0 -g -shared -fPIC -o $(@D)/lib.so tests/fixtures/unit/sym_fixlib.c
	$(Q)objcopy --only-keep-debug $(@D)/inline $(@D)/inline.debug
	$(Q)strip --strip-all -o $(@D)/inline.stripped $(@D)/inline
	$(Q)touch $@
fuzz-build: build/fuzz/fuzz_elf build/fuzz/seeds/.done
fuzz: fuzz-build
	$(Q)mkdir -p build/fuzz/corpus
	$(Q)cd build/fuzz && ./fuzz_elf -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
		-max_len=65536 corpus seeds

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
