#!/usr/bin/env bash
# Evidence-package benchmark: records a session of at least 1 GiB (32 looped 1080p cameras), then
# measures in the same run
#   - `witness export` against `tar` of the same stored objects,
#   - `witness verify PACKAGE` (SHA-256 + SM3 + chains + signatures) against `sha256sum` of the
#     same bytes, with `openssl speed sha256` as the ceiling,
# as throughput and ratios, with peak RSS. Warm page cache for every run, and nothing left to
# write back before each.
# Usage: benches/export.sh [MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/.."
target_mib=${1:-1024}
cargo build --release --bins >&2
W=$PWD/target/release/witness
dir=$(mktemp -d)
pids=()
# EXPORT_BENCH_KEEP=1 keeps the session and packages (their folder is printed) for profiling.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${EXPORT_BENCH_KEEP:-0}" = 1 ]; then echo "kept: $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rtsp=$(port); http=$(port)
cat > "$dir/witness.toml" <<TOML
data_dir = "$dir/data"
[http]
listen = "127.0.0.1:$http"
[recording]
pipelines_dir = "$PWD/pipelines"
[retention]
policies_dir = "$PWD/storage-policies"
TOML
"$W" simulate --looped --audio none --cameras 32 --microphones 0 --width 1920 --height 1080 --bitrate 8000 --port "$rtsp" >/dev/null 2>&1 &
pids+=($!)
RUST_LOG=warn "$W" serve --config "$dir/witness.toml" >/dev/null 2>&1 &
pids+=($!)
api="http://127.0.0.1:$http/api/v1"
until curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$rtsp) 2>/dev/null; do sleep 0.5; done
# Accounts, made with the CLI as an operator would: a system administrator sets the room up,
# staff record.
"$W" user add bench-admin --role system_administrator --config "$dir/witness.toml" >/dev/null
"$W" user add bench-staff --role witness_staff --config "$dir/witness.toml" >/dev/null
admin=$("$W" token --user bench-admin --name bench --days 1 --config "$dir/witness.toml")
staff=$("$W" token --user bench-staff --name bench --days 1 --config "$dir/witness.toml")
sources=$(python3 -c "import json; print(json.dumps([{'name': f'cam{i}', 'url': 'rtsp://127.0.0.1:$rtsp/cam%d' % i, 'media': 'video'} for i in range(1, 33)]))")
room=$(curl -sf -X POST "$api/rooms" -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d "{\"name\":\"bench\",\"kind\":\"other\",\"sources\":$sources}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
session=$(curl -sf -X POST "$api/rooms/$room/start" -H "Authorization: Bearer $staff" -H 'content-type: application/json' -d '{"project_code":"BENCH","session_code":"EXPORT","kind":"other","reason":"benchmark"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
while :; do
  bytes=$(curl -sf -H "Authorization: Bearer $staff" "$api/sessions/$session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
  [ "$bytes" -ge $((target_mib * 1048576)) ] && break
  sleep 2
done
curl -sf -X POST -H "Authorization: Bearer $staff" "$api/rooms/$room/stop" >/dev/null
# The key the verifier is given, as a user takes it from the published list (else UNTRUSTED KEY).
key=$(curl -sf "$api/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["public_key"])')
kill "${pids[@]}" 2>/dev/null || true
pids=()
objects="$dir/data/objects/BENCH/$session"
media_bytes=$(find "$objects" -name '*.ts' -printf '%s\n' | awk '{s+=$1} END {print s}')
segments=$(find "$objects" -name '*.ts' | wc -l)

# Each run starts with nothing left to write back (`sync`), so no contender pays for another's
# output (EXPORT_BENCH_SYNC=0: no sync, as the figures before 2026-11-30 were measured).
measure() {
  [ "${EXPORT_BENCH_SYNC:-1}" = 0 ] || sync
  /usr/bin/time -f "%e %M %U %S" -o "$dir/t" "$@" >/dev/null 2>"$dir/err" || { echo "failed: $*" >&2; cat "$dir/err" >&2; exit 1; }
  read -r e m u sy < "$dir/t"
  echo "$e $m $(python3 -c "print(f'{$u + $sy:.2f}')")"
}
cat "$objects"/*/*.ts > /dev/null  # warm the cache for every contender alike
# Each operation EXPORT_BENCH_RUNS times (default 5), the contenders in turn (export, tar,
# verify, sha256sum, …) so a drift of the machine's speed touches them alike; medians reported.
runs=${EXPORT_BENCH_RUNS:-5}
declare -A T K C
add() { T[$1]+="$2 "; K[$1]+="$3 "; C[$1]+="$4 "; }
for _ in $(seq "$runs"); do
  rm -f "$dir/pkg.tar" "$dir/plain.tar" "$dir/pkg.zip"
  read -r s k c < <(measure "$W" export --config "$dir/witness.toml" --session "$session" --out "$dir/pkg.tar" --reason bench); add ex "$s" "$k" "$c"
  read -r s k c < <(measure tar -cf "$dir/plain.tar" -C "$dir/data/objects" "BENCH/$session"); add tar "$s" "$k" "$c"
  read -r s k c < <(measure "$W" verify "$dir/pkg.tar" --public-key "$key"); add ver "$s" "$k" "$c"
  read -r s k c < <(measure sha256sum "$dir/pkg.tar"); add sha "$s" "$k" "$c"
  read -r s k c < <(measure "$W" export --config "$dir/witness.toml" --session "$session" --out "$dir/pkg.zip" --reason bench); add exz "$s" "$k" "$c"
  read -r s k c < <(measure "$W" verify "$dir/pkg.zip" --public-key "$key"); add verz "$s" "$k" "$c"
  read -r s k c < <(measure sha256sum "$dir/pkg.zip"); add shaz "$s" "$k" "$c"
done
"$W" verify "$dir/pkg.tar" --public-key "$key" >/dev/null || { echo "package does not verify" >&2; exit 1; }
"$W" verify "$dir/pkg.zip" --public-key "$key" >/dev/null || { echo "zip package does not verify" >&2; exit 1; }
med() { python3 -c "import statistics,sys; v=statistics.median(map(float, sys.argv[1:])); print(f'{v:.2f}' if v < 1000 else int(v))" $1; }
for op in ex tar ver sha exz verz shaz; do
  printf -v "${op}_s" '%s' "$(med "${T[$op]}")"
  printf -v "${op}_kb" '%s' "$(med "${K[$op]}" | cut -d. -f1)"
  printf -v "${op}_cpu" '%s' "$(med "${C[$op]}")"
done
ossl=$(openssl speed -seconds 3 -bytes 1048576 sha256 2>/dev/null | awk '/^sha256/ {print $2}' | tr -d k)
ossl_sm3=$(openssl speed -seconds 3 -bytes 1048576 -evp sm3 2>/dev/null | awk '/^sm3/ {print $2}' | tr -d k)
mib() { python3 -c "print(f'{$media_bytes / 1048576 / max($1, 1e-3):.0f}')"; }
ratio() { python3 -c "print(f'{$1 / max($2, 1e-3):.2f}')"; }
echo "session: $segments segments, $((media_bytes / 1048576)) MiB of media; medians of $runs runs each"
echo
echo "| operation | seconds | CPU s | MiB/s | peak RSS MiB | baseline | baseline s | baseline CPU s | baseline MiB/s | time ratio |"
echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"
echo "| witness export | $ex_s | $ex_cpu | $(mib "$ex_s") | $((ex_kb / 1024)) | tar -cf | $tar_s | $tar_cpu | $(mib "$tar_s") | $(ratio "$ex_s" "$tar_s") |"
echo "| witness verify PACKAGE | $ver_s | $ver_cpu | $(mib "$ver_s") | $((ver_kb / 1024)) | sha256sum | $sha_s | $sha_cpu | $(mib "$sha_s") | $(ratio "$ver_s" "$sha_s") |"
echo "| witness export (zip) | $exz_s | $exz_cpu | $(mib "$exz_s") | $((exz_kb / 1024)) | tar -cf | $tar_s | $tar_cpu | $(mib "$tar_s") | $(ratio "$exz_s" "$tar_s") |"
echo "| witness verify PACKAGE (zip) | $verz_s | $verz_cpu | $(mib "$verz_s") | $((verz_kb / 1024)) | sha256sum | $shaz_s | $shaz_cpu | $(mib "$shaz_s") | $(ratio "$verz_s" "$shaz_s") |"
echo
echo "openssl speed sha256 (1 MiB blocks): $(python3 -c "print(f'{$ossl * 1000 / 1048576:.0f}')") MiB/s (ceiling for one SHA-256 pass)"
echo "openssl speed -evp sm3 (1 MiB blocks): $(python3 -c "print(f'{$ossl_sm3 * 1000 / 1048576:.0f}')") MiB/s (one core; the package's SM3 manifest needs a pass over every byte)"
