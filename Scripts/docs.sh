#!/usr/bin/env bash
# Builds the DocC documentation of the Taps module (Sources/Taps/Taps.docc and the doc comments):
# a warning (a broken link, a misspelt symbol) fails it, and so does a public symbol without a
# doc comment. The archive lands in .build/plugins/Swift-DocC/outputs/Taps.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
log="${TMPDIR:-/tmp}/taps-docs.log"
status=0
swift package generate-documentation --target Taps \
    --experimental-skip-synthesized-symbols --enable-inherited-docs --exclude-extended-types \
    --warnings-as-errors --experimental-documentation-coverage "$@" > "$log" 2>&1 || status=$?
grep -v "Compiling\|prohibited flag" "$log" || true
[[ $status -eq 0 ]] || { echo "the documentation did not build (see above)"; exit 1; }
coverage=.build/plugins/Swift-DocC/outputs/Taps.doccarchive/documentation-coverage.json
python3 - "$coverage" <<'PY'
import json, sys
undocumented = [entry["referencePath"].split("/documentation/", 1)[1]
                for entry in json.load(open(sys.argv[1]))
                if entry["kind"]["isSymbol"] and not entry["hasAbstract"]]
if undocumented:
    print("public symbols without a doc comment:", *undocumented, sep="\n  ")
    sys.exit(1)
PY
