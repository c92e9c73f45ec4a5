# MOM top-level driver: build, run, stop, test.
#
#   make          build the nginx module and momd
#   make run      install deps if missing, build, start the local cluster
#   make stop     stop the local cluster
#   make test     install deps if missing, build, run every test

NODES      ?= 3
BUILD      := $(CURDIR)/build
GEN        := $(BUILD)/gen
NGX_SRC    := /usr/share/nginx/src
NGX_TREE   := $(BUILD)/nginx
MODULE     := $(BUILD)/ngx_http_mom_module.so
MOMD       := $(BUILD)/momd

PROTOS     := $(wildcard proto/*.proto)
GEN_SRCS   := $(patsubst proto/%.proto,$(GEN)/%.pb-c.c,$(PROTOS))
GEN_HDRS   := $(GEN_SRCS:.c=.h)

MOD_SRCS   := $(wildcard ngx_mom_module/*.c)
MOD_HDRS   := $(wildcard ngx_mom_module/*.h)

MOMD_MAIN  := grpc_sidecar/main.c
MOMD_SRCS  := $(filter-out $(MOMD_MAIN),$(wildcard grpc_sidecar/*.c))
MOMD_HDRS  := $(wildcard grpc_sidecar/*.h)
UNIT_SRCS  := $(wildcard grpc_sidecar/tests/test_*.c)
UNIT_BINS  := $(patsubst grpc_sidecar/tests/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

PKGS       := libuv sqlite3 libprotobuf-c jansson openssl grpc
CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS_PKG   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lraft -lpthread
# grpc_tune.cc (momd only): Abseil's mutex settings have no C API
ABSL_LIBS  := $(shell pkg-config --libs absl_synchronization 2>/dev/null)

SHELL      := /bin/bash
CC         ?= cc
WARN       := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
              -Wpointer-arith -Wstrict-prototypes
MOMD_CFLAGS := -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -Igrpc_sidecar \
               -I$(GEN) $(CFLAGS_PKG)
SAN_FLAGS  := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

.PHONY: all module momd unit deps run stop test clean format bench-tools

all: module momd

deps:
	@scripts/install-deps

# --- generated protobuf-c sources -------------------------------------------

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<

# --- nginx module ------------------------------------------------------------

# nginx's configure needs the list of module sources: configure again whenever
# that list or the addon config changes, otherwise rebuild incrementally.
$(NGX_TREE)/.srclist: FORCE
	@mkdir -p $(NGX_TREE)
	@echo "$(MOD_SRCS) $(MOD_HDRS)" | cmp -s - $@ || \
	    echo "$(MOD_SRCS) $(MOD_HDRS)" > $@

$(NGX_TREE)/objs/Makefile: config $(NGX_TREE)/.srclist $(GEN_HDRS)
	rm -rf $(NGX_TREE)/src $(NGX_TREE)/auto $(NGX_TREE)/objs
	cp -r $(NGX_SRC)/auto $(NGX_SRC)/src $(NGX_SRC)/configure \
	    $(NGX_SRC)/conf_flags $(NGX_TREE)/
	cd $(NGX_TREE) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --add-dynamic-module=$(CURDIR) > configure.log
	@touch $@

$(MODULE): $(NGX_TREE)/objs/Makefile $(MOD_SRCS) $(MOD_HDRS) $(GEN_SRCS)
	$(MAKE) -s -C $(NGX_TREE) -f objs/Makefile modules
	@# a new file, not overwritten in place: running nginx maps the old one
	cp $(NGX_TREE)/objs/ngx_http_mom_module.so $@.tmp && mv -f $@.tmp $@

module: $(MODULE)

# --- momd --------------------------------------------------------------------

$(BUILD)/obj/%.o: grpc_sidecar/%.c $(MOMD_HDRS) $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(MOMD_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: grpc_sidecar/%.cc grpc_sidecar/%.h
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -fno-exceptions \
	    $(shell pkg-config --cflags absl_synchronization) -c $< -o $@

$(BUILD)/obj/gen/%.o: $(GEN)/%.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -I$(GEN) $(CFLAGS_PKG) -c $< -o $@

MOMD_OBJS := $(patsubst grpc_sidecar/%.c,$(BUILD)/obj/%.o,$(MOMD_SRCS)) \
             $(patsubst $(GEN)/%.c,$(BUILD)/obj/gen/%.o,$(GEN_SRCS))

$(MOMD): $(MOMD_OBJS) $(BUILD)/obj/main.o $(BUILD)/obj/grpc_tune.o
	$(CC) -o $@ $^ $(LIBS_PKG) $(ABSL_LIBS)

momd: $(MOMD)

# --- C unit tests (cmocka), under AddressSanitizer and UBSan -----------------

$(BUILD)/tests/%: grpc_sidecar/tests/%.c $(MOMD_SRCS) $(MOMD_HDRS) \
                $(wildcard grpc_sidecar/tests/*.h) $(GEN_SRCS)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(SAN_FLAGS) $(WARN) -D_GNU_SOURCE -Igrpc_sidecar \
	    -I$(GEN) $(CFLAGS_PKG) -o $@ $< $(MOMD_SRCS) $(GEN_SRCS) \
	    $(LIBS_PKG) -lcmocka

# BUILD is absolute: let `make build/tests/test_x` name the same binary.
build/tests/%: $(BUILD)/tests/% ;

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do \
	    echo "# $$t"; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; \
	done

# --- the local deployment and the tests --------------------------------------

run: deps
	$(MAKE) all
	scripts/mom-cluster up $(NODES)

stop:
	scripts/mom-cluster down

test: deps
	$(MAKE) all
	$(MAKE) unit
	prove -r -j2 t/

# --- benchmark tools (scripts/bench) -----------------------------------------

$(BUILD)/bench/sse_bench: bench/sse_bench.c bench/http_resp.c bench/http_resp.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -o $@ $(filter %.c,$^)

bench-tools: $(BUILD)/bench/sse_bench

# CPU per applied command of momd's store (docs/benchmarks.md)
$(BUILD)/bench/store_bench: bench/store_bench.c $(MOMD_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(MOMD_CFLAGS) -o $@ bench/store_bench.c $(MOMD_OBJS) $(LIBS_PKG)

build/bench/store_bench: $(BUILD)/bench/store_bench ;

format:
	clang-format -i grpc_sidecar/*.c grpc_sidecar/*.cc grpc_sidecar/*.h \
	    grpc_sidecar/tests/*.c grpc_sidecar/tests/*.h

clean:
	rm -rf $(BUILD)

FORCE:
