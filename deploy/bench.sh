#!/usr/bin/env bash
# Measures the worker as it runs in production: nats-server, the DingTalk
# simulator and the worker are separate processes, so the worker's resident
# memory is its own.
#
#   deploy/bench.sh backlog   10,000 events drained by one worker, simulator at zero latency
#   deploy/bench.sh qps       1,000 events with DINGTALK_QPS=20 against a simulator that
#                             refuses more than 20 calls/s per API, with 80 ms latency
#   deploy/bench.sh soak [v1|scene]
#                             EVENTS (10,000) events through 20% busy answers and 2% HTTP
#                             502s, the worker SIGKILLed KILLS (10) times on the way and
#                             restarted; counts results, flags (by cause) and duplicate
#                             groups. DINGTALK_QPS=200 against 8 ms latency puts as many
#                             creates on the wire as 20 calls/s against 80 ms, in a tenth
#                             of the time.
#   deploy/bench.sh shared [second|sliding|halves|bucket] [workers] [kill]
#                             1,000 events, WORKERS (3) workers sharing DINGTALK_QPS=20 against a
#                             simulator limiting each API to 20 calls/s (counted as the model
#                             says) with 80 ms latency + up to 20 ms jitter; "kill" SIGKILLs one
#                             worker a third of the way. Prints the time from the first event
#                             published to the last result (the budget allows 50 s) and the
#                             calls refused. COLD=1 publishes as the workers start (their
#                             start-up in the time) instead of once their shares are up.
#
# Needs only Go; ports 14222 and 18090 on 127.0.0.1 must be free.
set -euo pipefail
mode=${1:-backlog}
family=${2:-v1}
if [ "$mode" = shared ]; then model=${2:-second}; workers=${3:-3}; kill_one=${4:-}; family=v1; fi
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building provisioner and nats-server"
go build -o "$work/provisioner" ./cmd/provisioner
go build -o "$work/nats-server" github.com/nats-io/nats-server/v2

log_level=warn
case "$mode" in
  backlog) events=10000; sim_flags=(); qps=1000000 ;;
  qps) events=1000; sim_flags=(-qps 20 -latency 80ms); qps=20 ;;
  shared) events=1000; sim_flags=(-qps 20 -qps-model "$model" -latency 80ms -jitter 20ms); qps=20 ;;
  soak) events=${EVENTS:-10000}; kills=${KILLS:-10}; sim_flags=(-busy 0.2 -bad-gateway 0.02 -latency 8ms); qps=200; log_level=info ;;
  *) echo "usage: $0 backlog|qps|soak [v1|scene]|shared [model] [workers] [kill]" >&2; exit 2 ;;
esac
case "$family" in
  v1) export DINGTALK_SCENE_TEMPLATE_ID= ;;
  scene) export DINGTALK_SCENE_TEMPLATE_ID=demo-template ;;
  *) echo "usage: $0 backlog|qps|soak [v1|scene]" >&2; exit 2 ;;
esac

"$work/nats-server" -js -sd "$work/js" -a 127.0.0.1 -p 14222 >"$work/nats.log" 2>&1 &
pids+=($!)
"$work/provisioner" sim -addr 127.0.0.1:18090 "${sim_flags[@]}" >"$work/sim.log" 2>&1 &
sim_pid=$!
pids+=($sim_pid)
export NATS_URL=nats://127.0.0.1:14222 DINGTALK_BASE_URL=http://127.0.0.1:18090
export DINGTALK_API_BASE_URL=http://127.0.0.1:18090
export DINGTALK_APP_KEY=demo-key DINGTALK_APP_SECRET=demo-secret DINGTALK_QPS=$qps LOG_LEVEL=$log_level HTTP_ADDR=
if [ "$mode" = soak ]; then export ACK_WAIT=5s; fi # a killed worker's events come back sooner

start_worker() {
  "$work/provisioner" run >>"$work/worker.log" 2>&1 &
  worker_pid=$!
  pids+=($worker_pid)
}
wait_for_stream() {
  for _ in $(seq 100); do
    if "$work/provisioner" load -n 1 -id-prefix warmup -timeout 20s >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "the worker did not come up; its log:" >&2; cat "$work/worker.log" >&2; exit 1
}

