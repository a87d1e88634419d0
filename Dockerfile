# syntax=docker/dockerfile:1
# meta-log-federation in a container: an Emacs daemon (the container's main process) that
# federates over MQTT when META_LOG_ENABLE_FEDERATION=1.
#
#   docker compose up                        one peer and a mosquitto broker
#   docker compose --profile two-peers up    two peers syncing through it
#   docker run -e META_LOG_ENABLE_FEDERATION=1 IMAGE
#                                            one peer on the embedded broker (no compose)
#
# bin/check-docker (run by `make test`) checks this file without a Docker engine.

# The crate needs Rust >= 1.90; the runtime's glibc must be at least the build stage's,
# so both stages are bookworm.
ARG RUST_IMAGE=rust:1.90-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Extra cargo features, if any: the default build already includes TLS (mqtts://).
ARG FEATURES=
WORKDIR /src
COPY . .
# The Makefile's own targets, so the image cannot drift from what the tests build:
# `make module` builds the release module and installs lisp/meta-log-federation-module.so,
# `make broker` builds target/release/meta-log-broker. target/ is a cache mount, so the
# broker binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    make module broker FEATURES="$FEATURES" \
 && install -D -m 755 target/release/meta-log-broker /out/meta-log-broker

FROM ${RUNTIME_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards docker stop's SIGTERM to Emacs (which then runs
# kill-emacs-hook: a clean MQTT goodbye) and reaps orphans such as a detached broker.
RUN apt-get update \
 && apt-get install -y --no-install-recommends emacs-nox mosquitto-clients tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The package, its native module and the embedded broker, where the README's command
# finds them: (add-to-list 'load-path "/root/.emacs.d/meta-log").
COPY --from=build /src/lisp/ /root/.emacs.d/meta-log/
COPY --from=build /out/meta-log-broker /root/.emacs.d/meta-log/meta-log-broker
COPY docker/init.el /root/.emacs.d/init.el
COPY --chmod=755 docker/healthcheck /usr/local/bin/meta-log-healthcheck

# Identity and synced files live in volumes, outside the package directory (where the
# package would keep them by default), so that a new image never runs with an old package
# and a peer keeps its identity, trust decisions and merge history across containers.
# The package reads these variables itself (docker/init.el only loads it), also in a batch
# Emacs run with `docker compose exec`, which starts no peer of its own.
ENV META_LOG_ENABLE_FEDERATION=0 \
    META_LOG_MQTT_BROKER="" \
    META_LOG_IDENTITY_FILE=/var/lib/meta-log/identity/peer-identity.org \
    META_LOG_SYNC_DIRECTORY=/var/lib/meta-log/sync/files \
    META_LOG_SYNC_STATE_DIRECTORY=/var/lib/meta-log/sync/state \
    META_LOG_FEDERATION_BLACKBOARD=/var/lib/meta-log/sync/blackboard.org
RUN mkdir -p /var/lib/meta-log/identity /var/lib/meta-log/sync \
 && chmod 700 /var/lib/meta-log/identity
VOLUME ["/var/lib/meta-log/identity", "/var/lib/meta-log/sync"]

# Fail the build, not the container, if the package does not load as documented.
RUN emacs --batch -eval "(add-to-list 'load-path \"/root/.emacs.d/meta-log\")" \
          -eval "(require 'meta-log-federation)" -eval "(princ \"Federation loaded\\n\")"

# Healthy when the daemon answers and, with federation on, (meta-log-federation-connected-p).
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/meta-log-healthcheck"]

WORKDIR /root
ENTRYPOINT ["/usr/bin/tini", "--"]
# The Emacs daemon in the foreground is the container's main process.
CMD ["emacs", "--fg-daemon"]
