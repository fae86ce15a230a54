#!/usr/bin/env bash
# Measures the worker as it runs in production: nats-server, the DingTalk
# simulator and the worker are separate processes, so the worker's resident
# memory is its own.
#
#   deploy/bench.sh backlog   10,000 events drained by one worker, simulator at zero latency
#   deploy/bench.sh ratio     RUNS (3) runs side by side, each: a backlog of EVENTS (10,000) drained by
#                             the bare pipeline (deploy/barepipe: pull, create, link, publish, ack; no
#                             records, no budget), then the same backlog drained by one worker, DingTalk
#                             answering at once. Prints both rates and the worker's ratio to the bare one.
#   deploy/bench.sh qps       1,000 events with DINGTALK_QPS=20 against a simulator that
#                             refuses more than 20 calls/s per API, with 80 ms latency
#   deploy/bench.sh soak [v1|scene]
#                             EVENTS (10,000) events through 20% busy answers and 2% HTTP
#                             502s, the worker SIGKILLed KILLS (10) times on the way and
#                             restarted; counts results, flags (by cause) and duplicate
#                             groups. DINGTALK_QPS=200 against 8 ms latency puts as many
#                             creates on the wire as 20 calls/s against 80 ms, in a tenth
#                             of the time.
#   deploy/bench.sh lifecycle [v1|scene]
#                             EVENTS (2,000) projects, each a creation and 3 updates published
#                             shuffled, then a close each; 20% busy answers; a simulator that
#                             refuses to add a present member, remove an absent one, or add and
#                             transfer in one call; the worker SIGKILLed KILLS (10) times. load
#                             reads every group back through DingTalk's API at the end.
#   deploy/bench.sh shared [second|sliding|halves|bucket] [workers] [kill]
#                             1,000 events, WORKERS (3) workers sharing DINGTALK_QPS=20 against a
#                             simulator limiting each API to 20 calls/s (counted as the model
#                             says) with 80 ms latency + up to 20 ms jitter; "kill" SIGKILLs one
#                             worker a third of the way. Prints the time from the first event
#                             published to the last result (the budget allows 50 s) and the
#                             calls refused. COLD=1 publishes as the workers start (their
#                             start-up in the time) instead of once their shares are up;
#                             BACKLOG=1 publishes first and times from the workers' process start.
#   deploy/bench.sh upgrade   the previous release (PREV, default 91a7469: the last before project
#                             records) built from git, on a producer's stream HR_EVENTS capturing
#                             project.created and event.scheduled, provisions EVENTS (200) projects;
#                             then this release starts on what it left and provisions one more; the
#                             lifecycle subjects are added to HR_EVENTS (no restart), and every old
#                             project is updated (a new owner) and closed. Prints the results, the
#                             groups made (0 second groups wanted) and how soon the subjects were taken.
#   deploy/bench.sh cluster   three nats-server processes clustered on loopback, NATS_REPLICAS=3,
#                             two workers, EVENTS (2,000) events; the node leading the events
#                             stream is SIGKILLed KILL_AFTER (3) seconds in and never restarted.
#                             Prints lost, failed, flagged, duplicate groups and the longest
#                             gap between two results. REPLICAS=1 shows what the setting prevents.
#
# Needs only Go (and curl for cluster); ports 14222 and 18090 on 127.0.0.1 must be free
# (cluster: 14221-14223, 16221-16223 and 18221-18223 too).
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
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

echo "== building provisioner and nats-server"
go build -o "$work/provisioner" ./cmd/provisioner
go build -o "$work/nats-server" github.com/nats-io/nats-server/v2
go build -o "$work/barepipe" ./deploy/barepipe

log_level=warn
case "$mode" in
  backlog) events=10000; sim_flags=(); qps=1000000 ;;
  ratio) events=${EVENTS:-10000}; runs=${RUNS:-3}; sim_flags=(); qps=1000000 ;;
  qps) events=1000; sim_flags=(-qps 20 -latency 80ms); qps=20 ;;
  shared) events=1000; sim_flags=(-qps 20 -qps-model "$model" -latency 80ms -jitter 20ms); qps=20; log_level=${LOG_LEVEL:-warn} ;;
  soak) events=${EVENTS:-10000}; kills=${KILLS:-10}; sim_flags=(-busy 0.2 -bad-gateway 0.02 -latency 8ms); qps=200; log_level=info ;;
  cluster) events=${EVENTS:-2000}; sim_flags=(-latency 8ms); qps=200; log_level=info ;;
  upgrade) events=${EVENTS:-200}; sim_flags=(-latency 8ms); qps=200; log_level=info ;;
  lifecycle) events=${EVENTS:-2000}; kills=${KILLS:-10}; qps=200; log_level=info
    sim_flags=(-busy 0.2 -latency 8ms -refuse-existing-members -refuse-absent-removals -refuse-owner-added-in-same-call) ;;
  *) echo "usage: $0 backlog|ratio|qps|soak [v1|scene]|lifecycle [v1|scene]|shared [model] [workers] [kill]|cluster|upgrade" >&2; exit 2 ;;
