#!/usr/bin/env bash
# Throughput and latency over each NAT-traversal path, in network namespaces (as root; needs
# ip, nft, wrk and a release build: `cargo build --release`). docs/benchmarks.md, "Over NAT".
#
#   sudo bash benches/nat.sh [SECONDS] [CONNECTIONS]
#
# Builds the same kind of network as tests/nat.rs (a bridge on 203.0.113.0/24 with a relay,
# home networks on 100.64.0.0/10 behind nftables NAT routers that drop unsolicited inbound
# traffic), then for each path — p2p_direct (TCP to a node on the "internet"), dcutr_direct
# (QUIC through a hole punched in two cone NATs), relay (one side behind a symmetric NAT) —
# starts two fresh nodes, connects B to A, and drives B's /message:send with wrk from inside
# B's namespace. It reports wrk's rate and latency (the sender's accept path) and how many
# messages A received per second from the start of the run until the last one arrived (the
# path itself). Everything it creates is deleted at exit; nothing leaves the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-8}
BIN=${ACP_RELAY_BIN:-target/release/acp-relay}
P=acpb$$
WORK=$(mktemp -d)
PIDS=()
NSS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 2; }
for t in ip nft wrk; do command -v $t >/dev/null || { echo "needs $t"; exit 2; }; done
[ -x "$BIN" ] || { echo "needs $BIN (cargo build --release)"; exit 2; }

ns() { ip netns add "$P$1"; NSS+=("$P$1"); ip -n "$P$1" link set lo up; }
n=0
# internet_host NAME LAST_OCTET
internet_host() {
  ns "$1"; n=$((n + 1))
  ip -n "$P$1" link add wan0 type veth peer name p$n netns "${P}wan"
  ip -n "$P$1" link set wan0 up; ip -n "${P}wan" link set p$n up
  ip -n "${P}wan" link set p$n master br0
  ip -n "$P$1" addr add 203.0.113.$2/24 dev wan0
}
# home NAME PUBLIC_OCTET LAN_OCTET masquerade|"masquerade random"
home() {
  internet_host "$1gw" "$2"; ns "$1"; n=$((n + 1))
  ip -n "$P$1gw" link add lan0 type veth peer name eth0 netns "$P$1"
  ip -n "$P$1gw" link set lan0 up; ip -n "$P$1" link set eth0 up
  ip -n "$P$1gw" addr add 100.64.$3.1/24 dev lan0
  ip -n "$P$1" addr add 100.64.$3.2/24 dev eth0
  ip -n "$P$1" route add default via 100.64.$3.1
  ip netns exec "$P$1gw" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$P$1gw" nft -f - <<EOF
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "wan0" $4
  }
}
table inet filter {
  chain input {
    type filter hook input priority 0;
    iifname "wan0" ct state new drop
  }
  chain forward {
    type filter hook forward priority 0;
    iifname "wan0" ct state new drop
  }
}
EOF
}

