#!/usr/bin/env bash
# How layout-v1.tar.gz was made: the data directory of a node written by the
# store layout before issue 14 (one sled key per Merkle node and per index
# posting), for the migration test (tests/integration/migrate.rs).
#
# Made with qtrace at commit f4816a3 (the last commit with that layout):
#   git worktree add /tmp/v1 f4816a3 && cd /tmp/v1 && cargo build -p qtrace-node -p qtrace-client
#   testdata/layout-v1/make.sh /tmp/v1/target/debug OUT_DIR
# It runs examples/three-agencies.sh (Shanghai, Hangzhou and Guangdong nodes
# that mirror and cosign each other; a lab report, a certificate resting on
# it), then restarts the Shanghai node alone and appends 600 production
# records and 40 transformations naming them (so the own log spans several
# 256-leaf tiles and its indexes hold keys with many postings), stops it,
# and packs its data directory (own log, Hangzhou's and Guangdong's mirrored
# logs with their cosigned checkpoints, the federation state).
set -euo pipefail
BIN=$(cd "$1" && pwd); OUT=$2
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
QTRACE_DEMO_KEEP="$OUT/demo.path" QTRACE_BIN="$BIN" examples/three-agencies.sh >"$OUT/demo.out" 2>&1
WORK=$(cat "$OUT/demo.path")
rm -f "$WORK/sh/node.addr" "$WORK/sh/http.addr"
"$BIN/qtrace-node" --data "$WORK/sh" --name qtrace.demo/sh --listen 127.0.0.1:0 >"$OUT/sh.out" 2>"$OUT/sh.log" &
PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/sh/node.addr" ] && break; sleep 0.1; done
Q=("$BIN/qtrace" --node "http://$(cat "$WORK/sh/node.addr")" --key "$WORK/factory.key")
GTIN=09520123456788
for i in $(seq 1 600); do
  "${Q[@]}" produce --gtin $GTIN --lot "V1-$i" --quantity 100 --unit EA --at 2026-12-01T08:00:00+08:00 >/dev/null
done
for i in $(seq 1 40); do
  "${Q[@]}" produce --gtin $GTIN --lot "V1-MIX-$i" --quantity 10 --unit EA --input $((10 + i)) --input $((11 + i)) \
    --at 2026-12-01T09:00:00+08:00 >/dev/null
done
"$BIN/qtrace" --node "http://$(cat "$WORK/sh/node.addr")" --json checkpoint >"$OUT/checkpoint.json"
kill -TERM "$PID"; wait "$PID" || true
rm -f "$WORK/sh/node.addr" "$WORK/sh/http.addr"
tar -C "$WORK" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2026-12-03 -czf "$OUT/layout-v1.tar.gz" sh hz/log.vkey gd/log.vkey factory.key lab.key body.key
echo "$OUT/layout-v1.tar.gz"
