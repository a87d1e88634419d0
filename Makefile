# meta-log-federation: build, test, benchmark.  `make help` lists the targets.
EMACS ?= emacs
CARGO ?= cargo
# The default build includes TLS (mqtts://); FEATURES adds more, NO_TLS=1 leaves TLS out.
FEATURES ?=
NO_TLS ?=
CARGO_FEATURES = $(if $(strip $(NO_TLS)),--no-default-features,) $(if $(strip $(FEATURES)),--features "$(FEATURES)",)
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
MODULE = lisp/meta-log-federation-module.so
ELS = $(wildcard lisp/*.el)

.PHONY: all module broker help test test-federation test-module-assertions lint bench demo docker-check clean

all: module

help:
	@echo "make            build the native module into lisp/ (release; TLS for mqtts:// included)"
	@echo "make broker     build the local MQTT broker, target/release/meta-log-broker"
	@echo "make test       cargo test, lint, Docker file checks, every ert suite (private brokers)"
	@echo "make test-federation   only the federation and sync ert suites (./tests/test-federation.sh)"
	@echo "make test-module-assertions   the ert suite under emacs --module-assertions (also in make test)"
	@echo "make lint       cargo fmt --check, clippy, byte-compile, checkdoc"
	@echo "make bench      print throughput and latency figures"
	@echo "make test-links the WebRTC link tests alone (loopback, coturn, NAT namespaces as root with Emacs peers, aiortc)"
	@echo "make demo       two Emacs peers meet through the embedded broker"
	@echo "make docker-check   build the image with podman and run the README's Docker quick start"
	@echo "                (not in make test; RUST_IMAGE=, RUNTIME_IMAGE=, MOSQUITTO_IMAGE= name local images)"
	@echo "NO_TLS=1        build without mqtts:// support (TLS is in the default build)"

# Installed by writing a new file and renaming it: overwriting a loaded .so in
# place crashes a running Emacs.
module:
	$(CARGO) build --release $(CARGO_FEATURES)
	install -m 755 $(TARGET_DIR)/release/libmeta_log_federation_module.so $(MODULE).new
	mv -f $(MODULE).new $(MODULE)

# The local MQTT broker that the first Emacs of a machine starts (broker/). Its own
# binary: `make` and (require 'meta-log-federation) never compile rumqttd.
broker:
	$(CARGO) build --release -p meta-log-broker

# The tests build what `make` builds (TLS included), so mqtts:// is tested. Every Emacs
# they start finds its embedded broker under XDG_RUNTIME_DIR: a directory of the run's
# own, so that no test meets the broker of a person's Emacs, nor one left by an earlier run.
TEST_RUNTIME_DIR = $(TARGET_DIR)/test-runtime
test:
	$(MAKE) module
	$(MAKE) broker
	rm -rf $(TEST_RUNTIME_DIR) && mkdir -p -m 700 $(TEST_RUNTIME_DIR)
	XDG_RUNTIME_DIR="$(abspath $(TEST_RUNTIME_DIR))" FEATURES="$(FEATURES)" bin/test

test-federation:
	tests/test-federation.sh

# The ert suite under `emacs --module-assertions` (make test runs it too, after the plain run).
test-module-assertions:
	$(MAKE) module
	$(MAKE) broker
	rm -rf $(TEST_RUNTIME_DIR) && mkdir -p -m 700 $(TEST_RUNTIME_DIR)
	XDG_RUNTIME_DIR="$(abspath $(TEST_RUNTIME_DIR))" bin/test-module-assertions

# Not part of `make test`: it builds the image (minutes of CPU) and needs podman.
docker-check:
	bin/docker-check


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
	$(CARGO) test $(CARGO_FEATURES) -- --ignored

# The WebRTC link tests alone (loopback, coturn, NAT namespaces as root, aiortc interop); they
# run the example peer, built first, and (nat_emacs) batch Emacs peers with the module.
.PHONY: test-links
test-links: module
	$(CARGO) build $(CARGO_FEATURES) --example link_probe
	$(CARGO) test $(CARGO_FEATURES) --test webrtc_link --test webrtc_nat --test nat_emacs --test webrtc_aiortc