esac
case "$family" in
  v1) export DINGTALK_SCENE_TEMPLATE_ID= ;;
  scene) export DINGTALK_SCENE_TEMPLATE_ID=demo-template ;;
  *) echo "usage: $0 backlog|qps|soak [v1|scene]" >&2; exit 2 ;;
esac

if [ "$mode" = cluster ]; then
  routes=nats://127.0.0.1:16221,nats://127.0.0.1:16222,nats://127.0.0.1:16223
  node_pids=()
  for i in 1 2 3; do
    "$work/nats-server" -n "n$i" -js -sd "$work/js$i" -a 127.0.0.1 -p "1422$i" -m "1822$i" \
      --cluster_name bench --cluster "nats://127.0.0.1:1622$i" --routes "$routes" >"$work/nats$i.log" 2>&1 &
    pids+=($!); node_pids+=($!)
  done
else
  "$work/nats-server" -js -sd "$work/js" -a 127.0.0.1 -p 14222 >"$work/nats.log" 2>&1 &
  pids+=($!); nats_pid=$!
fi
"$work/provisioner" sim -addr 127.0.0.1:18090 "${sim_flags[@]}" >"$work/sim.log" 2>&1 &
sim_pid=$!
pids+=($sim_pid)
export NATS_URL=nats://127.0.0.1:14222 DINGTALK_BASE_URL=http://127.0.0.1:18090
export DINGTALK_API_BASE_URL=http://127.0.0.1:18090
export DINGTALK_APP_KEY=demo-key DINGTALK_APP_SECRET=demo-secret DINGTALK_QPS=$qps LOG_LEVEL=$log_level HTTP_ADDR=
if [ "$mode" = soak ] || [ "$mode" = lifecycle ]; then export ACK_WAIT=5s; fi # a killed worker's events come back sooner
if [ "$mode" = cluster ]; then
  export NATS_URL=nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223 NATS_REPLICAS=${REPLICAS:-3}
fi

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

if [ "$mode" = upgrade ]; then
  prev=${PREV:-91a7469}
  echo "== building the previous release ($prev) from git"
  mkdir -p "$work/prev"
  git archive "$prev" | tar -x -C "$work/prev"
  (cd "$work/prev" && go build -o "$work/provisioner-prev" ./cmd/provisioner)
  creations=project.created,event.scheduled
  lifecycle_subjects=$creations,project.updated,event.updated,project.closed,event.cancelled
  "$work/provisioner" load -producer-stream "HR_EVENTS=$creations" -n 0
  echo "== the previous release provisions $events projects from HR_EVENTS"
  "$work/provisioner-prev" run >>"$work/prev.log" 2>&1 &
  prev_pid=$!; pids+=($prev_pid)
  "$work/provisioner" load -n "$events" -id-prefix old -project-prefix UP -timeout 5m | tail -1
  kill -TERM "$prev_pid"; wait "$prev_pid" || true
  echo "== this release starts on what it left"
  start_worker
  until grep -q 'project records built from step records' "$work/worker.log" 2>/dev/null; do
    kill -0 "$worker_pid" 2>/dev/null || { echo "this release did not start:" >&2; tail -5 "$work/worker.log" >&2; exit 1; }
    sleep 0.2
  done
  grep -o '"subjects":\[[^]]*\]' "$work/worker.log" | head -1 | sed 's/^/   not captured: /'
  grep -o '"projects":[0-9]*' "$work/worker.log" | head -1 | sed 's/^/   project records built: /'
  "$work/provisioner" load -n 1 -id-prefix new -project-prefix NEW -timeout 1m | tail -1
  echo "== the operator adds the lifecycle subjects to HR_EVENTS; the worker is not restarted"
  t0=$(date +%s.%N)
  "$work/provisioner" load -producer-stream "HR_EVENTS=$lifecycle_subjects" -n 0 >/dev/null
  until grep -q 'the consumer now reads every input subject' "$work/worker.log"; do sleep 0.1; done
  echo "   the worker consumes them $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$t0}") s later"
  echo "== updating every old project (a new owner), then closing it"
  "$work/provisioner" load -subject project.updated -n "$events" -id-prefix upd -project-prefix UP -timeout 5m | tail -1
  grep -c '"result":"group.updated"' "$work/worker.log" | sed 's/^/   group.updated results: /'
  "$work/provisioner" load -subject project.closed -n "$events" -id-prefix close -project-prefix UP -timeout 5m | tail -1
  grep -c '"result":"group.closed"' "$work/worker.log" | sed 's/^/   group.closed results: /'
  kill -TERM "$worker_pid"; wait "$worker_pid" || true
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== simulator: $(tail -1 "$work/sim.log")"
  echo "   groups wanted: $((events + 1)) ($events by the previous release, 1 by this one); more is a second group"
  exit 0
