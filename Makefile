# durafs: build, test and tooling.
#
# Targets
#   make            build build/durafs and build/durafs-emulator
#   make deps       install the Debian packages needed (apt-get as root)
#   make test       unit tests (cmocka), then integration tests (pytest)
#   make asan       everything built in build/asan with ASan+UBSan, then tested
#   make lint       cppcheck plus the banned-function check
#   make fuzz       build the libFuzzer targets (clang) in build/fuzz
#   make fuzz-smoke build them and run each for 10 s
#   make demo       start the emulator and show durafs at work
#   make bench      benchmarks (see tests/bench/)
#   make soak       long soaks and crash loops (not part of make test)
#   make install    install durafs, mount.durafs, man page, completion, Colab
#                   helper, systemd unit (PREFIX, DESTDIR...: see "install")
#   make uninstall  remove exactly what make install installed
#   make clean
#
# Options (make VAR=value)
#   BUILD=dir       output directory (default build)
#   SAN=1           build with -fsanitize=address,undefined
#   PYTHON=path     Python with pytest (default: Debian's /usr/bin/python3)
#   PYTEST_ARGS=..  extra pytest arguments, e.g. -k gcs -x
#   V=1             echo every command
#   PREFIX=dir      install prefix (default /usr/local); DESTDIR=dir stages it

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
UNIT_EXTRA := $(wildcard tests/unit/emu_harness.c tests/unit/unit_util.c tests/unit/sched_fixture.c tests/unit/fs_fixture.c)

DURAFS := $(BUILD)/durafs
EMULATOR := $(BUILD)/durafs-emulator

.PHONY: all deps test unit integration asan lint fuzz fuzz-smoke demo bench bench-quick soak clean check-deps
.PHONY: install uninstall
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

fuzz-smoke: fuzz
	$(Q)sh tests/fuzz/smoke.sh $(BUILD)/fuzz 10

demo: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh contrib/demo.sh

bench: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh tests/bench/run.sh

bench-quick: all
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) sh tests/bench/run.sh --quick

soak: all $(BUILD)/tests/test_journal_crash
	$(Q)DURAFS_SOAK=1 $(BUILD)/tests/test_journal_crash
	$(Q)DURAFS_BUILD=$(abspath $(BUILD)) DURAFS_SOAK=1 $(PYTHON) -m pytest -ra -q -m soak tests/integration $(PYTEST_ARGS)

# --- install ------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=/staging/root]: the binary, the
# mount(8) helper, the man page, the bash completion, the Colab helper module
# (importable as durafs_colab) and the systemd template unit. @BINDIR@ in the
# helper and the unit becomes $(BINDIR). mount.fuse.durafs, a symlink to
# mount.durafs, is what mount(8) runs for `-t fuse.durafs` (the type
# /proc/mounts shows). make uninstall removes exactly these files (same
# variables).
#   SBINDIR         mount.durafs; mount(8) looks for helpers only in /sbin
#                   (and /sbin/fs.d, /sbin/fs), so the default is /sbin
#                   whatever PREFIX is
#   PYTHONDIR       a directory on python3's sys.path: /usr/lib/python3/
#                   dist-packages for PREFIX=/usr (Debian), else
#                   PREFIX/lib/pythonX.Y/dist-packages for $(PYTHON)'s X.Y
#   SYSTEMDUNITDIR  PREFIX/lib/systemd/system (systemd reads /usr/local/lib/
#                   systemd/system and /usr/lib/systemd/system)
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= /sbin
MANDIR ?= $(PREFIX)/share/man
COMPLETIONSDIR ?= $(PREFIX)/share/bash-completion/completions
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
PY_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python$(PY_VERSION)/dist-packages)
INSTALL ?= install

INSTALLED = $(DESTDIR)$(BINDIR)/durafs \
	$(DESTDIR)$(SBINDIR)/mount.durafs \
	$(DESTDIR)$(SBINDIR)/mount.fuse.durafs \
	$(DESTDIR)$(MANDIR)/man1/durafs.1 \
	$(DESTDIR)$(COMPLETIONSDIR)/durafs \
	$(DESTDIR)$(PYTHONDIR)/durafs_colab.py \
	$(DESTDIR)$(SYSTEMDUNITDIR)/durafs@.service

install: $(DURAFS)
	$(Q)$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(COMPLETIONSDIR) $(DESTDIR)$(PYTHONDIR) $(DESTDIR)$(SYSTEMDUNITDIR)
	$(Q)$(INSTALL) -m 0755 $(DURAFS) $(DESTDIR)$(BINDIR)/durafs
	$(Q)sed 's|@BINDIR@|$(BINDIR)|g' contrib/mount.durafs > $(DESTDIR)$(SBINDIR)/mount.durafs.tmp
	$(Q)chmod 0755 $(DESTDIR)$(SBINDIR)/mount.durafs.tmp
	$(Q)mv -f $(DESTDIR)$(SBINDIR)/mount.durafs.tmp $(DESTDIR)$(SBINDIR)/mount.durafs
	$(Q)ln -sf mount.durafs $(DESTDIR)$(SBINDIR)/mount.fuse.durafs
	$(Q)$(INSTALL) -m 0644 contrib/durafs.1 $(DESTDIR)$(MANDIR)/man1/durafs.1
	$(Q)$(INSTALL) -m 0644 contrib/completions/durafs.bash $(DESTDIR)$(COMPLETIONSDIR)/durafs
	$(Q)$(INSTALL) -m 0644 contrib/colab/durafs_colab.py $(DESTDIR)$(PYTHONDIR)/durafs_colab.py
	$(Q)sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/durafs@.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/durafs@.service.tmp
	$(Q)chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/durafs@.service.tmp
	$(Q)mv -f $(DESTDIR)$(SYSTEMDUNITDIR)/durafs@.service.tmp $(DESTDIR)$(SYSTEMDUNITDIR)/durafs@.service
	@$(if $(V),true,for f in $(INSTALLED); do echo "  INSTALL $$f"; done)

uninstall:
	@$(if $(V),true,for f in $(INSTALLED); do echo "  RM      $$f"; done)
	$(Q)rm -f $(INSTALLED)

clean:
	rm -rf $(BUILD)
