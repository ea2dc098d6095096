# The build shared by the C examples, included by each one's Makefile after
# it sets PROGRAMS (its programs, one .c file each) and HEADERS (its own
# headers, if any); CLEAN_DIRS are removed by `make clean` too.
#   make            link librraft.so (rpath set, so no LD_LIBRARY_PATH needed)
#   make STATIC=1   link librraft.a statically (plus -lpthread -ldl -lm)
#   make SANITIZE=1 build with AddressSanitizer + UBSan (make clean first)
# The library is built with cargo if it is missing.

COMMON  := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ROOT    := $(abspath $(COMMON)/../..)
LIBDIR  := $(ROOT)/target/release
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c99 -Wall -Wextra -Werror
ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
CPPFLAGS += -I$(ROOT)/include -I$(COMMON)

ifeq ($(STATIC),1)
LIB     := $(LIBDIR)/librraft.a
LDLIBS  := $(LIB) -lpthread -ldl -lm
else
LIB     := $(LIBDIR)/librraft.so
LDLIBS  := -L$(LIBDIR) -lrraft -Wl,-rpath,$(LIBDIR) -lpthread
endif

all: $(PROGRAMS)

$(LIB):
	@echo "== building librraft: cargo build --release --lib (the first build takes a few minutes; cargo prints each crate)"
	cd $(ROOT) && cargo build --release --lib

%: %.c $(HEADERS) $(wildcard $(COMMON)/*.h) $(ROOT)/include/rraft.h $(LIB)
	@echo "== compiling $@"
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

clean:
	rm -f $(PROGRAMS)
	$(if $(CLEAN_DIRS),rm -rf $(CLEAN_DIRS))

.PHONY: all clean
