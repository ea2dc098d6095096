# Install rraft: make install PREFIX=/usr/local (DESTDIR for staging).
#
# Installs lib/librraft.so.<version> (soname librraft.so.0, set by build.rs)
# with the librraft.so.0 and librraft.so links, lib/librraft.a,
# include/rraft.h and include/rraft.hpp, bin/rraft-cli and
# lib/pkgconfig/rraft.pc. Then: cc app.c $(pkg-config --cflags --libs rraft)
# (plus -Wl,-rpath,$(pkg-config --variable=libdir rraft) under a prefix the
# dynamic linker does not search); fully static:
# cc -static app.c $(pkg-config --cflags --static --libs rraft).
#
# The installed files carry no debug info: the release profile keeps line
# tables (debug = 1) for backtraces and profiling in the build tree, and the
# install strips them (the shared library and rraft-cli to their exported
# symbols, the archive of its debug sections only). STRIP=: keeps them.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=
CARGO ?= cargo
# release or debug: which cargo profile to build and install.
PROFILE ?= release
CARGO_TARGET_DIR ?= target
BUILD_DIR := $(CARGO_TARGET_DIR)/$(PROFILE)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOMAJOR := 0
INSTALL ?= install
STRIP ?= strip

ifeq ($(PROFILE),release)
CARGO_PROFILE_FLAG := --release
else
CARGO_PROFILE_FLAG :=
endif

all: build

build:
	$(CARGO) build $(CARGO_PROFILE_FLAG) --lib --bin rraft-cli

install: build install-only

# Installs what `build` made (no cargo run).
install-only:
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(BUILD_DIR)/librraft.so $(DESTDIR)$(LIBDIR)/librraft.so.$(VERSION)
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/librraft.so.$(VERSION)
	ln -sf librraft.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librraft.so.$(SOMAJOR)
	ln -sf librraft.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/librraft.so
	$(INSTALL) -m 644 $(BUILD_DIR)/librraft.a $(DESTDIR)$(LIBDIR)/librraft.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/librraft.a
	$(INSTALL) -m 644 include/rraft.h include/rraft.hpp $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 755 $(BUILD_DIR)/rraft-cli $(DESTDIR)$(BINDIR)/rraft-cli
	$(STRIP) $(DESTDIR)$(BINDIR)/rraft-cli
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    rraft.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/rraft.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/rraft.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/librraft.so $(DESTDIR)$(LIBDIR)/librraft.so.$(SOMAJOR) \
	      $(DESTDIR)$(LIBDIR)/librraft.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librraft.a \
	      $(DESTDIR)$(INCLUDEDIR)/rraft.h $(DESTDIR)$(INCLUDEDIR)/rraft.hpp \
	      $(DESTDIR)$(BINDIR)/rraft-cli $(DESTDIR)$(PKGCONFIGDIR)/rraft.pc

.PHONY: all build install install-only uninstall
