#!/usr/bin/env bash
# make demo: a real passthrough session in the test guest (tests/guest/demo.py narrates it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/guest/demo.py" "${1:-build}"
