#!/usr/bin/env bash
# Network namespaces for Mescon's strict-network tests. None of them is linked to the root namespace,
# so no test packet can leave the machine.
#
#   mx-lan  10.77.1.2 ──► mx-nat 10.77.1.1 | 198.18.2.1 ──► mx-wan 198.18.2.2 (Mescon server)
#                                                            198.18.3.1
#                                                                │
#                                                        mx-pub 198.18.3.2 (the other user, no NAT)
#
# Usage: tests/nat/netns.sh up [MODE]      create the namespaces, then apply MODE (default routed)
#        tests/nat/netns.sh rules MODE     swap the rules of mx-nat in place (running servers keep going)
#        tests/nat/netns.sh down           delete the namespaces (idempotent)
# Modes (what stands between mx-lan and the internet, i.e. mx-wan):
#   routed     plain router, no NAT: mx-wan routes 10.77.1.0/24 back through mx-nat
#   symmetric  MASQUERADE with random ports (a new outside port per destination); mx-wan has no route
#              back to the lan, so only NATed traffic gets answers
#   udp-drop   symmetric NAT plus a firewall: every UDP packet of the lan is dropped and only TCP to
#              $MX_ALLOW_TCP (default "8000 7881 3478": web, ICE-TCP, TURN/TCP) is forwarded
#   lossy      plain MASQUERADE (port-preserving) and a bad line: each direction delayed 40 ms and 5 % of
#              the packets lost. This kernel may lack sch_netem, so mx-nat routes all lan<->wan traffic
#              through a tun device (mx-lag) served by tests/nat/lag.py (MX_DELAY_MS, MX_LOSS_PERCENT)
# Needs root, iproute2, nftables (nft), conntrack and python3.
set -euo pipefail
LAN=mx-lan NAT=mx-nat WAN=mx-wan PUB=mx-pub
ALLOW_TCP=${MX_ALLOW_TCP:-"8000 7881 3478"}
DELAY_MS=${MX_DELAY_MS:-40} LOSS_PERCENT=${MX_LOSS_PERCENT:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=${MX_RUN_DIR:-/run}
LAG_PID=$RUN/mx-lag.pid LAG_LOG=$RUN/mx-lag.log
cmd=${1:-}
mode=${2:-routed}

die() { echo "netns.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
for tool in ip nft conntrack python3; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y iproute2 nftables conntrack python3"
done

stop_lag() {
  local pid i
  [ -f "$LAG_PID" ] || return 0
  pid=$(cat "$LAG_PID")
  kill "$pid" 2>/dev/null || true
  # Wait until it has let go of the tun device (a new lag.py could not attach before).
  for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  rm -f "$LAG_PID"
}

down() {
  local n pids
  stop_lag
  for n in $LAN $NAT $WAN $PUB; do
    ip netns list | grep -qw "^$n" || continue
    # Whatever a killed test run left inside (server, browsers, probes): only these namespaces' processes.
    pids=$(ip netns pids "$n")
    if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; sleep 0.5; kill -9 $pids 2>/dev/null || true; fi
    ip netns del "$n"
  done
}

up() {
  down
  local n
  for n in $LAN $NAT $WAN $PUB; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    # IPv4 only, so candidates and NAT rules describe one topology.
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$n" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add mx-lan0 netns $LAN type veth peer name mx-nat-lan netns $NAT
  ip link add mx-wan0 netns $WAN type veth peer name mx-nat-wan netns $NAT
  ip link add mx-pub0 netns $PUB type veth peer name mx-wan-pub netns $WAN
  ip -n $LAN addr add 10.77.1.2/24 dev mx-lan0
  ip -n $NAT addr add 10.77.1.1/24 dev mx-nat-lan
  ip -n $NAT addr add 198.18.2.1/24 dev mx-nat-wan
  ip -n $WAN addr add 198.18.2.2/24 dev mx-wan0
  ip -n $WAN addr add 198.18.3.1/24 dev mx-wan-pub
  ip -n $PUB addr add 198.18.3.2/24 dev mx-pub0
  for pair in $LAN:mx-lan0 $NAT:mx-nat-lan $NAT:mx-nat-wan $WAN:mx-wan0 $WAN:mx-wan-pub $PUB:mx-pub0; do
    ip -n "${pair%%:*}" link set "${pair#*:}" up
  done
  ip -n $LAN route add default via 10.77.1.1
  ip -n $PUB route add default via 198.18.3.1
  ip netns exec $NAT sysctl -qw net.ipv4.ip_forward=1
  # mx-wan is the server's host, not a router: nothing is forwarded between mx-pub and mx-nat.
  ip netns exec $WAN sysctl -qw net.ipv4.ip_forward=0
  # The tun device of the "lossy" mode; unused (and without carrier) in the other modes.
  ip -n $NAT tuntap add dev mx-lag mode tun
  ip -n $NAT link set mx-lag up
  ip netns exec $NAT sysctl -qw net.ipv4.conf.all.rp_filter=0
  ip netns exec $NAT sysctl -qw net.ipv4.conf.default.rp_filter=0
  ip netns exec $NAT sysctl -qw net.ipv4.conf.mx-lag.rp_filter=0
  ip -n $NAT route add default dev mx-lag table 100
}

rules() {
  ip netns list | grep -qw "^$NAT" || die "namespaces are not up (run: $0 up)"
  # Start from nothing: no rules, no qdiscs, no remembered mappings, no route back to the lan.
  ip netns exec $NAT nft flush ruleset
  ip -n $NAT link set mx-nat-lan up
  stop_lag
  ip -n $NAT rule del iif mx-nat-lan lookup 100 2>/dev/null || true
  ip -n $NAT rule del iif mx-nat-wan lookup 100 2>/dev/null || true
  ip -n $WAN route del 10.77.1.0/24 2>/dev/null || true
  case "$mode" in
    routed)
      ip -n $WAN route add 10.77.1.0/24 via 198.18.2.1
      ;;
    symmetric|udp-drop)
      ip netns exec $NAT nft -f - <<'NFT'
table ip mx_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "mx-nat-wan" masquerade fully-random
  }
}
NFT
      if [ "$mode" = udp-drop ]; then
        local ports
        ports=$(echo "$ALLOW_TCP" | tr ' ' ',')
        ip netns exec $NAT nft -f - <<NFT
