#!/usr/bin/env bash
# The README's test command (npm test): build, then the static checks (lint, format, typecheck) side by side
# with the test suites (unit + integration). Exits non-zero if either part fails.
set -uo pipefail
cd "$(dirname "$0")/.."
npm run build || exit 1
checks_log=$(mktemp)
npm run check >"$checks_log" 2>&1 &
checks=$!
npx vitest run "$@"
tests_status=$?
wait "$checks"
checks_status=$?
echo "== static checks (lint, format, typecheck): exit $checks_status"
if [ "$checks_status" -ne 0 ]; then tail -n 200 "$checks_log"; fi
rm -f "$checks_log"
[ "$tests_status" -eq 0 ] && [ "$checks_status" -eq 0 ]
