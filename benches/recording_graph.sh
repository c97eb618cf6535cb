#!/usr/bin/env bash
# Where a recorded stream's CPU goes, stage by stage: the same N audio+video RTSP streams from the
# simulator's looped mode (1080p25 H.264 ~4 Mbit/s + AAC) are received by `gst-launch-1.0` graphs
# that stop at successive stages of Witness's recording graph, and by `ffmpeg -c copy -f segment`:
#   rtp       rtspsrc (TCP, jitterbuffer in slave mode) → fakesink: receiving RTP alone
#   depay     + depayloaders only (H.264 byte-stream access units, raw AAC) → fakesink: what
#             the timestamper and parsers cost, against `parsed`
#   parsed    + depayloaders, h264timestamper, h264parse, aacparse → fakesink
#   before    + a queue per stream → splitmuxsink (mpegtsmux, 2.1 s): the graph before issue 16
#   mux       + one long-lived mpegtsmux (alignment=7) → filesink, no segmenting: what the muxer
#             costs, and so what cutting segments without splitmuxsink could at best save
#   witness   + splitmuxsink without the extra queue, mpegtsmux alignment=7: the graph now
#   own       the `parsed` graph into appsinks and Witness's own MPEG-TS writer
#             (examples/ts_graph.rs, src/capture/ts_writer.rs), one file per stream, no segmenting:
#             what replacing mpegtsmux would save, against `mux`
#   retina    no GStreamer: the `retina` crate's RTSP/RTP client → `capture::ts_segments`, 2 s
#             files, one tokio task per camera in one process (examples/retina_graph.rs)
#   ffmpeg    one `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 2` per stream
# Each is measured ROUNDS times, alternating, as CPU % of one core over SECONDS after a warm-up,
# with the segment files and the bitrate it wrote meanwhile (proof that it recorded).
# VARIANTS="rtp mux ffmpeg" measures only those. Witness's own work on top of the graph (hashing,
# storing, indexing) is measured by examples/bench_record.rs.
# Usage: benches/recording_graph.sh [N=16] [SECONDS=10] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-16}; secs=${2:-10}; rounds=${3:-2}
cargo build --release --bins --examples >&2
W=$PWD/target/release/witness
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$W" simulate --looped --cameras "$n" --microphones 0 --width 1920 --height 1080 --bitrate 4000 --audio aac --port "$port" >/dev/null 2>&1 &
pids+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.5; done
sleep 2
tck=$(getconf CLK_TCK)

cpu_of() { # CPU ticks of a set of processes
  local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t
}

graph() { # the gst-launch arguments of variant $1 for stream $2 writing into $3
  local v=$1 i=$2 out=$3
  local src="rtspsrc name=s$i location=rtsp://127.0.0.1:$port/cam$((i+1)) protocols=tcp latency=200 buffer-mode=slave"
  local vp="s$i. ! application/x-rtp,media=video"
  local ap="s$i. ! application/x-rtp,media=audio"
  local parse_v="rtph264depay ! h264timestamper ! h264parse config-interval=-1"
  local parse_a="rtpmp4gdepay ! aacparse"
  local sink="location=$out/g${i}_%05d.ts max-size-time=2100000000"
  case $v in
    rtp) echo "$src $vp ! fakesink sync=false async=false $ap ! fakesink sync=false async=false" ;;
    depay) echo "$src $vp ! rtph264depay ! video/x-h264,stream-format=byte-stream,alignment=au ! fakesink sync=false async=false $ap ! rtpmp4gdepay ! fakesink sync=false async=false" ;;
    parsed) echo "$src $vp ! $parse_v ! fakesink sync=false async=false $ap ! $parse_a ! fakesink sync=false async=false" ;;
    before) echo "$src $vp ! $parse_v ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 ! m$i.video $ap ! $parse_a ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000 ! m$i.audio_0 splitmuxsink name=m$i muxer=mpegtsmux $sink" ;;
    mux) echo "$src $vp ! $parse_v ! x$i.sink_65 $ap ! $parse_a ! x$i.sink_66 mpegtsmux name=x$i alignment=7 ! filesink async=false location=$out/m$i.ts" ;;
    witness) echo "$src $vp ! $parse_v ! m$i.video $ap ! $parse_a ! m$i.audio_0 splitmuxsink name=m$i muxer=\"mpegtsmux alignment=7\" $sink" ;;
  esac
}

run() { # variant → "cpu% files"
  local v=$1 out="$dir/out-$v-$RANDOM"; mkdir -p "$out"
  local ps=()
  if [ "$v" = own ] || [ "$v" = retina ]; then
    local urls=()
    for i in $(seq 0 $((n-1))); do urls+=("rtsp://127.0.0.1:$port/cam$((i+1))"); done
    local example=ts_graph
    [ "$v" = retina ] && example=retina_graph
    "$PWD/target/release/examples/$example" "$out" "${urls[@]}" >/dev/null 2>&1 &
    ps+=($!)
  elif [ "$v" = ffmpeg ]; then
    for i in $(seq 0 $((n-1))); do
      ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "rtsp://127.0.0.1:$port/cam$((i+1))" -c copy -f segment -segment_time 2 "$out/f${i}_%05d.ts" >/dev/null 2>&1 &
      ps+=($!)
    done
  else
    local args=""
    for i in $(seq 0 $((n-1))); do args="$args $(graph "$v" "$i" "$out")"; done
    # eval: the witness graph quotes its muxer's description.
    eval "gst-launch-1.0 -q $args >/dev/null 2>&1 &"
    ps+=($!)
  fi
  pids+=("${ps[@]}")
  sleep 6
  local c0 f0 c1 f1
  c0=$(cpu_of "${ps[@]}"); f0=$(find "$out" -type f | wc -l); b0=$(du -sb "$out" | cut -f1)
  sleep "$secs"
  c1=$(cpu_of "${ps[@]}"); f1=$(find "$out" -type f | wc -l); b1=$(du -sb "$out" | cut -f1)
  kill "${ps[@]}" 2>/dev/null || true
  wait "${ps[@]}" 2>/dev/null || true
  rm -rf "$out"
  echo "$(echo "scale=1; ($c1-$c0)*100/$tck/$secs" | bc) $((f1-f0)) $(((b1-b0)*8/secs/1000000))"
  sleep 3
}

echo "$n streams of 1080p25 H.264 ~4 Mbit/s + AAC over RTSP/TCP, $secs s measured, $rounds rounds, $(date -u +%F)"
echo
echo "| round | graph | CPU % of one core | per stream | segment files written | Mbit/s written |"
echo "|---:|---|---:|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
  for v in ${VARIANTS:-rtp parsed before mux witness ffmpeg}; do
    read -r cpu files mbps < <(run "$v")
    echo "| $r | $v | $cpu | $(echo "scale=2; $cpu/$n" | bc) | $files | $mbps |"
  done
done
