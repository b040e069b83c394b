# etsd build. `make` builds build/etsd and one static library per layer;
# `make test` installs what is missing, then runs every Check and Common Test suite.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
EI_DIR    = $(lastword $(wildcard /usr/lib/erlang/lib/erl_interface-*))
CFLAGS   += -std=c11 -Wall -Wextra -Werror $(OPT) -g -D_GNU_SOURCE -D_REENTRANT -pthread \
            -I. -I$(EI_DIR)/include $(SAN)
LDFLAGS  += -pthread $(SAN)
# http_parser is linked statically: the OTP roots that run the suites do not
# carry its shared library.
LIBS      = -L$(EI_DIR)/lib -lei -luv -lssl -lcrypto -lz -lm -l:libhttp_parser.a -lsystemd
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

TERM_SRC  = $(wildcard term/*.c)
STORE_SRC = $(wildcard store/*.c)
CNODE_SRC = $(filter-out cnode/main.c,$(wildcard cnode/*.c))
TEST_SRC  = $(wildcard test/check_*.c)
TOOL_SRC  = $(wildcard test/tools/*.c)
BENCH_SRC = $(wildcard bench/*.c)
FUZZ_SRC  = $(wildcard test/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBTERM  = $(BUILD)/libterm.a
LIBSTORE = $(BUILD)/libstore.a
LIBCNODE = $(BUILD)/libcnode.a
# Link order: each layer uses only the ones after it.
LAYERS   = $(LIBCNODE) $(LIBSTORE) $(LIBTERM)

.PHONY: all check ct ct-matrix ct-mixed ct-asan test deps asan fuzz fuzz-build bench demo clean install
all: $(BUILD)/etsd $(LAYERS) $(patsubst test/tools/%.c,$(BUILD)/%,$(TOOL_SRC))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBTERM): $(call obj,$(TERM_SRC))
$(LIBSTORE): $(call obj,$(STORE_SRC))
$(LIBCNODE): $(call obj,$(CNODE_SRC))
$(LAYERS):
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/etsd: $(call obj,cnode/main.c) $(LAYERS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Helper programs the test suites drive (port programs, vector converters).
$(BUILD)/%: $(BUILD)/obj/test/tools/%.o $(LAYERS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# check_main.c runs every suite; the list is generated from the
# `Suite *x_suite(void)` constructors found in test/check_*.c.
$(BUILD)/gen/suites.h: $(TEST_SRC)
	@mkdir -p $(dir $@)
	sed -n 's/^Suite \*\([a-z0-9_]*\)_suite(void).*/SUITE(\1)/p' $(filter-out test/check_main.c,$(TEST_SRC)) > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/test/check_main.o: $(BUILD)/gen/suites.h
$(BUILD)/obj/test/%.o: CFLAGS += -I$(BUILD)/gen -Wno-unused-parameter

# Fuzz regression inputs replay under the ordinary build, so every crash
# a fuzzer ever found stays a test.
FUZZ_REPLAY = $(patsubst test/fuzz/%.c,$(BUILD)/replay_%,$(FUZZ_SRC))
$(BUILD)/replay_%: $(BUILD)/obj/test/fuzz/%.o $(BUILD)/obj/test/fuzz/replay_main.o $(LAYERS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/check_etsd: $(call obj,$(TEST_SRC)) $(LAYERS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

check: all $(BUILD)/check_etsd $(FUZZ_REPLAY)
	$(BUILD)/check_etsd
	@for r in $(FUZZ_REPLAY); do \
	  t=$${r#$(BUILD)/replay_fuzz_}; \
	  $$r test/fuzz/seeds/$$t test/fuzz/regress/$$t || exit 1; done

# The test node's name carries the shell's pid: two runs on one machine share
# one epmd, and a second etsd_ct@127.0.0.1 would fail to start distributed.
# OTP=27 or OTP=29 runs the suites with the CT node and every BEAM peer on that
# release, inside its Debian root (test/otp-root.sh); etsd is the one built here.
# Each release compiles the suites into its own rebar3 folder and logs there
# (an OTP 25 ct cannot read the log index a newer release wrote).
OTP ?= 25
CT_LOGDIR ?= $(CURDIR)/_build/otp$(OTP)/logs
ct: all
	mkdir -p $(CT_LOGDIR)
	test/otp-root.sh $(OTP) env ETSD_ROOT=$(CURDIR) ETSD_BUILD=$(CURDIR)/$(BUILD) \
	  REBAR_BASE_DIR=$(CURDIR)/_build/otp$(OTP) \
	  rebar3 ct --name etsd_ct_$$$$@127.0.0.1 --logdir $(CT_LOGDIR) $(CT_ARGS)

# Every suite on every release the cluster may run.
# Then one cluster of OTP 27 and OTP 29 nodes with etsd (erlang_test/mixed/):
# the CT node runs OTP 27 and starts OTP 29 peers in their root.
ct-matrix: all
	$(MAKE) ct OTP=25
	$(MAKE) ct OTP=27
	$(MAKE) ct OTP=29
	$(MAKE) ct-mixed

ct-mixed: all
	$(MAKE) ct OTP=27 CT_ARGS="--dir erlang_test/mixed"

deps:
	@bash test/install-deps.sh

# The one test command: README.md and .ci/run both call it.
# The roots of the newer releases are built (once per machine) while the
# Check tests run.
test: deps
	test/otp-root.sh 27 --path >/dev/null & test/otp-root.sh 29 --path >/dev/null & \
	  $(MAKE) check; rc=$$?; wait; exit $$rc
	$(MAKE) ct-matrix
	$(MAKE) ct-asan

SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="$(SAN_FLAGS)" check

# The Common Test suites against etsd and the test tools built with
# AddressSanitizer and UndefinedBehaviorSanitizer, on OTP 25: a report ends
# the process with a non-zero status (exitcode, -fno-sanitize-recover), and
# etsd_test_lib, as a CT hook, fails the test case whose etsd logged one.
# Its logs go to a folder of their own. Sanitized code runs 2-3
# times slower: timetraps are tripled, and the
# 100 MB message case, whose peer drops etsd after 2 s without a tick, is
# skipped (ETSD_CT_SKIP, read by etsd_test_lib).
SAN_RUN_ENV = ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:exitcode=86:print_summary=1 \
              UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87 \
              ETSD_CT_SKIP="messaging_SUITE:hundred_mb_message_arrives_intact_with_ticks_flowing"
ct-asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="$(SAN_FLAGS)" all
	env $(SAN_RUN_ENV) $(MAKE) ct BUILD=build-asan OPT=-O1 SAN="$(SAN_FLAGS)" OTP=25 \
	  CT_LOGDIR=$(CURDIR)/_build/asan/logs CT_ARGS="--multiply_timetraps 3 $(CT_ARGS)"

# libFuzzer targets: clang, ASan and UBSan. FUZZ_SECONDS per target (default 600).
FUZZ_SECONDS ?= 600
fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
	  $(LAYERS:$(BUILD)/%=build-fuzz/%)
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c11 -g -O1 -D_GNU_SOURCE -I. -I$(EI_DIR)/include -fsanitize=fuzzer,address,undefined \
	    -o build-fuzz/$$n $$f $(LAYERS:$(BUILD)/%=build-fuzz/%) $(LIBS) -pthread || exit 1; done
fuzz: fuzz-build
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); t=$${n#fuzz_}; \
	  mkdir -p build-fuzz/corpus/$$t test/fuzz/regress/$$t; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=test/fuzz/regress/$$t/ \
	    build-fuzz/corpus/$$t test/fuzz/seeds/$$t || exit 1; done

BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench_%,$(BENCH_SRC))
$(BUILD)/bench_%: $(BUILD)/obj/bench/%.o $(LAYERS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
bench: all $(BENCH_BIN)
	@bash bench/run.sh

demo: deps all
	@bash erlang_test/demo.sh

# `make install PREFIX=/usr DESTDIR=/tmp/pkg`: the program, its manual page,
# the systemd unit (ExecStart points into PREFIX) and the sample flags file,
# which an existing one is never overwritten by. Plain `=`: erl exports
# BINDIR into the environment of everything it runs, tests included.
PREFIX      = /usr/local
DESTDIR    ?=
BINDIR      = $(PREFIX)/bin
MANDIR      = $(PREFIX)/share/man
DOCDIR      = $(PREFIX)/share/doc/etsd
UNITDIR     = $(PREFIX)/lib/systemd/system
SYSCONFDIR  = /etc
install: $(BUILD)/etsd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 0755 $(BUILD)/etsd $(DESTDIR)$(BINDIR)/etsd
	install -m 0644 dist/etsd.1 $(DESTDIR)$(MANDIR)/man1/etsd.1
	sed 's|@BINDIR@|$(BINDIR)|g' dist/etsd.service > $(DESTDIR)$(UNITDIR)/etsd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/etsd.service
	install -m 0644 dist/etsd.default $(DESTDIR)$(DOCDIR)/etsd.default
	test -e $(DESTDIR)$(SYSCONFDIR)/default/etsd || \
	  install -m 0644 dist/etsd.default $(DESTDIR)$(SYSCONFDIR)/default/etsd

clean:
	rm -rf build build-asan build-fuzz _build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
