# durafs: build, test and tooling.
#
# Targets
#   make            build build/durafs and build/durafs-emulator
#   make deps       install the Debian packages needed (apt-get as root)
#   make test       unit tests (cmocka), then integration tests (pytest)
#   make asan       everything built in build/asan with ASan+UBSan, then tested
#   make lint       cppcheck plus the banned-function check
#   make fuzz       build the libFuzzer targets (clang) in build/fuzz
#   make demo       start the emulator and show durafs at work
#   make bench      benchmarks (see tests/bench/)
#   make soak       long soaks and crash loops (not part of make test)
#   make clean
#
# Options (make VAR=value)
#   BUILD=dir       output directory (default build)
#   SAN=1           build with -fsanitize=address,undefined
#   PYTHON=path     Python with pytest (default: Debian's /usr/bin/python3)
#   PYTEST_ARGS=..  extra pytest arguments, e.g. -k gcs -x
#   V=1             echo every command

BUILD ?= build
CC ?= cc
SAN ?=
V ?=
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
PYTEST_ARGS ?=
VERSION := 0.1.0

Q := $(if $(V),,@)

PKGS := fuse3 libcurl openssl sqlite3 jansson
EMU_PKGS := libmicrohttpd jansson openssl
TEST_PKGS := cmocka

CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wmissing-prototypes -Wvla -Wshadow -Wno-unused-parameter -Wno-format-truncation
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DDURAFS_VERSION='"$(VERSION)"' \
	-Iinclude $(WARN) -pthread
ifeq ($(SAN),1)
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_LDFLAGS := -fsanitize=address,undefined
endif

# Library flags come from pkg-config, read once deps are present (see
# $(BUILD)/config.mk below).
ifeq ($(filter clean deps,$(MAKECMDGOALS)),)
-include $(BUILD)/config.mk
endif

# Sources: every module of fs/, sync/ and auth/ goes into libdurafs.a, except
# the program's entry point.
LIB_SRCS := $(sort $(wildcard sync/*.c auth/*.c fs/*.c))
LIB_SRCS := $(filter-out fs/main.c,$(LIB_SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
EMU_SRCS := $(sort $(wildcard tests/emulator/*.c))
EMU_LIB_SRCS := $(filter-out tests/emulator/emu_main.c,$(EMU_SRCS))
EMU_LIB_OBJS := $(EMU_LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
# Helpers linked into every unit test (e.g. starting the emulator).
UNIT_EXTRA := $(wildcard tests/unit/emu_harness.c)

DURAFS := $(BUILD)/durafs
EMULATOR := $(BUILD)/durafs-emulator

.PHONY: all deps test unit integration asan lint fuzz demo bench bench-quick soak clean check-deps
all: $(DURAFS) $(EMULATOR)

# --- dependencies -----------------------------------------------------------
$(BUILD)/config.mk: contrib/install-deps.sh Makefile
	$(Q)mkdir -p $(BUILD)
	$(Q)sh contrib/install-deps.sh --if-missing
	$(Q){ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	     echo "PKG_LIBS := $$(pkg-config --libs $(PKGS))"; \
	     echo "EMU_CFLAGS := $$(pkg-config --cflags $(EMU_PKGS))"; \
	     echo "EMU_LIBS := $$(pkg-config --libs $(EMU_PKGS))"; \
	     echo "TEST_CFLAGS := $$(pkg-config --cflags $(TEST_PKGS))"; \
	     echo "TEST_LIBS := $$(pkg-config --libs $(TEST_PKGS))"; } > $@.tmp
	$(Q)mv $@.tmp $@

deps:
	$(Q)sh contrib/install-deps.sh

# --- build ------------------------------------------------------------------
$(BUILD)/obj/%.o: %.c $(BUILD)/config.mk
	$(Q)mkdir -p $(dir $@)
	@$(if $(V),true,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdurafs.a: $(LIB_OBJS)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/libemu.a: $(EMU_LIB_OBJS)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(DURAFS): $(BUILD)/obj/fs/main.o $(BUILD)/libdurafs.a
	@$(if $(V),true,echo "  LD      $@")
	$(Q)$(CC) $(SAN_LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS) -lm

$(EMULATOR): $(BUILD)/obj/tests/emulator/emu_main.o $(BUILD)/libemu.a $(BUILD)/libdurafs.a
	@$(if $(V),true,echo "  LD      $@")
	$(Q)$(CC) $(SAN_LDFLAGS) -pthread -o $@ $^ $(EMU_LIBS) $(PKG_LIBS) -lm

$(BUILD)/tests/test_emu_%: tests/unit/test_emu_%.c $(UNIT_EXTRA) $(BUILD)/libemu.a $(BUILD)/libdurafs.a $(BUILD)/config.mk
	$(Q)mkdir -p $(dir $@)
	@$(if $(V),true,echo "  TEST    $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(EMU_CFLAGS) $(TEST_CFLAGS) -Itests/emulator -Itests/unit \
		$(SAN_LDFLAGS) -o $@ $< $(UNIT_EXTRA) $(BUILD)/libemu.a $(BUILD)/libdurafs.a $(EMU_LIBS) $(PKG_LIBS) $(TEST_LIBS) -lm

$(BUILD)/tests/test_%: tests/unit/test_%.c $(UNIT_EXTRA) $(BUILD)/libdurafs.a $(BUILD)/config.mk
	$(Q)mkdir -p $(dir $@)
	@$(if $(V),true,echo "  TEST    $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(TEST_CFLAGS) -Itests/unit \
		$(SAN_LDFLAGS) -o $@ $< $(UNIT_EXTRA) $(BUILD)/libdurafs.a $(PKG_LIBS) $(TEST_LIBS) -lm

-include $(LIB_OBJS:.o=.d) $(EMU_SRCS:%.c=$(BUILD)/obj/%.d) $(BUILD)/obj/fs/main.d

# --- tests ------------------------------------------------------------------
test: unit integration

unit: $(UNIT_BINS) $(EMULATOR)
	$(Q)sh tests/unit/run.sh $(UNIT_BINS)

integration: $(DURAFS) $(EMULATOR)
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -ra -q tests/integration $(PYTEST_ARGS)

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 CFLAGS="-O1 -g" test

lint: $(BUILD)/config.mk
	$(Q)sh tests/lint.sh

fuzz: $(BUILD)/config.mk
	$(Q)sh tests/fuzz/build.sh $(BUILD)/fuzz

demo: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh contrib/demo.sh

bench: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh tests/bench/run.sh

bench-quick: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh tests/bench/run.sh --quick

soak: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) DURAFS_SOAK=1 $(PYTHON) -m pytest -ra -q -m soak tests/integration $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD)