fi

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
  if [ -n "${BACKLOG:-}" ]; then
    # the issue's measure: the events wait in the stream, the time runs from the workers' process start;
    # a cold start: no worker has called DingTalk for a while (the warm-up worker left 6 s before)
    sleep 6
    "$work/provisioner" load -n "$events" -timeout 10m >"$work/load.log" 2>&1 &
    load_pid=$!
    until grep -q '^published' "$work/load.log" 2>/dev/null; do sleep 0.2; done
    t0=$(date +%s.%N)
    for _ in $(seq "$workers"); do start_worker; worker_pids+=("$worker_pid"); done
  else
    for _ in $(seq "$workers"); do start_worker; worker_pids+=("$worker_pid"); done
    # every worker's share is up 1.2 s after the last one joined; COLD=1 publishes at once instead
    if [ -z "${COLD:-}" ]; then sleep 3; fi
    t0=$(date +%s.%N)
    "$work/provisioner" load -n "$events" -timeout 10m >"$work/load.log" 2>&1 &
    load_pid=$!
  fi
  if [ -n "$kill_one" ]; then
    until [ "$(progress)" -ge $((events / 3)) ] 2>/dev/null; do sleep 0.1; done
    kill -KILL "${worker_pids[0]}"; echo "   killed one worker at $(progress) results"
  fi
  wait "$load_pid"
  t1=$(date +%s.%N)
  tail -1 "$work/load.log"
  for p in "${worker_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  from="the first event published"
  if [ -n "${BACKLOG:-}" ]; then from="the workers' start"; fi
  echo "== from $from to the last result: $(awk "BEGIN{printf \"%.2f s, %.3f of the 50 s floor\", $t1-$t0, ($t1-$t0)/50}") (the budget allows 50 s)"
  echo "== simulator: $(tail -1 "$work/sim.log")"
  exit 0
fi

# leader names the node (1-3) leading a stream, from a live node's monitoring port.
leader() {
  for i in 1 2 3; do
    name=$(curl -s "http://127.0.0.1:1822$i/jsz?accounts=true&streams=true" 2>/dev/null | tr -d ' \n' |
      grep -o "\"name\":\"$1\",\"created[^}]*\"leader\":\"[^\"]*\"" | grep -o '"leader":"[^"]*"' | cut -d'"' -f4 || true)
    if [ -n "$name" ]; then echo "${name#n}"; return 0; fi
  done
  return 1
}

if [ "$mode" = cluster ]; then
  victim=$(leader PROVISIONER_EVENTS) || { echo "no leader found for PROVISIONER_EVENTS" >&2; exit 1; }
  survivor=$(( victim % 3 + 1 ))
  echo "== three nodes, NATS_REPLICAS=$NATS_REPLICAS, two workers, $events events; n$victim leads the events stream and is SIGKILLed ${KILL_AFTER:-3} s in"
  start_worker; start_worker
  # load watches from a node that survives, so that it sees every result
  NATS_URL=nats://127.0.0.1:1422$survivor "$work/provisioner" load -n "$events" -timeout "${WAIT:-3m}" >"$work/load.log" 2>&1 &
  load_pid=$!
  sleep "${KILL_AFTER:-3}"
  kill -KILL "${node_pids[$((victim - 1))]}"; wait "${node_pids[$((victim - 1))]}" 2>/dev/null || true
  echo "   killed n$victim at $(progress) results"
  if wait "$load_pid"; then tail -1 "$work/load.log"; echo "== lost: 0"; else tail -1 "$work/load.log"; fi
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== simulator: $(tail -1 "$work/sim.log")"
  echo "== worker log: $(grep -c '"level":"error"' "$work/worker.log" || true) error lines, $(grep -c 'pulling events failed' "$work/worker.log" || true) pull failures"
  exit 0
fi

