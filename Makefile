# meta-log-federation: build, test, benchmark.  `make help` lists the targets.
EMACS ?= emacs
CARGO ?= cargo
FEATURES ?=
CARGO_FEATURES = $(if $(strip $(FEATURES)),--features "$(FEATURES)",)
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
MODULE = lisp/meta-log-federation-module.so
ELS = $(wildcard lisp/*.el)

.PHONY: all module broker help test lint bench demo clean

all: module

help:
	@echo "make            build the native module into lisp/ (release)"
	@echo "make broker     build the local MQTT broker, target/release/meta-log-broker"
	@echo "make test       cargo test + the ert suite against a private mosquitto"
	@echo "make lint       cargo fmt --check, clippy, byte-compile, checkdoc"
	@echo "make bench      print throughput and latency figures"
	@echo "make demo       two Emacs peers meet through a private broker"
	@echo "FEATURES=tls    build with mqtts:// support"

# Installed by writing a new file and renaming it: overwriting a loaded .so in
# place crashes a running Emacs.
module:
	$(CARGO) build --release $(CARGO_FEATURES)
	install -m 755 $(TARGET_DIR)/release/libmeta_log_federation_module.so $(MODULE)

# The local MQTT broker that the first Emacs of a machine starts (broker/). Its own
# binary: `make` and (require 'meta-log-federation) never compile rumqttd.
broker:
	$(CARGO) build --release -p meta-log-broker

# The tests build with TLS so that mqtts:// is tested; `make` alone stays lean.
TEST_FEATURES ?= tls
test:
	$(MAKE) module FEATURES="$(TEST_FEATURES)"
	$(MAKE) broker
	FEATURES="$(TEST_FEATURES)" bin/test


lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets $(CARGO_FEATURES) -- -D warnings
	bin/lint-elisp

bench: module
	bin/bench

demo:
	bin/demo

clean:
	$(CARGO) clean
	rm -f $(MODULE) lisp/*.elc test/*.elc

# The Rust tests too slow for every run (#[ignore], e.g. a 100,000-entry share through
# shuffled chunks, about a minute in a debug build). .ci/run runs this after `make test`.
.PHONY: test-large
test-large:
	$(CARGO) test --features "$(TEST_FEATURES)" -- --ignored
