# sockit -- build the library, the command, the tests.
#
#   make            library (static and shared) and the sockit command
#   make check      everything the CI runs, in order: clang-format; the unit
#                   tests, integration tests (on epoll, then on io_uring:
#                   integration-uring), README example and symbol
#                   check (build/); the same under ASan+UBSan (build/asan);
#                   the unit and integration tests under ThreadSanitizer
#                   (build/tsan); each libFuzzer target for FUZZ_SECONDS;
#                   the Debian packages (package-test)
#   make test       the tests of one build, the man pages' lint included
#                   (BUILD=..., SAN=1 for ASan+UBSan,
#                   TSAN=1 for ThreadSanitizer)
#   make fuzz       build every fuzz/NAME.c as $(BUILD)/fuzz-NAME and run
#                   each FUZZ_SECONDS (default 10) on fuzz/corpus/NAME/
#   make bench      the benchmark suite (bench/install-deps first)
#   make format     rewrite the sources with clang-format (format-check: CI)
#   make install    the command, both libraries, the header, sockit.pc and
#                   the man pages, under DESTDIR and PREFIX (/usr/local);
#                   make uninstall removes them (same variables)
#   make package-test  build the Debian packages, lintian, install and try
#                   them (tests/package/test-deb.sh)
#
# A test failure, a sanitizer report (a race under TSan included) or a
# fuzzer crash fails `make check`.

BUILD ?= build
CC ?= cc
OPT ?= -O2
CFLAGS ?= $(OPT) -g
WARN = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS += -Iinclude -D_GNU_SOURCE
# Kept apart from CFLAGS, so that a CFLAGS given on the command line does
# not drop the sanitizers.
ifeq ($(SAN),1)
SANFLAGS = -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined
endif
# Under TSAN=1 the tests run through $(RUN): a race stops the process,
# whose report goes to $(BUILD)/tsan.PID. ThreadSanitizer (gcc 12, clang
# 14) aborts with "unexpected memory mapping" where the kernel gives mmap
# more ASLR entropy than it knows (vm.mmap_rnd_bits above 28): setarch -R
# turns ASLR off for the tests' process tree, where the kernel lets it.
ifeq ($(TSAN),1)
SANFLAGS = -O1 -fsanitize=thread -fno-omit-frame-pointer
TSAN_LOG = $(abspath $(BUILD))/tsan
NO_ASLR = $$(setarch "$$(uname -m)" -R true 2>/dev/null && \
            echo setarch "$$(uname -m)" -R)
RUN = TSAN_OPTIONS="halt_on_error=1 exitcode=66 log_path=$(TSAN_LOG) \
      $(TSAN_OPTIONS)" $(NO_ASLR)
# Fails the run on any report: prints the first and a summary of all.
TSAN_VERDICT = if ls $(TSAN_LOG).* >/dev/null 2>&1; then \
                   set -- $(TSAN_LOG).*; cat "$$1"; \
                   echo "ThreadSanitizer: $$\# processes reported races:"; \
                   grep -h SUMMARY "$$@" | sort | uniq -c; exit 1; fi
TSAN_CLEAR = rm -f $(TSAN_LOG).*
else
TSAN_VERDICT = true
TSAN_CLEAR = true
endif
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -pthread
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)
LDLIBS += -lssl -lcrypto -luring -pthread

