#!/usr/bin/env bash
# Three "hosts" on one machine, each a Linux network namespace with its own IP on a private LAN.
#
#   scripts/netns_hosts.sh up                 # create head, load and sut (idempotent: down first)
#   scripts/netns_hosts.sh exec HOST CMD...   # run CMD inside HOST (head, load or sut)
#   scripts/netns_hosts.sh ip HOST            # print HOST's IP
#   scripts/netns_hosts.sh pids HOST          # pids of every process inside HOST
#   scripts/netns_hosts.sh kill HOST          # SIGKILL every process inside HOST (a host crash)
#   scripts/netns_hosts.sh down               # kill what runs inside, delete everything (idempotent)
#   scripts/netns_hosts.sh status             # list the namespaces and addresses
#
# Layout (PREFIX from RB_NETNS, default "rbn"; SUBNET from RB_NETNS_SUBNET, default 10.77.0):
#   PREFIX-head  eth0 SUBNET.1/24     PREFIX-load  eth0 SUBNET.2/24     PREFIX-sut  eth0 SUBNET.3/24
#   PREFIX-lan   a bridge br0 joining the three veth pairs (no IP; nothing else is attached)
# Every host has loopback up and a default route on eth0 (so software asking "which interface
# reaches the outside?", as Ray does for its node IP, gets SUBNET.x; nothing leaves the LAN).
# The bridge sits in its own namespace, so nothing is added to the machine's own network: two
# prefixes can use the same subnet side by side, and `down` (deleting the namespaces) removes
# every interface. Needs root and iproute2.
set -euo pipefail

PREFIX=${RB_NETNS:-rbn}
SUBNET=${RB_NETNS_SUBNET:-10.77.0}
HOSTS=(head load sut)
LAN="$PREFIX-lan"

die() { echo "netns_hosts: $*" >&2; exit 2; }

host_index() {
  case "$1" in
    head) echo 1 ;; load) echo 2 ;; sut) echo 3 ;;
    *) die "unknown host '$1' (head, load or sut)" ;;
  esac
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

ns_kill() {  # SIGKILL every process inside namespace $1 (none is fine)
  # Repeated, because a process may fork between listing and killing (a raylet starting a worker).
  local pids round
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$1" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  echo "netns_hosts: processes still alive in $1 after 10 rounds: $pids" >&2
}

reach() {  # reach NS IP: true when IP answers from inside NS (no ping needed)
  local out
  out=$(ip netns exec "$1" timeout 5 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1 || true)
  [[ "$out" == *"Connection refused"* ]]
}

down() {
  local h ns
  for h in "${HOSTS[@]}"; do
    ns="$PREFIX-$h"
    if ns_exists "$ns"; then
      ns_kill "$ns"
    fi
  done
  for h in "${HOSTS[@]}" lan; do
    ns="$PREFIX-$h"
    if ns_exists "$ns"; then
      # A just-killed process can hold the namespace for a moment; deleting the name is enough
      # (the kernel frees the namespace and its veths when the last process is gone).
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

up() {
  command -v ip >/dev/null || die "'ip' not found (apt-get install -y iproute2)"
  [ "$(id -u)" = 0 ] || die "needs root (ip netns add)"
  [ ${#PREFIX} -le 10 ] || die "RB_NETNS '$PREFIX' is longer than 10 characters"
  down
  ip netns add "$LAN"
  ip -n "$LAN" link set lo up
  ip -n "$LAN" link add br0 type bridge
  ip -n "$LAN" link set br0 up
  local h ns i
  for h in "${HOSTS[@]}"; do
    ns="$PREFIX-$h"
    i=$(host_index "$h")
    ip netns add "$ns"
    ip -n "$LAN" link add "$h" type veth peer name eth0 netns "$ns"
    ip -n "$LAN" link set "$h" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default dev eth0
  done
  # The LAN works once the head reaches every host: a TCP connect to a closed port is refused
  # (an RST came back) rather than timing out or finding no route.
  for h in load sut; do
    i=$(host_index "$h")
    reach "$PREFIX-head" "$SUBNET.$i" || { down; die "head cannot reach $h at $SUBNET.$i"; }
  done
  status
}

status() {
  local h ns
  for h in "${HOSTS[@]}"; do
    ns="$PREFIX-$h"
    if ns_exists "$ns"; then
      echo "$h $ns $(ip -n "$ns" -4 -o addr show dev eth0 | awk '{print $4}')"
    else
      echo "$h $ns absent"
    fi
  done
}

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $0 up|down|status|exec HOST CMD...|ip HOST|pids HOST|kill HOST"
shift
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  exec)
    [ $# -ge 2 ] || die "usage: $0 exec HOST CMD..."
    h=$1; shift; host_index "$h" >/dev/null
    exec ip netns exec "$PREFIX-$h" "$@"
    ;;
  ip) [ $# -eq 1 ] || die "usage: $0 ip HOST"; echo "$SUBNET.$(host_index "$1")" ;;
  pids) [ $# -eq 1 ] || die "usage: $0 pids HOST"; host_index "$1" >/dev/null; ip netns pids "$PREFIX-$1" ;;
  kill) [ $# -eq 1 ] || die "usage: $0 kill HOST"; host_index "$1" >/dev/null; ns_kill "$PREFIX-$1" ;;
  *) die "unknown command '$cmd' (up, down, status, exec, ip, pids, kill)" ;;
esac