echo "== creating the streams (one warm-up event)"
sleep 0.5
start_worker
wait_for_stream
kill -TERM "$worker_pid"; wait "$worker_pid" || true

# progress prints how many results load has counted so far.
progress() {
  grep -oE '^ *[0-9]+/' "$work/load.log" 2>/dev/null | tail -1 | tr -dc 0-9 || true
}

if [ "$mode" = shared ]; then
  echo "== $workers workers sharing 20 calls/s per API, QPS counted per $model; $events events${kill_one:+, one worker SIGKILLed a third of the way}"
  worker_pids=()
  for _ in $(seq "$workers"); do start_worker; worker_pids+=("$worker_pid"); done
  # every worker's share is up 1.2 s after the last one joined; COLD=1 publishes at once instead
  if [ -z "${COLD:-}" ]; then sleep 3; fi
  t0=$(date +%s.%N)
  "$work/provisioner" load -n "$events" -timeout 10m >"$work/load.log" 2>&1 &
  load_pid=$!
  if [ -n "$kill_one" ]; then
    until [ "$(progress)" -ge $((events / 3)) ] 2>/dev/null; do sleep 0.1; done
    kill -KILL "${worker_pids[0]}"; echo "   killed one worker at $(progress) results"
  fi
  wait "$load_pid"
  t1=$(date +%s.%N)
  tail -1 "$work/load.log"
  for p in "${worker_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== from the first event published to the last result: $(awk "BEGIN{printf \"%.2f\", $t1-$t0}") s (the budget allows 50 s)"
  echo "== simulator: $(tail -1 "$work/sim.log")"
  exit 0
fi

if [ "$mode" = soak ]; then
  echo "== $family: starting one worker, publishing $events events, SIGKILLing the worker $kills times"
  start_worker
  "$work/provisioner" load -n "$events" -timeout 20m >"$work/load.log" 2>&1 &
  load_pid=$!
  for k in $(seq "$kills"); do
    until [ "$(progress)" -ge $((k * events / (kills + 1))) ] 2>/dev/null; do
      kill -0 "$load_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$worker_pid"; wait "$worker_pid" 2>/dev/null || true
    echo "   kill $k at $(progress) results"
    start_worker
  done
  wait "$load_pid"
  tail -1 "$work/load.log"
  kill -TERM "$worker_pid"; wait "$worker_pid" || true
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== simulator: $(tail -1 "$work/sim.log")"
  flagged() { grep '"possible_duplicate":true' "$work/worker.log" | grep -F "$1" | grep -oE '"event_id":"[^"]*"' | sort -u | wc -l; }
  echo "== flags by cause: $(flagged 'on the wire') by kills ($(awk "BEGIN{printf \"%.1f\", $(flagged 'on the wire')/$kills}") a kill), $(flagged 'HTTP 502') by 502 answers"
  exit 0
fi

if [ "$mode" = backlog ]; then
  echo "== publishing a backlog of $events events, then starting one worker"
  "$work/provisioner" load -n "$events" -timeout 10m >"$work/load.log" 2>&1 &
  load_pid=$!
  until grep -q '^published' "$work/load.log" 2>/dev/null; do sleep 0.2; done
  start_worker
else
  echo "== starting one worker, then publishing $events events"
  start_worker
  "$work/provisioner" load -n "$events" -timeout 10m >"$work/load.log" 2>&1 &
  load_pid=$!
fi
tail -f "$work/load.log" &
tail_pid=$!
wait "$load_pid"
kill "$tail_pid" 2>/dev/null || true

echo "== worker process: $(grep -E 'VmHWM|VmRSS' /proc/$worker_pid/status | tr -s ' \n' ' ')"
kill -TERM "$worker_pid"; wait "$worker_pid" || true
kill -TERM "$sim_pid"; wait "$sim_pid" || true
echo "== simulator: $(tail -1 "$work/sim.log")"
if grep -q '"level":"error"' "$work/worker.log"; then
  echo "== worker errors:"; grep '"level":"error"' "$work/worker.log" | head -5
fi
