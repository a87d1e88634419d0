#!/usr/bin/env bash
# The older project's test command, kept for the people who know it: the federation and sync
# ert suites (and the README walkthrough) in batch Emacs against a private broker that the
# suites start on a free port of 127.0.0.1, then stop. The full suite (Rust tests, lint,
# Docker file checks, every ert suite) is `make test`.
#
#   ./tests/test-federation.sh                 mosquitto if installed, else the embedded broker
#   META_LOG_TEST_BROKER=embedded ./tests/test-federation.sh     the project's own broker
#   ./tests/test-federation.sh --no-build      skip `make module broker` (bin/test does)
set -euo pipefail
cd "$(dirname "$0")/.."
EMACS=${EMACS:-emacs}

if [ "${1:-}" != --no-build ]; then
  echo "== make module broker (quick when nothing changed)"
  make --no-print-directory module broker
fi

if [ -z "${META_LOG_TEST_BROKER:-}" ] && ! command -v mosquitto >/dev/null \
     && [ ! -x /usr/sbin/mosquitto ]; then
  echo "== mosquitto is not installed: using the embedded broker (apt-get install mosquitto for both)"
  export META_LOG_TEST_BROKER=embedded
fi

# Every Emacs of the run finds its embedded broker under this private runtime directory,
# never a person's own broker.
runtime=$(mktemp -d)
trap 'rm -rf "$runtime"' EXIT
export XDG_RUNTIME_DIR=$runtime

echo "== ert federation, sync and walkthrough suites (broker: ${META_LOG_TEST_BROKER:-mosquitto})"
status=0
"$EMACS" --batch -Q -L lisp -L test -l test/run-tests.el '^\(federation\|sync\|walkthrough\)::' \
  || status=$?
echo "== the full suite (Rust tests, lint, Docker file checks, every ert suite) is: make test"
exit $status
