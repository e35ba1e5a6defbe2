#!/usr/bin/env bash
# The test command (`make test`): quality gates, then every test tier on the real stack.
# Starts the stack if it is down and, in that case, stops it afterwards and checks that
# no process of ours is left. Extra arguments go to pytest (e.g. -m unit, -k crash).
# LINT_ONLY=1 runs only the quality gates.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lint: ruff"
"$BIN/ruff" check . || exit 1
"$BIN/ruff" format --check . || exit 1
step "types: mypy (strict on libs/)"
"$BIN/mypy" libs services || exit 1
step "contracts: schemas/ match the code"
"$BIN/medstream" schemas check || exit 1
[ "${LINT_ONLY:-0}" = 1 ] && exit 0

# The gateway tests drive dcmtk's DICOM clients (storescu, echoscu), a Debian package.
if ! command -v storescu >/dev/null 2>&1; then
  step "installing the test tools: dcmtk"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null || exit 1
  else
    echo "dcmtk is missing: sudo apt-get install -y dcmtk" >&2
    exit 1
  fi
fi

started=0
if ! "$BIN/medstream" status >/dev/null 2>&1; then
  step "starting the local stack"
  "$BIN/medstream" up || exit 1
  started=1
fi

step "pytest"
"$BIN/pytest" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass." >&2
  rc=1
fi

if [ "$started" -eq 1 ]; then
  step "stopping the stack this run started"
  "$BIN/medstream" down || rc=1
  "$BIN/medstream" stack leftovers || rc=1
fi
exit "$rc"