table inet mx_fw {
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "mx-nat-lan" meta l4proto udp counter drop
    ct state established,related accept
    iifname "mx-nat-lan" oifname "mx-nat-wan" tcp dport { $ports } accept
    iifname "mx-nat-lan" oifname "mx-nat-wan" meta l4proto icmp accept
  }
}
NFT
      fi
      ;;
    lossy)
      # Each forwarded packet crosses mx-nat twice: in from a veth, out to mx-lag, back in from mx-lag
      # (after lag.py held it), out to the other veth. Conntrack and NAT see only the pass that
      # crosses mx-nat-wan's side; the lan-side pass is untracked.
      ip netns exec $NAT nft -f - <<'NFT'
table ip mx_nat {
  chain raw {
    type filter hook prerouting priority raw; policy accept;
    iifname "mx-nat-lan" notrack
    iifname "mx-lag" ip daddr 10.77.1.0/24 notrack
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "mx-nat-wan" masquerade
  }
}
NFT
      : >"$LAG_LOG"   # empty before the start, so that an old run's lines cannot pass for this one's
      ip netns exec $NAT python3 "$HERE/lag.py" mx-lag "$DELAY_MS" "$LOSS_PERCENT" </dev/null >>"$LAG_LOG" 2>&1 &
      echo $! >"$LAG_PID"
      local i
      for i in $(seq 50); do
        grep -q '^lag ' "$LAG_LOG" 2>/dev/null && break
        kill -0 "$(cat "$LAG_PID")" 2>/dev/null || die "lag.py died: $(cat "$LAG_LOG")"
        sleep 0.05
      done
      grep -q '^lag ' "$LAG_LOG" || die "lag.py did not start: $(cat "$LAG_LOG")"
      ip -n $NAT rule add iif mx-nat-lan lookup 100
      ip -n $NAT rule add iif mx-nat-wan lookup 100
      ;;
    *) die "unknown mode '$mode' (routed|symmetric|udp-drop|lossy)" ;;
  esac
  ip netns exec $NAT conntrack -F >/dev/null 2>&1 || true
  echo "mx netns: $LAN(10.77.1.2) -> $NAT[$mode] -> $WAN(198.18.2.2) <- $PUB(198.18.3.2)"
}

case "$cmd" in
  up) up; rules ;;
  rules) rules ;;
  down) down ;;
  *) die "usage: $0 up [MODE] | rules MODE | down" ;;
esac