if [ "$mode" = soak ] || [ "$mode" = lifecycle ]; then
  lifecycle=; n=$events
  if [ "$mode" = lifecycle ]; then
    lifecycle=-lifecycle
    echo "== $family: $events projects, each a creation and 3 updates shuffled, then a close; SIGKILLing the worker $kills times"
    events=$((events * 5)) # results, for the kills' spacing
  else
    echo "== $family: starting one worker, publishing $events events, SIGKILLing the worker $kills times"
  fi
  start_worker
  "$work/provisioner" load $lifecycle -n "$n" -timeout 20m >"$work/load.log" 2>&1 &
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
  load_status=0; wait "$load_pid" || load_status=$?
  if [ -n "$lifecycle" ]; then tail -4 "$work/load.log"; else tail -1 "$work/load.log"; fi
  kill -TERM "$worker_pid"; wait "$worker_pid" || true
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== simulator: $(tail -1 "$work/sim.log")"
  if [ "$load_status" -ne 0 ]; then echo "== load failed (exit $load_status)"; exit 1; fi
  flagged() { grep '"possible_duplicate":true' "$work/worker.log" | grep -F "$1" | grep -oE '"event_id":"[^"]*"' | sort -u | wc -l; }
  echo "== flags by cause: $(flagged 'on the wire') by kills ($(awk "BEGIN{printf \"%.1f\", $(flagged 'on the wire')/$kills}") a kill), $(flagged 'HTTP 502') by 502 answers"
  exit 0
fi

if [ "$mode" = ratio ]; then
  # rate reads the events/s load printed at the end.
  rate() { grep -oE '[0-9]+ events/s' "$1" | tail -1 | cut -d' ' -f1; }
  # ticks is a process's CPU time so far in clock ticks; per_event turns a count of them into µs an event.
  ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  hz=$(getconf CLK_TCK)
  per_event() { awk "BEGIN{printf \"%.0f\", $1*1e6/$hz/$events}"; }
  ratios=()
  BARE_EVENTS=0 "$work/barepipe" >/dev/null # its stream
  echo "== $runs runs: a backlog of $events events drained by the bare pipeline, then by one worker"
  for r in $(seq "$runs"); do
    "$work/provisioner" load -n "$events" -subject "bare.created.$r" -results bare.provisioned -id-prefix "bare$r" -timeout 10m >"$work/bare$r.load" 2>&1 &
    load_pid=$!
    until grep -q '^published' "$work/bare$r.load" 2>/dev/null; do sleep 0.2; done
    n0=$(ticks "$nats_pid")
    # a consumer a run: the last run's pull requests, not yet expired, would take events of this one
    BARE_EVENTS=$events BARE_SUBJECT="bare.created.$r" BARE_CONSUMER="bare$r" "$work/barepipe" >"$work/barepipe$r.log" 2>&1
    wait "$load_pid"
    bare_nats=$(( $(ticks "$nats_pid") - n0 ))
    bare_cpu=$(awk -v hz="$hz" '/CPU/ {print $(NF-1) * hz / 1e6}' "$work/barepipe$r.log")
    # each run's projects are new ones, as a backlog of creations is: P-<n> again would make every event
    # a second creation of a provisioned project, a different (and slower) path
    "$work/provisioner" load -n "$events" -id-prefix "worker$r" -project-prefix "R$r" -timeout 10m >"$work/worker$r.load" 2>&1 &
    load_pid=$!
    until grep -q '^published' "$work/worker$r.load" 2>/dev/null; do sleep 0.2; done
    n0=$(ticks "$nats_pid")
    start_worker
    wait "$load_pid"
    worker_nats=$(( $(ticks "$nats_pid") - n0 )); worker_cpu=$(ticks "$worker_pid")
    kill -TERM "$worker_pid"; wait "$worker_pid" || true
    bare=$(rate "$work/bare$r.load"); wk=$(rate "$work/worker$r.load")
    ratio=$(awk "BEGIN{printf \"%.2f\", $wk/$bare}")
    ratios+=("$ratio")
    echo "   run $r: bare pipeline $bare events/s, worker $wk events/s: $ratio of the bare pipeline"
    echo "          CPU µs an event: bare pipeline $(per_event "$bare_cpu") + nats-server $(per_event "$bare_nats"); worker $(per_event "$worker_cpu") + nats-server $(per_event "$worker_nats")"
  done
  kill -TERM "$sim_pid"; wait "$sim_pid" || true
  echo "== the worker's ratio to the bare pipeline, $runs runs: ${ratios[*]}"
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
# CPU time is steadier than events/s on a shared machine: it does not count the time others had the cores.
ticks=$(awk '{print $14 + $15}' "/proc/$worker_pid/stat"); hz=$(getconf CLK_TCK)
echo "== worker CPU: $(awk "BEGIN{printf \"%.2f s, %.0f µs an event\", $ticks/$hz, $ticks/$hz*1e6/$events}")"
kill -TERM "$worker_pid"; wait "$worker_pid" || true
kill -TERM "$sim_pid"; wait "$sim_pid" || true
echo "== simulator: $(tail -1 "$work/sim.log")"
if grep -q '"level":"error"' "$work/worker.log"; then
  echo "== worker errors:"; grep '"level":"error"' "$work/worker.log" | head -5
fi
