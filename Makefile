# asyncloop: the front door. `make` builds the library, header and examples; `make test` runs
# every test; `make run` runs the most complete example. See README.md.

CARGO      ?= cargo
CC         ?= cc
CXX        ?= c++
PREFIX     ?= /usr/local
BUILD      := build
LIBDIR     := $(BUILD)/lib
BINDIR     := $(BUILD)/bin
TESTDIR    := $(BUILD)/tests
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR      := $(firstword $(subst ., ,$(VERSION)))
SONAME     := libasyncloop.so.$(MAJOR)
RELEASE    := target/release

CWARN      := -Wall -Wextra -Werror -pedantic
CFLAGS     ?= -O2 -g
CXXFLAGS   ?= -O2 -g
EX_CFLAGS  := -std=c11 $(CWARN) -Iinclude $(CFLAGS)
EX_CXXFLAGS := -std=c++17 $(CWARN) -Iinclude $(CXXFLAGS)
EX_LDFLAGS := -L$(LIBDIR) -lasyncloop -Wl,-rpath,'$$ORIGIN/../lib' -lpthread
SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

EXAMPLES   := $(BINDIR)/echo $(BINDIR)/palindrome $(BINDIR)/server $(BINDIR)/client
C_TESTS    := test_version test_loop test_tcp test_http test_http_prepared test_http_client test_shutdown test_pg test_pg_app test_pg_cpp test_misuse test_cpp test_cpp_stream test_blocking_pool test_stream test_client_stream test_tls test_ws test_signal test_listen_fd
HPP        := include/asyncloop.hpp $(wildcard include/asyncloop/*.hpp)
LIBFILES   := $(LIBDIR)/libasyncloop.so.$(VERSION) $(LIBDIR)/libasyncloop.a
RUST_SRC   := $(shell find src ffi -name '*.rs') build.rs cbindgen.toml Cargo.toml

.PHONY: all lib examples test test-rust test-c test-header test-symbols test-install test-e2e test-sanitize test-guides test-docs docs lint fuzz soak bench bench-instr run install clean deps

all: lib examples

# Installs the Debian packages building needs (as root; otherwise prints the apt-get command).
# `make test`, `make run`, `make bench`, `make fuzz` and `make docs` install their own tools;
# plain `make` installs nothing: it checks, and prints what to run when something is missing.
deps:
	@scripts/deps.sh build

# The library: one cargo build gives the cdylib, the staticlib and the header.
$(RELEASE)/libasyncloop.so $(RELEASE)/libasyncloop.a include/asyncloop.h: $(RUST_SRC)
	@scripts/deps.sh --check build
	$(CARGO) build --release --lib
	@touch include/asyncloop.h

# Replaced by rename, never rewritten in place: a running program keeps its mapping intact.
$(LIBDIR)/libasyncloop.so.$(VERSION): $(RELEASE)/libasyncloop.so
	@mkdir -p $(LIBDIR)
	cp $< $@.tmp && mv -f $@.tmp $@
	ln -sf libasyncloop.so.$(VERSION) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libasyncloop.so

$(LIBDIR)/libasyncloop.a: $(RELEASE)/libasyncloop.a
	@mkdir -p $(LIBDIR)
	cp $< $@.tmp && mv -f $@.tmp $@

lib: $(LIBFILES)

examples: $(EXAMPLES)

$(BINDIR)/%: examples-c/%.c include/asyncloop.h $(LIBFILES)
	@mkdir -p $(BINDIR)
	$(CC) $(EX_CFLAGS) $< -o $@ $(EX_LDFLAGS)

$(BINDIR)/%: examples-c/%.cpp include/asyncloop.h $(HPP) $(LIBFILES)
	@mkdir -p $(BINDIR)
	$(CXX) $(EX_CXXFLAGS) $< -o $@ $(EX_LDFLAGS)

# ---- tests --------------------------------------------------------------------------------

# Targets that install their tools do so first, then build: the library rule only checks.
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory lib examples
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-header test-symbols test-install
	$(MAKE) --no-print-directory test-rust
	$(MAKE) --no-print-directory test-c
	$(MAKE) --no-print-directory test-guides test-docs
	$(MAKE) --no-print-directory test-e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features fuzzing -- -D warnings
	@git diff --exit-code -- include/asyncloop.h || { echo "include/asyncloop.h changed by the build: commit it"; exit 1; }

# `fuzzing` compiles the fuzz harnesses for the corpus replay (tests/fuzz_corpus.rs); the
# shipped library is built without it.
test-rust:
	$(CARGO) test --workspace --features fuzzing

# The header compiles as strict C11 and C++17.
test-header: include/asyncloop.h
	@mkdir -p $(TESTDIR)
	printf '#include "asyncloop.h"\nint main(void){return aloop_version()==0;}\n' > $(TESTDIR)/header_c.c
	$(CC) -std=c11 $(CWARN) -Iinclude -fsyntax-only $(TESTDIR)/header_c.c
	printf '#include "asyncloop.h"\nint main(){return aloop_version()==nullptr;}\n' > $(TESTDIR)/header_cpp.cpp
	$(CXX) -std=c++17 $(CWARN) -Iinclude -fsyntax-only $(TESTDIR)/header_cpp.cpp
	@bad=$$(grep -E '^#define ' include/asyncloop.h | awk '{print $$2}' | grep -v -E '^(ALOOP_|ASYNCLOOP_H$$)' || true); \
	 if [ -n "$$bad" ]; then echo "header: macros without the ALOOP_ prefix: $$bad"; exit 1; fi
	@echo "header: strict C11 and C++17 OK; every macro has the ALOOP_ prefix"

# The shared library exports aloop_* functions only, and has the right SONAME.
test-symbols: $(LIBFILES)
	@bad=$$(nm -D --defined-only $(LIBDIR)/libasyncloop.so | awk '{print $$3}' | grep -v '^aloop_' || true); \
	 if [ -n "$$bad" ]; then echo "non-aloop_ exports:"; echo "$$bad" | head -20; exit 1; fi
	@readelf -d $(LIBDIR)/libasyncloop.so | grep -q "SONAME.*\[$(SONAME)\]" || { echo "SONAME is not $(SONAME)"; exit 1; }
	@echo "symbols: $$(nm -D --defined-only $(LIBDIR)/libasyncloop.so | wc -l) exports, all aloop_; SONAME $(SONAME)"

# make install into a scratch prefix, then build the consumer project (tests/consumer/) against
# it three ways and run each result: CMake's find_package (the shared and the static library),
# pkg-config, and pkg-config --static (a fully static program). The palindrome example is linked
# fully static too and answers a request. CMake must refuse a version the prefix does not have.
INST      = $(CURDIR)/$(TESTDIR)/prefix
INST_PC   = env PKG_CONFIG_PATH=$(INST)/lib/pkgconfig pkg-config
CONSUMER  = $(TESTDIR)/consumer
test-install: $(LIBFILES)
	@rm -rf $(INST) $(CONSUMER) && mkdir -p $(CONSUMER)
	@$(MAKE) --no-print-directory install PREFIX=$(INST) >/dev/null
	@test -f $(INST)/lib/cmake/asyncloop/asyncloop-config.cmake && test -f $(INST)/lib/cmake/asyncloop/asyncloop-config-version.cmake
	@cmake -S tests/consumer -B $(CONSUMER)/cmake -DCMAKE_PREFIX_PATH=$(INST) \
	   -DASYNCLOOP_VERSION_WANTED=$(MAJOR).$(word 2,$(subst ., ,$(VERSION))) >$(CONSUMER)/cmake.log 2>&1 \
	   && cmake --build $(CONSUMER)/cmake >>$(CONSUMER)/cmake.log 2>&1 || { cat $(CONSUMER)/cmake.log; exit 1; }
	@$(CONSUMER)/cmake/consumer && $(CONSUMER)/cmake/consumer_static && $(CONSUMER)/cmake/consumer_cpp
	@! ldd $(CONSUMER)/cmake/consumer_static | grep -q libasyncloop || { echo "consumer_static needs libasyncloop.so"; exit 1; }
	@ldd $(CONSUMER)/cmake/consumer | grep -q "libasyncloop.so.$(MAJOR) => $(INST)/lib/" || { echo "consumer does not use the installed libasyncloop.so"; exit 1; }
	@! cmake -S tests/consumer -B $(CONSUMER)/cmake-future -DCMAKE_PREFIX_PATH=$(INST) \
	   -DASYNCLOOP_VERSION_WANTED=$$(($(MAJOR) + 1)).0 >$(CONSUMER)/cmake-future.log 2>&1 \
	   || { echo "find_package(asyncloop $$(($(MAJOR) + 1)).0) was not refused"; exit 1; }
	@$(CC) -std=c11 $(CWARN) tests/consumer/consumer.c -o $(CONSUMER)/pkgconfig \
	   $$($(INST_PC) --cflags --libs asyncloop) -Wl,-rpath,$(INST)/lib
	@$(CONSUMER)/pkgconfig
	@$(CC) -std=c11 $(CWARN) -DCONSUMER_NO_PG -static tests/consumer/consumer.c -o $(CONSUMER)/pkgconfig_static \
	   $$($(INST_PC) --static --cflags --libs asyncloop) -Wl,--gc-sections 2>$(CONSUMER)/static.log \
	   || { cat $(CONSUMER)/static.log; exit 1; }
	@file $(CONSUMER)/pkgconfig_static | grep -q "statically linked" || { echo "pkgconfig_static is not static"; exit 1; }
	@$(CONSUMER)/pkgconfig_static
	@$(CC) -std=c11 $(CWARN) -static examples-c/palindrome.c -o $(CONSUMER)/palindrome_static \
	   $$($(INST_PC) --static --cflags --libs asyncloop) -Wl,--gc-sections 2>>$(CONSUMER)/static.log \
	   || { cat $(CONSUMER)/static.log; exit 1; }
	@python3 tests/consumer/palindrome_static.py $(CONSUMER)/palindrome_static
	@echo "install: consumer built with CMake (shared, static, C++), pkg-config and pkg-config --static (fully static); static palindrome answers"

$(TESTDIR)/%: tests/c/%.c tests/c/check.h tests/c/dial.h include/asyncloop.h $(LIBFILES)
	@mkdir -p $(TESTDIR)
	$(CC) -std=c11 $(CWARN) -Iinclude -Itests/c -O1 -g $< -o $@ $(EX_LDFLAGS)

$(TESTDIR)/%.asan: tests/c/%.c tests/c/check.h tests/c/dial.h include/asyncloop.h $(LIBFILES)
	@mkdir -p $(TESTDIR)
	$(CC) -std=c11 $(CWARN) -Iinclude -Itests/c -O1 -g $(SAN) $< -o $@ $(EX_LDFLAGS)

$(TESTDIR)/%: tests/c/%.cpp tests/c/check.h include/asyncloop.h $(HPP) $(LIBFILES)
	@mkdir -p $(TESTDIR)
	$(CXX) -std=c++17 $(CWARN) -Iinclude -Itests/c -O1 -g $< -o $@ $(EX_LDFLAGS)

$(TESTDIR)/%.asan: tests/c/%.cpp tests/c/check.h include/asyncloop.h $(HPP) $(LIBFILES)
	@mkdir -p $(TESTDIR)
	$(CXX) -std=c++17 $(CWARN) -Iinclude -Itests/c -O1 -g $(SAN) $< -o $@ $(EX_LDFLAGS)

# C programs against the shared library: plain, under ASan+UBSan, and one under valgrind.
test-c: $(addprefix $(TESTDIR)/,$(C_TESTS)) $(addprefix $(TESTDIR)/,$(addsuffix .asan,$(C_TESTS)))
	@scripts/run-c-tests.sh $(TESTDIR) $(C_TESTS)

# The examples built with ASan+UBSan (C/C++ side), a scripted session of real requests, and
# valgrind memcheck runs of palindrome and server.
SANDIR := $(BUILD)/san/bin
$(SANDIR)/%: examples-c/%.c include/asyncloop.h $(LIBFILES)
	@mkdir -p $(SANDIR)
	$(CC) $(EX_CFLAGS) $(SAN) $< -o $@ -L$(LIBDIR) -lasyncloop -Wl,-rpath,$(CURDIR)/$(LIBDIR) -lpthread

$(SANDIR)/%: examples-c/%.cpp include/asyncloop.h $(HPP) $(LIBFILES)
	@mkdir -p $(SANDIR)
	$(CXX) $(EX_CXXFLAGS) $(SAN) $< -o $@ -L$(LIBDIR) -lasyncloop -Wl,-rpath,$(CURDIR)/$(LIBDIR) -lpthread

# The example server's parts (one file per concern, included by server.cpp).
SERVER_PARTS := examples-c/sha256.hpp $(wildcard examples-c/server/*.hpp)
$(BINDIR)/server $(SANDIR)/server: $(SERVER_PARTS)

# The library itself built with AddressSanitizer too (RUSTC_BOOTSTRAP lets the stable toolchain
# use -Zsanitizer; gcc's libasan serves both sides), loaded by the sanitized programs in place of
# the plain one through LD_LIBRARY_PATH.
SANLIB := $(BUILD)/san/lib
HOST   := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
$(SANLIB)/$(SONAME): $(RUST_SRC)
	@mkdir -p $(SANLIB)
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" $(CARGO) build --release --lib \
	  --target $(HOST) --target-dir $(BUILD)/san/target
	cp $(BUILD)/san/target/$(HOST)/release/libasyncloop.so $@.tmp && mv -f $@.tmp $@

test-sanitize:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory examples $(SANDIR)/palindrome $(SANDIR)/server $(SANDIR)/client \
	  $(SANLIB)/$(SONAME) $(addprefix $(TESTDIR)/,$(addsuffix .asan,$(C_TESTS)))
	@scripts/sanitize-session.sh $(SANDIR) $(BINDIR) $(SANLIB) $(TESTDIR)

# The guides' C and C++ programs (docs/*.md, README.md), extracted, compiled with warnings as
# errors and run against real servers (tests/docs/test_guides.py).
test-guides: $(LIBFILES)
	python3 -W ignore::ResourceWarning -m unittest discover -s tests/docs -p 'test_guides.py'

# The HTML docs rendered in headless Chromium, a page per header item, no broken link
# (tests/docs/test_docs.py).
test-docs: docs
	python3 -W ignore::ResourceWarning -m unittest discover -s tests/docs -p 'test_docs.py'

# ---- documentation ------------------------------------------------------------------------

# The API reference (a page per function, type and macro of the header, from its doc comments)
# and the pages of docs/, as HTML in build/docs/ (Doxygen, docs/Doxyfile). Any Doxygen warning,
# an undocumented public item above all, fails it: document the item at its source in src/capi.
DOCS    := $(BUILD)/docs
DOC_SRC := docs/Doxyfile docs/api.dox $(wildcard docs/*.md) scripts/doxygen-filter.py include/asyncloop.h
docs:
	@scripts/deps.sh docs
	@$(MAKE) --no-print-directory $(DOCS)/index.html

$(DOCS)/index.html: $(DOC_SRC)
	@rm -rf $(DOCS) && mkdir -p $(BUILD)
	@ALOOP_VERSION=$(VERSION) doxygen docs/Doxyfile && [ ! -s $(BUILD)/docs-warnings.log ] || { \
	  cat $(BUILD)/docs-warnings.log; rm -rf $(DOCS); \
	  echo "make docs: Doxygen warnings fail the build (log: $(BUILD)/docs-warnings.log)"; exit 1; }
	@echo "docs: $(DOCS)/index.html ($$(ls $(DOCS)/*.html | wc -l) pages)"

# End to end: the example binaries over real sockets with real clients, both backends.
test-e2e: examples
	python3 -W ignore::ResourceWarning -m unittest discover -s tests/e2e -p 'test_*.py'

# Side-by-side benchmark (see bench/README.md); BENCH_DURATION and BENCH_ROUNDS shorten it.
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory lib examples $(BUILD)/bench/nothing $(BUILD)/bench/wsload
	python3 bench/bench.py

# Instructions per request under callgrind (see bench/README.md): our server on both backends,
# nginx and a parse-nothing responder; INSTR_N, INSTR_SUBJECTS, INSTR_SCENARIOS narrow it.
INSTR_N        ?= 2000
INSTR_SUBJECTS ?= asyncloop-epoll,asyncloop-uring,nginx,nothing
INSTR_SCENARIOS ?=
BENCHDIR := $(BUILD)/bench
$(BENCHDIR)/%: bench/%.c
	@mkdir -p $(BENCHDIR)
	$(CC) $(EX_CFLAGS) $< -o $@

bench-instr:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory lib examples $(BENCHDIR)/loadgen $(BENCHDIR)/nothing
	INSTR_N=$(INSTR_N) INSTR_SUBJECTS=$(INSTR_SUBJECTS) INSTR_SCENARIOS="$(INSTR_SCENARIOS)" python3 bench/instr.py

# Soak run (scripts/soak.py): mixed load with random disconnects and PostgreSQL restarts for
# SOAK_MINUTES; reports RSS and fd counts after warm-up and at the end (build/soak/report.md).
SOAK_MINUTES ?= 10
SOAK_BACKEND ?= uring
soak:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory lib examples
	python3 scripts/soak.py --minutes $(SOAK_MINUTES) --backend $(SOAK_BACKEND)

# Fuzzing (libFuzzer through cargo-fuzz; RUSTC_BOOTSTRAP lets the stable toolchain build the
# sanitizer-instrumented targets). `make test` replays the corpora (tests/fuzz_corpus.rs).
FUZZ_TIME    ?= 60
FUZZ_TARGETS ?= http_parser http_server http_response http_connection tls_server ws_frame
fuzz:
	@scripts/deps.sh fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t --fuzz-dir . -- -max_total_time=$(FUZZ_TIME) || exit 1; done

# ---- running and installing ---------------------------------------------------------------

# The most complete example: a throwaway PostgreSQL with sample data, then the HTTP server on
# 127.0.0.1:8080 in the foreground; Ctrl-C stops both.
run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory lib examples
	@scripts/run.sh

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIBDIR)/libasyncloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libasyncloop.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libasyncloop.so
	install -m 0644 $(LIBDIR)/libasyncloop.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/asyncloop.h $(DESTDIR)$(PREFIX)/include/
	install -d $(DESTDIR)$(PREFIX)/include/asyncloop
	install -m 0644 include/asyncloop.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 0644 include/asyncloop/*.hpp $(DESTDIR)$(PREFIX)/include/asyncloop/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' scripts/asyncloop.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/asyncloop.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/asyncloop
	for f in asyncloop-config asyncloop-config-version; do \
	  sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' -e 's|@MINOR@|$(word 2,$(subst ., ,$(VERSION)))|g' \
	    scripts/$$f.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/asyncloop/$$f.cmake || exit 1; done

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
