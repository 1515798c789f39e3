#!/usr/bin/env bash
# Webhook throughput and latency over TLS with keep-alive, HTTP/1.1 (wrk) and HTTP/2 (oha, or
# h2load when oha is missing: h2load reports mean latency, not percentiles).
# The webhook is pinned to core 1, the load generator to core 0.
#
#   webhook/bench/run.sh                      # full matrix: 5 s warm-up, 20 s per run
#   WARMUP=2 DURATION=5 webhook/bench/run.sh  # quick
#   CONCURRENCY="16" PROTOCOLS="h1" PAYLOADS="review-3zones" webhook/bench/run.sh
#
# Needs: wrk, oha or h2load (nghttp2-client), openssl, taskset. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."

WARMUP=${WARMUP:-5}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
PROTOCOLS=${PROTOCOLS:-"h1 h2"}
PAYLOADS=${PAYLOADS:-"review-3zones review-3zones-dupzone"}
ENDPOINTS=${ENDPOINTS:-"validate"}
# One worker: the webhook is pinned to one core, where a second worker only adds wake-ups.
WORKERS=${WORKERS:-1}
TLS_PORT=${TLS_PORT:-19443}
HTTP_PORT=${HTTP_PORT:-19080}
WEBHOOK_CORE=${WEBHOOK_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
OHA=${OHA:-$(command -v oha || true)}

cargo build --release --quiet -p vmdistributed-webhook
BIN=target/release/vmdistributed-webhook
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

taskset -c "$WEBHOOK_CORE" "$BIN" serve --tls-addr "127.0.0.1:$TLS_PORT" --http-addr "127.0.0.1:$HTTP_PORT" \
  --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key" --log-level warn \
  --worker-threads "$WORKERS" 2>"$WORK/webhook.log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && break; sleep 0.05; done
sleep 0.5
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)
IDLE_RSS=$(rss_kib)

cat >"$WORK/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("PAYLOAD_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

# run PROTO CONC SECONDS URL PAYLOAD -> "requests p50_ms p99_ms" (p50/p99 "-" when unknown)
run() {
  local proto=$1 conc=$2 secs=$3 url=$4 payload=$5 out
  if [ "$proto" = h1 ]; then
    out=$(PAYLOAD_FILE="$payload" taskset -c "$LOAD_CORE" wrk -t1 -c"$conc" -d"${secs}s" --latency -s "$WORK/post.lua" "$url")
    local req p50 p99
    req=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    [ -n "$errs" ] && echo "wrk: $errs" >&2
    echo "$req $(to_ms "$p50") $(to_ms "$p99")"
  elif [ -n "$OHA" ]; then
    out=$(taskset -c "$LOAD_CORE" "$OHA" --no-tui --http2 --insecure -z "${secs}s" -c "$conc" -p 1 -m POST \
      -T application/json -D "$payload" --output-format json "$url")
    python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["summary"]; p=d["latencyPercentiles"];
codes=d.get("statusCodeDistribution",{}); bad={k:v for k,v in codes.items() if k!="200"}
print(sum(codes.values()), round(p["p50"]*1000,3), round(p["p99"]*1000,3)); bad and print("oha: non-200", bad, file=sys.stderr)' <<<"$out"
  else
    out=$(taskset -c "$LOAD_CORE" h2load -t1 -c"$conc" -m1 -D "$secs" -d "$payload" -H 'content-type: application/json' "$url")
    local req mean
    req=$(awk '/^requests:/ {print $8}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    echo "$req mean=$(to_ms "$mean") -"
  fi
}
to_ms() { # wrk/h2load durations like 512.00us, 1.23ms, 1.01s -> milliseconds
  local v=$1
  case $v in
    *us) awk -v x="${v%us}" 'BEGIN {printf "%.3f", x/1000}' ;;
    *ms) awk -v x="${v%ms}" 'BEGIN {printf "%.3f", x}' ;;
    *s) awk -v x="${v%s}" 'BEGIN {printf "%.3f", x*1000}' ;;
    *) echo "$v" ;;
  esac
}

echo "| endpoint | payload | protocol | concurrency | req/s | p50 ms | p99 ms | CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|"
for endpoint in $ENDPOINTS; do
  for payload in $PAYLOADS; do
    file=webhook/bench/$payload.json
    for proto in $PROTOCOLS; do
      for conc in $CONCURRENCY; do
        url="https://127.0.0.1:$TLS_PORT/$endpoint"
        run "$proto" "$conc" "$WARMUP" "$url" "$file" >/dev/null
        t0=$(cpu_ticks)
        read -r req p50 p99 < <(run "$proto" "$conc" "$DURATION" "$url" "$file")
        t1=$(cpu_ticks)
        rps=$(awk -v r="$req" -v d="$DURATION" 'BEGIN {printf "%.0f", r/d}')
        cpu=$(awk -v t="$((t1 - t0))" -v r="$req" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t*1e6/hz/r}')
        echo "| $endpoint | $payload | $proto | $conc | $rps | $p50 | $p99 | $cpu |"
      done
    done
  done
done
echo
echo "RSS: idle $((IDLE_RSS / 1024)).$(((IDLE_RSS % 1024) * 10 / 1024)) MiB, peak (VmHWM) $(( $(hwm_kib) / 1024 )).$((( $(hwm_kib) % 1024) * 10 / 1024)) MiB; webhook worker threads: $WORKERS"
