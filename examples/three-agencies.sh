#!/usr/bin/env bash
# Three agencies, one federation (互联互通): a Shanghai market regulator whose
# node records a lab's inspection report, a Hangzhou certification body
# whose node issues a certificate resting on that report, and a Guangdong
# regulator whose node verifies the certificate, cosigned by the others.
#
# Runs everything on 127.0.0.1 with temporary data directories, prints what
# to look at, and stops the nodes it started (also on Ctrl-C or error).
#
#   examples/three-agencies.sh            # build (debug) and run
#   QTRACE_BIN=target/release examples/three-agencies.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${QTRACE_BIN:-target/debug}
if [ -z "${QTRACE_BIN:-}" ]; then
  cargo build -q -p qtrace-node -p qtrace-client
fi
NODE="$BIN/qtrace-node"
Q="$BIN/qtrace"
WORK=$(mktemp -d -t qtrace-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped the demo nodes; their data is in $WORK"
}
trap cleanup EXIT
[ -n "${QTRACE_DEMO_KEEP:-}" ] && echo "$WORK" > "$QTRACE_DEMO_KEEP"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1; }

free_port() {
  local port
  for port in $(seq "$1" $(($1 + 200))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "no free port near $1" >&2; exit 1
}

start() { # NAME PORT [extra args...] — starts a node and waits for it
  local name=$1 port=$2; shift 2
  rm -f "$WORK/$name/node.addr"
  "$NODE" --data "$WORK/$name" --name "qtrace.demo/$name" --listen "127.0.0.1:$port" \
    --http 127.0.0.1:0 --mirror-interval-ms 200 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 300); do [ -s "$WORK/$name/node.addr" ] && return; sleep 0.1; done
  echo "node $name did not start; see $WORK/$name.log" >&2; exit 1
}

say "1. Each agency creates its log (first start writes its keys), then restarts with its peers"
declare -A PORT
for name in sh hz gd; do
  PORT[$name]=$(free_port $((17700 + ${#PIDS[@]} * 300)))
  start "$name" "${PORT[$name]}"
done
for pid in "${PIDS[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
PIDS=()
peer() { echo "$1=http://127.0.0.1:${PORT[$1]},$(cat "$WORK/$1/log.vkey")"; }
start sh "${PORT[sh]}" --peer "$(peer hz)" --peer "$(peer gd)"
start hz "${PORT[hz]}" --peer "$(peer sh)" --peer "$(peer gd)"
start gd "${PORT[gd]}" --peer "$(peer sh)" --peer "$(peer hz)" --witness-quorum 2
for name in sh hz gd; do echo "  $name: http://127.0.0.1:${PORT[$name]}  vkey $(cat "$WORK/$name/log.vkey")"; done
SH="--node http://127.0.0.1:${PORT[sh]}"
HZ="--node http://127.0.0.1:${PORT[hz]}"
GD="--node http://127.0.0.1:${PORT[gd]}"

LAB=91310000MA1K2Q7A5L      # Shanghai food testing lab
FACTORY=92320900MA1N3T5C5Q  # a dairy in Jiangsu, registered in Shanghai
BODY=913301007042187B2H     # Hangzhou certification body
GTIN=09520123456788

say "2. Shanghai registers its lab and the dairy; Hangzhou registers its certification body"
LAB_KEY=$($Q keygen --out "$WORK/lab.key" 2>/dev/null)
FACTORY_KEY=$($Q keygen --out "$WORK/factory.key" 2>/dev/null)
BODY_KEY=$($Q keygen --out "$WORK/body.key" 2>/dev/null)
$Q $SH --key "$WORK/sh/authority.key" org register --uscc $LAB --name "上海食品检验所 Shanghai Food Testing Lab" \
  --role testing_lab --accreditation-no CMA-2026-001 --scope 0952 --valid-until 2030-12-31 >/dev/null
$Q $SH --key "$WORK/sh/authority.key" org register --uscc $FACTORY --name "示例乳业 Example Dairy" --role manufacturer >/dev/null
$Q $SH --key "$WORK/sh/authority.key" key register --uscc $LAB --pubkey "$LAB_KEY" --person 李娜 --title 检验员 >/dev/null
$Q $SH --key "$WORK/sh/authority.key" key register --uscc $FACTORY --pubkey "$FACTORY_KEY" --person 张伟 --title 首席质量官 >/dev/null
$Q $HZ --key "$WORK/hz/authority.key" org register --uscc $BODY --name "杭州认证中心 Hangzhou Certification Centre" \
  --role certification_body --accreditation-no CNCA-R-2026-07 --scope 0952 --valid-until 2030-12-31 >/dev/null
$Q $HZ --key "$WORK/hz/authority.key" key register --uscc $BODY --pubkey "$BODY_KEY" --person 王强 --title 认证决定人 >/dev/null
echo "  registered 3 organisations and 3 keys"

say "3. The dairy records a lot; the Shanghai lab inspects it (检验报告)"
LOT_SEQ=$($Q $SH --key "$WORK/factory.key" --json produce --gtin $GTIN --lot DEMO-1 --quantity 2000 --unit EA | field seq)
REPORT=$($Q $SH --key "$WORK/lab.key" --json inspect --product "(01)$GTIN(10)DEMO-1" --report-no SH-2026-0042 \
  --standard "GB 19644-2010" --conclusion conformant --item "melamine=0.01mg/kg" --sample "$LOT_SEQ")
SH_LOG=$(echo "$REPORT" | field log_id)
REPORT_SEQ=$(echo "$REPORT" | field seq)
echo "  report is record $SH_LOG/$REPORT_SEQ"

say "4. Hangzhou waits until it has mirrored and verified Shanghai's log, then certifies on that report"
for _ in $(seq 1 300); do
  if $Q $HZ --json get "$SH_LOG/$REPORT_SEQ" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
$Q $HZ --key "$WORK/body.key" --org $BODY --json cert issue --number HZ-CQC-2026-7 --holder $FACTORY \
  --product $GTIN --standard "GB 19644-2010" --valid-until 2029-12-31 --based-on "$SH_LOG/$REPORT_SEQ" | sed 's/^/  /'

say "5. Guangdong verifies the certificate (核验): VALID once two other agencies cosign"
TRUST=(--trust "$(cat "$WORK/sh/log.vkey")" --trust "$(cat "$WORK/hz/log.vkey")" --trust "$(cat "$WORK/gd/log.vkey")" --witness-quorum 2)
for _ in $(seq 1 150); do
  if $Q $GD --json verify --cert "$BODY/HZ-CQC-2026-7" "${TRUST[@]}" 2>/dev/null | grep -q '"verdict":"VALID"'; then break; fi
  sleep 0.2
done
$Q $GD verify --cert "$BODY/HZ-CQC-2026-7" "${TRUST[@]}" || true

say "6. A consumer in Guangdong checks the product code (查验)"
$Q $GD check "https://id.gs1.org/01/$GTIN/10/DEMO-1" "${TRUST[@]}" || true

say "What to look at"
echo "  - Guangdong's resolver page: http://$(cat "$WORK/gd/http.addr" 2>/dev/null | tr -d '\n')/01/$GTIN/10/DEMO-1"
echo "  - each node's log: $WORK/{sh,hz,gd}.log (mirroring and cosigning lines)"
echo "  - Hangzhou's checkpoint with both witnesses' cosignatures:"
$Q $HZ checkpoint | sed 's/^/      /'