# The version is the header's (SK_VERSION_*); the shared library is named
# after it, and its SONAME after MAJOR alone.
version_part = $(shell awk '$$2 == "SK_VERSION_$(1)" { print $$3 }' include/sockit.h)
MAJOR := $(call version_part,MAJOR)
VERSION := $(MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME = libsockit.so.$(MAJOR)
SHLIB = libsockit.so.$(VERSION)

# loop_epoll.c and loop_uring.c are included by loop.c: one file per
# poller backend (loop_uring_send.c and loop_uring_recv.c, its sends and
# receives, by loop_uring.c).
LOOP_BACKENDS = src/loop_epoll.c src/loop_uring.c src/loop_uring_send.c \
    src/loop_uring_recv.c
LIB_SRC = $(filter-out $(LOOP_BACKENDS),$(sort $(wildcard src/*.c)))
SVC_SRC = $(sort $(wildcard src/services/*.c))
CLI_SRC = $(sort $(wildcard src/cli/*.c))
UNIT_SRC = $(sort $(wildcard tests/unit/*.c))

LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
SVC_OBJ = $(SVC_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit-%)
HEADERS = include/sockit.h $(wildcard src/*.h src/*/*.h)

all: $(BUILD)/libsockit.a $(BUILD)/libsockit.so $(BUILD)/sockit

$(BUILD)/%.o: %.c $(HEADERS) $(LOOP_BACKENDS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libsockit.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SHLIB): $(LIB_OBJ) src/libsockit.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=src/libsockit.map \
	    -Wl,-soname,$(SONAME) -o $@ $(LIB_OBJ) $(LDLIBS)

# The links a program finds the library through: the SONAME at run time
# (LD_LIBRARY_PATH=build), libsockit.so when it is linked (-lsockit).
$(BUILD)/$(SONAME): $(BUILD)/$(SHLIB)
	ln -sf $(SHLIB) $@

$(BUILD)/libsockit.so: $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/sockit: $(CLI_OBJ) $(SVC_OBJ) $(BUILD)/libsockit.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(SVC_OBJ) $(BUILD)/libsockit.a $(LDLIBS)

$(BUILD)/tests/unit-%: tests/unit/%.c $(BUILD)/libsockit.a $(SVC_OBJ) $(HEADERS) \
                       $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(SVC_OBJ) \
	    $(BUILD)/libsockit.a $(LDLIBS) -lcmocka

$(BUILD)/readme-example $(BUILD)/readme-tls-client: $(BUILD)/readme-%: \
	    README.md $(BUILD)/libsockit.a tests/readme-example.sh
	@mkdir -p $(dir $@)
	sh tests/readme-example.sh extract README.md \
	    $(patsubst example,,$*) > $@.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $@.c \
	    $(BUILD)/libsockit.a $(LDLIBS)

unit: $(UNIT_BIN)
	@$(TSAN_CLEAR); st=0; for t in $(UNIT_BIN); do echo "== $$t"; \
	    $(RUN) $$t || st=1; done; $(TSAN_VERDICT); exit $$st

# all, not just sockit: test_install.py installs and links the libraries.
integration: all
	@echo "== integration: $(BUILD)/sockit"; $(TSAN_CLEAR); st=0; \
	SOCKIT=$(BUILD)/sockit $(RUN) python3 -m unittest discover \
	    -s tests/integration || st=1; $(TSAN_VERDICT); exit $$st

# The unit tests again, their servers on io_uring (tests/unit/server_fixture.h
# reads SOCKIT_BACKEND).
unit-uring: all
	@SOCKIT_BACKEND=io_uring $(MAKE) --no-print-directory unit

# The integration suite again with every server's workers on io_uring
# (SOCKIT_BACKEND, the default of --backend; tests/unit/loop_uring.c runs
# the loop's unit tests on it).
integration-uring: all
	@echo "== integration (io_uring): $(BUILD)/sockit"; $(TSAN_CLEAR); st=0; \
	SOCKIT_BACKEND=io_uring SOCKIT=$(BUILD)/sockit $(RUN) python3 -m \
	    unittest discover -s tests/integration || st=1; $(TSAN_VERDICT); \
	    exit $$st

example: $(BUILD)/readme-example $(BUILD)/readme-tls-client
	$(RUN) sh tests/readme-example.sh run $(BUILD)/readme-example \
	    $(BUILD)/readme-tls-client

symbols: $(BUILD)/libsockit.so
	sh tests/check-symbols.sh $(BUILD)/libsockit.so

test: all unit integration example symbols man-lint

# The man pages: mandoc -Tlint clean, and every option of --help and every
# function of the header in them.
man-lint: $(BUILD)/sockit
	SOCKIT=$(BUILD)/sockit sh tests/man/lint.sh

# Every fuzz/NAME.c is a libFuzzer target, $(BUILD)/fuzz-NAME, linked with
# the library and the services compiled for it (not the objects of the
# build). Its committed corpus is fuzz/corpus/NAME/; what a run finds goes
# to $(BUILD)/fuzz/corpus/NAME/, a crashing input to $(BUILD)/fuzz/crash/.
FUZZ_SECONDS ?= 10
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined -pthread
FUZZ_SRC = $(sort $(wildcard fuzz/*.c))
FUZZ_BIN = $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz-%)
FUZZ_OBJ = $(LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o) \
           $(SVC_SRC:%.c=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/obj/%.o: %.c $(HEADERS) $(LOOP_BACKENDS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BIN): $(BUILD)/fuzz-%: fuzz/%.c $(FUZZ_OBJ) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -Isrc $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< \
	    $(FUZZ_OBJ) $(LDLIBS)

fuzz: $(FUZZ_BIN)
	@st=0; for t in $(FUZZ_SRC:fuzz/%.c=%); do \
	    echo "== fuzz-$$t ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)/fuzz/corpus/$$t $(BUILD)/fuzz/crash; \
	    seeds=; [ ! -d fuzz/corpus/$$t ] || seeds=fuzz/corpus/$$t; \
	    $(BUILD)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -print_final_stats=0 -artifact_prefix=$(BUILD)/fuzz/crash/$$t- \
	        $(BUILD)/fuzz/corpus/$$t $$seeds || st=1; \
	done; exit $$st

bench: all
	python3 bench/run.py
	python3 bench/tls.py

check: format-check
	$(MAKE) BUILD=build CFLAGS="$(OPT) -g -Werror" test unit-uring \
	    integration-uring
	$(MAKE) BUILD=build/asan SAN=1 CFLAGS="-g -Werror" test
	$(MAKE) BUILD=build/tsan TSAN=1 CFLAGS="-g -Werror" all unit integration
	$(MAKE) BUILD=build fuzz
	$(MAKE) package-test

# Where make install puts each file; DESTDIR is prepended to all of them.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL ?= install
MAN1 = $(wildcard man/*.1)
MAN3 = $(wildcard man/*.3)

# Made at each install, since it holds the directories of that install
# (as ${prefix}/... where they are under PREFIX).
$(BUILD)/sockit.pc: sockit.pc.in include/sockit.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' sockit.pc.in > $@

install: all $(BUILD)/sockit.pc
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
	    $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(BUILD)/sockit $(DESTDIR)$(BINDIR)/sockit
	$(INSTALL) -m 755 $(BUILD)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsockit.so
	$(INSTALL) -m 644 $(BUILD)/libsockit.a $(DESTDIR)$(LIBDIR)/libsockit.a
	$(INSTALL) -m 644 include/sockit.h $(DESTDIR)$(INCLUDEDIR)/sockit.h
	$(INSTALL) -m 644 $(BUILD)/sockit.pc $(DESTDIR)$(PKGCONFIGDIR)/sockit.pc
	$(if $(MAN1),$(INSTALL) -d $(DESTDIR)$(MANDIR)/man1 && \
	    $(INSTALL) -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/)
	$(if $(MAN3),$(INSTALL) -d $(DESTDIR)$(MANDIR)/man3 && \
	    $(INSTALL) -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockit $(DESTDIR)$(LIBDIR)/$(SHLIB) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libsockit.so \
	    $(DESTDIR)$(LIBDIR)/libsockit.a $(DESTDIR)$(INCLUDEDIR)/sockit.h \
	    $(DESTDIR)$(PKGCONFIGDIR)/sockit.pc \
	    $(MAN1:man/%=$(DESTDIR)$(MANDIR)/man1/%) \
	    $(MAN3:man/%=$(DESTDIR)$(MANDIR)/man3/%)

# The Debian packages built from a copy of the tree, checked with lintian,
# then installed and tried (as root) or unpacked and listed (otherwise).
package-test:
	sh tests/package/test-deb.sh

FORMATTED = include/*.h src/*.[ch] src/*/*.[ch] tests/unit/*.[ch] \
            tests/tools/*.c fuzz/*.c bench/peers/*.[ch]

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf build

.PHONY: all unit unit-uring integration integration-uring example symbols man-lint test fuzz bench check format format-check clean \
        install uninstall package-test $(BUILD)/sockit.pc
