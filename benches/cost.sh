#!/usr/bin/env bash
# What a recorded stream and an evidence package cost, in one run: the recorder against a bare
# `gst-launch-1.0` graph and `ffmpeg -c copy -f segment` on the same audio+video streams at 8, 32
# and 64 cameras (examples/bench_record.rs), then `witness export` and `witness verify` against
# `tar -cf` and `sha256sum` on a session of 1 GiB (benches/export.sh). Prints both reports.
# Not a test: nothing here is timed in CI.
# Usage: benches/cost.sh [STREAM COUNTS ..., default 8 32 64]   (SECONDS_PER_COUNT=20, EXPORT_MIB=1024)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(8 32 64)
cargo build --release --examples --bins >&2
echo "## Recorder: ${counts[*]} audio+video streams, ${SECONDS_PER_COUNT:-20} s each"
echo
./target/release/examples/bench_record "${counts[@]}" --seconds "${SECONDS_PER_COUNT:-20}"
echo
echo "## Evidence package: export and verify"
echo
benches/export.sh "${EXPORT_MIB:-1024}"
