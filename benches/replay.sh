#!/usr/bin/env bash
# Replay benchmark: records one session of MINUTES minutes (real time: it takes that long) from a
# room of 4 looped 1080p25 H.264 cameras (~4 Mbit/s, 2 s segments), stops it, restarts the server
# (a cold server process, as after a night) and opens the session's replay page in headless
# Chromium (web/tests/replay-bench.mjs) as a discipline officer, measuring
#   - time from navigation to the first decoded frame of every camera (three cold page loads),
#   - time from a seek by wall clock (near the middle, near the end) until every camera has a
#     decoded frame at the new position, repeated, median and max,
#   - the server's response times (to first byte) for the page's API calls, playlists and
#     segments as the browser saw them.
# Prints a markdown table. Not a test: nothing here is timed in CI.
#
# Usage: benches/replay.sh [MINUTES, default 60] [DIR]
#   WITNESS_BIN=path: use that witness binary instead of building one.
#   DIR (optional) keeps the recorded data; when DIR already holds a recorded session, recording
#   is skipped and only the browser measurement runs again (e.g. after a server change).
# The whole script is one function, read before it runs: editing this file while a run records
# does not change the run.
main() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  minutes=${1:-60}
  keep=${2:-}
  if [ -n "${WITNESS_BIN:-}" ]; then
    W=$(realpath "$WITNESS_BIN") # another build of witness, e.g. to compare before and after
  else
    cargo build --release --bins >&2
    W=$PWD/target/release/witness
  fi
  if [ -n "$keep" ]; then
    mkdir -p "$keep"
    dir=$(cd "$keep" && pwd)
  else
    dir=$(mktemp -d)
  fi
  pids=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ ! -f "$dir/recorded.env" ]; then
    record
  else
    echo "reusing the session recorded in $dir" >&2
  fi
  # shellcheck disable=SC1091
  source "$dir/recorded.env"
  measure
}

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${keep:-}" ]; then rm -rf "$dir"; fi
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A config on a fresh HTTP port over the same data folder.
configure() {
  http=$(port)
  cat >"$dir/witness.toml" <<TOML
data_dir = "$dir/data"
[http]
listen = "127.0.0.1:$http"
[recording]
pipelines_dir = "$PWD/pipelines"
segment_seconds = 2.0
[retention]
policies_dir = "$PWD/storage-policies"
TOML
  api="http://127.0.0.1:$http/api/v1"
}

serve() {
  RUST_LOG=warn "$W" serve --config "$dir/witness.toml" >>"$dir/serve.log" 2>&1 &
  pids+=($!)
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$http/healthz" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "witness serve did not start; log:" >&2; tail -20 "$dir/serve.log" >&2; exit 1; }
    sleep 0.3
  done
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

record() {
  configure
  local rtsp
  rtsp=$(port)
  "$W" simulate --looped --cameras 4 --microphones 0 --width 1920 --height 1080 --bitrate 4000 --port "$rtsp" >"$dir/simulate.log" 2>&1 &
  pids+=($!)
  local sim=$!
  serve
  local deadline=$((SECONDS + 60))
  until (exec 3<>"/dev/tcp/127.0.0.1/$rtsp") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "the simulator did not start" >&2; exit 1; }
    sleep 0.3
  done
  local c="--config $dir/witness.toml"
  # shellcheck disable=SC2086
  {
    "$W" user add bench-admin --role system_administrator $c >/dev/null
    "$W" user add bench-staff --role witness_staff $c >/dev/null
  }
  local admin staff sources room session
  admin=$("$W" token --user bench-admin --name bench --days 2 --config "$dir/witness.toml")
  staff=$("$W" token --user bench-staff --name bench --days 2 --config "$dir/witness.toml")
  sources=$(python3 -c "import json; print(json.dumps([{'name': f'cam{i}', 'url': 'rtsp://127.0.0.1:$rtsp/cam%d' % i, 'media': 'video'} for i in range(1, 5)]))")
  room=$(curl -sf -X POST "$api/rooms" -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"name\":\"replay-bench\",\"kind\":\"other\",\"sources\":$sources}" | json 'd["id"]')
  session=$(curl -sf -X POST "$api/rooms/$room/start" -H "Authorization: Bearer $staff" -H 'content-type: application/json' \
    -d '{"project_code":"BENCH","session_code":"REPLAY","kind":"other","reason":"benchmark"}' | json 'd["id"]')
  echo "recording session $session for $minutes min (until $(date -d "+$minutes min" +%H:%M:%S))" >&2
  local until=$((SECONDS + minutes * 60)) next=$((SECONDS + 300))
  while [ $SECONDS -lt $until ]; do
    sleep 5
    if [ $SECONDS -ge $next ]; then
      next=$((SECONDS + 300))
      echo "  $(date +%H:%M:%S) $(curl -sf -H "Authorization: Bearer $staff" "$api/sessions/$session" |
        json '" ".join(r["source"] + ":" + str(len(r["segments"])) for r in d["recordings"])')" >&2
    fi
  done
  curl -sf -X POST -H "Authorization: Bearer $staff" "$api/rooms/$room/stop" >/dev/null
  deadline=$((SECONDS + 60))
  until [ "$(curl -sf -H "Authorization: Bearer $staff" "$api/sessions/$session" | json 'd["state"]')" = stopped ]; do
    [ $SECONDS -lt $deadline ] || { echo "the session did not stop" >&2; exit 1; }
    sleep 1
  done
  curl -sf -H "Authorization: Bearer $staff" "$api/sessions/$session" >"$dir/session.json"
  kill "${pids[@]}" 2>/dev/null || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  printf 'session=%q\nminutes=%q\n' "$session" "$minutes" >"$dir/recorded.env"
}

measure() {
  configure
  serve
  # The viewer: a discipline officer (may replay; no second factor required), with a new
  # one-time password on every run.
  local password
  if "$W" user add bench-viewer --role discipline_officer --config "$dir/witness.toml" >"$dir/user.txt" 2>&1; then
    password=$(sed -n 's/^one-time password: //p' "$dir/user.txt")
  else
    password=$("$W" user reset bench-viewer --config "$dir/witness.toml" | sed -n 's/^one-time password for [^:]*: //p')
  fi
  local described
  described=$(json '"; ".join(r["source"] + ": " + str(len(r["segments"])) + " segments, " + format(sum(x["duration_seconds"] for x in r["segments"]) / 60, ".1f") + " min, " + str(len(r["gaps"])) + " gaps" for r in d["recordings"])' <"$dir/session.json")
  local bytes
  bytes=$(json 'd["bytes"]' <"$dir/session.json")
  echo "session $session: $minutes min recorded, 4 cameras 1920x1080 25 fps H.264 ~4 Mbit/s (looped clip), 2 s segments, $((bytes / 1048576)) MiB"
  echo "  $described"
  echo
  local before
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  node web/tests/replay-bench.mjs "http://127.0.0.1:$http" "$session" bench-viewer "$password" "$dir/artefacts"
  echo "load average (1, 5, 15 min) on this machine: $before before the browser, $(cut -d' ' -f1-3 /proc/loadavg) after; $(nproc) cores"
}

main "$@"; exit $?
