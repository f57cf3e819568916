#!/usr/bin/env bash
# expect_error.sh EXIT_CODE REGEX -- COMMAND...
# Runs COMMAND; passes when it exits with EXIT_CODE, prints exactly one line on stderr, and that
# line matches REGEX (extended). Anything else fails with an explanation.
set -u
want_code=$1; regex=$2; shift 3
err=$(mktemp)
"$@" >/dev/null 2>"$err"
code=$?
lines=$(grep -c '' "$err")
msg=$(cat "$err"); rm -f "$err"
if [ "$code" != "$want_code" ]; then echo "FAIL: exit code $code, expected $want_code; stderr: $msg"; exit 1; fi
if [ "$lines" != 1 ]; then echo "FAIL: expected one line on stderr, got $lines: $msg"; exit 1; fi
if ! grep -Eq -- "$regex" <<<"$msg"; then echo "FAIL: stderr '$msg' does not match /$regex/"; exit 1; fi
echo "ok: $msg"
