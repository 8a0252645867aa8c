# sockit -- build the library, the command, the tests.
#
#   make            library (static and shared) and the sockit command
#   make check      everything the CI runs: unit and integration tests, the
#                   same again under ASan+UBSan, the README example, a short
#                   fuzz run of the endpoint parser
#   make test       the tests of one build (BUILD=..., SAN=1 for sanitizers)
#   make fuzz       run the endpoint fuzzer (FUZZ_SECONDS, default 20)
#   make bench      the benchmark suite (bench/install-deps first)
#   make format     rewrite the sources with clang-format (format-check: CI)

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
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -pthread
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)
LDLIBS += -pthread

# loop_epoll.c is included by loop.c: one file per poller backend.
LIB_SRC = $(filter-out src/loop_epoll.c,$(sort $(wildcard src/*.c)))
SVC_SRC = $(sort $(wildcard src/services/*.c))
CLI_SRC = $(sort $(wildcard src/cli/*.c))
UNIT_SRC = $(sort $(wildcard tests/unit/*.c))

LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
SVC_OBJ = $(SVC_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit-%)
HEADERS = include/sockit.h src/internal.h src/services/services.h

all: $(BUILD)/libsockit.a $(BUILD)/libsockit.so $(BUILD)/sockit

$(BUILD)/%.o: %.c $(HEADERS) src/loop_epoll.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libsockit.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libsockit.so: $(LIB_OBJ) src/libsockit.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=src/libsockit.map \
	    -Wl,-soname,libsockit.so.0 -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/sockit: $(CLI_OBJ) $(SVC_OBJ) $(BUILD)/libsockit.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(SVC_OBJ) $(BUILD)/libsockit.a $(LDLIBS)

$(BUILD)/tests/unit-%: tests/unit/%.c $(BUILD)/libsockit.a $(SVC_OBJ) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(SVC_OBJ) \
	    $(BUILD)/libsockit.a $(LDLIBS) -lcmocka

$(BUILD)/readme-example: README.md $(BUILD)/libsockit.a tests/readme-example.sh
	@mkdir -p $(dir $@)
	sh tests/readme-example.sh extract README.md > $(BUILD)/readme-example.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ \
	    $(BUILD)/readme-example.c $(BUILD)/libsockit.a $(LDLIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(BUILD)/sockit
	SOCKIT=$(BUILD)/sockit python3 -m unittest discover -s tests/integration

example: $(BUILD)/readme-example
	sh tests/readme-example.sh run $(BUILD)/readme-example

symbols: $(BUILD)/libsockit.so
	sh tests/check-symbols.sh $(BUILD)/libsockit.so

test: all unit integration example symbols

FUZZ_SECONDS ?= 20
FUZZ_CC ?= clang
$(BUILD)/fuzz-endpoint: fuzz/endpoint.c src/endpoint.c src/error.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined \
	    -o $@ fuzz/endpoint.c src/endpoint.c src/error.c

fuzz: $(BUILD)/fuzz-endpoint
	@mkdir -p $(BUILD)/fuzz-corpus
	$(BUILD)/fuzz-endpoint -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=0 $(BUILD)/fuzz-corpus fuzz/seeds

bench: all
	python3 bench/run.py

check: format-check
	$(MAKE) BUILD=build CFLAGS="$(OPT) -g -Werror" test
	$(MAKE) BUILD=build/asan SAN=1 CFLAGS="-g -Werror" test
	$(MAKE) BUILD=build fuzz

FORMATTED = include/*.h src/*.[ch] src/*/*.[ch] tests/unit/*.c fuzz/*.c \
            bench/peers/*.[ch]

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf build

.PHONY: all unit integration example symbols test fuzz bench check format format-check clean