# api NS METHOD PATH [JSON]: the node's REST API inside its namespace.
api() {
  if [ $# -ge 4 ]; then
    ip netns exec "$P$1" curl -s -X "$2" "http://127.0.0.1:7901$3" -H 'Content-Type: application/json' -d "$4"
  else
    ip netns exec "$P$1" curl -s -X "$2" "http://127.0.0.1:7901$3"
  fi
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
wait_for() { # SECS CMD...: polls CMD every 100 ms
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out: $*"; return 1; }
    sleep 0.1
  done
}

ns wan; ip -n "${P}wan" link add br0 type bridge; ip -n "${P}wan" link set br0 up
internet_host relay 10
ip netns exec "${P}relay" "$BIN" relay --https-bind 203.0.113.10:8443 --quic-bind 203.0.113.10:7842 \
  --http-bind 203.0.113.10:8080 --tls-self-signed 203.0.113.10 --tls-cert-out "$WORK/relay.pem" \
  2>"$WORK/relay.log" &
PIDS+=($!)
wait_for 20 grep -q "relay up" "$WORK/relay.log"

internet_host pub 20
home a 1 1 masquerade
home b 2 2 masquerade
home s 3 3 "masquerade random"

# start NS NAME ADVERTISE: a fresh node
start() {
  rm -rf "$WORK/$2"
  ip netns exec "$P$1" env ACP_LOG=warn "$BIN" serve --name "$2" --port 7801 --http-port 7901 \
    --advertise-host "$3" --data-dir "$WORK/$2" --relay https://203.0.113.10:8443 \
    --relay-ca "$WORK/relay.pem" 2>"$WORK/$2.log" &
  PIDS+=($!)
  wait_for 20 api "$1" GET /status
}

probes_in() { [ "$(api "$1" GET "/context/probe/messages?limit=100" | json 'len(d["messages"])')" -ge "$2" ]; }
link_has_relay() { api "$1" GET /link | grep -q relay=; }
peer_is() { api "$1" GET "/peers/$2" | grep -q "\"connection_type\":\"$3\""; }

printf '| path | idle latency p50 | p98 | conns | wrk req/s | wrk p50 | wrk p99 | A received/s | drain after wrk |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
# run PATH_NAME A_NS A_ADVERTISE B_NS B_ADVERTISE
run() {
  start "$2" "A$1" "$3"; local a_pid=${PIDS[-1]}
  start "$4" "B$1" "$5"; local b_pid=${PIDS[-1]}
  wait_for 30 link_has_relay "$2"
  local link; link=$(api "$2" GET /link | json 'd["link"]')
  local peer; peer=$(api "$4" POST /peers/connect "{\"link\":\"$link\"}" | json 'd["peer_id"]')
  wait_for 60 peer_is "$4" "$peer" "$1"
  # Path latency first, on an idle path: 50 messages 20 ms apart, each from the sender's
  # timestamp (ts) to the receiver's received_at (one clock: the namespaces share the host's).
  for i in $(seq 1 50); do
    api "$4" POST /message:send '{"role":"user","text":"probe","context_id":"probe"}' >/dev/null
    sleep 0.02
  done
  wait_for 30 probes_in "$2" 50
  local lat; lat=$(api "$2" GET "/recv?limit=100" | python3 -c '
import json, sys, datetime
d = json.load(sys.stdin)
ms = sorted((m["received_at"] - datetime.datetime.fromisoformat(m["raw"]["ts"].replace("Z", "+00:00")).timestamp()) * 1000
            for m in d["messages"])
print(f"{ms[len(ms)//2]:.2f} ms | {ms[int(len(ms)*0.98)]:.2f} ms")')
  local before; before=$(api "$2" GET /status | json 'd["messages_received"]')
  local t0; t0=$(date +%s.%N)
  local out; out=$(ip netns exec "$P$4" wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 30s \
    -s benches/wrk/send.lua http://127.0.0.1:7901 | grep '^WRK')
  local t1; t1=$(date +%s.%N)
  local sent; sent=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  local want=$((before + sent)) got=0
  local deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ]; do
    got=$(api "$2" GET /status | json 'd["messages_received"]')
    [ "$got" -ge "$want" ] && break
    sleep 0.1
  done
  local t2; t2=$(date +%s.%N)
  python3 - "$1" "$CONNS" "$out" "$t0" "$t1" "$t2" "$((got - before))" "$lat" <<'EOF'
import sys
path, conns, out, t0, t1, t2, got, lat = sys.argv[1:]
f = dict(kv.split("=") for kv in out.split()[1:])
dur = int(f["duration_us"]) / 1e6
ms = lambda us: f"{int(us)/1000:.2f} ms"
print(f"| {path} | {lat} | {conns} | {int(f['requests'])/dur:,.0f} | {ms(f['p50_us'])} | {ms(f['p99_us'])} "
      f"| {int(got)/(float(t2)-float(t0)):,.0f} | {float(t2)-float(t1):.2f} s |")
EOF
  kill "$a_pid" "$b_pid"; wait "$a_pid" "$b_pid" 2>/dev/null || true
}

run p2p_direct pub 203.0.113.20 a 100.64.1.2
run dcutr_direct a 100.64.1.2 b 100.64.2.2
run relay a 100.64.1.2 s 100.64.3.2
