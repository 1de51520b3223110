#!/usr/bin/env bash
# Hosts on one machine, for real: each host a network namespace with its own address, all on one bridge, as
# machines on one switch. Used by tests/e2e/test_multi_host.py (two hubs behind HAProxy, two inference hosts);
# an operator can read it, or run it to try the layout by hand. Needs root and iproute2.
#
#   deploy/multihost/hosts.sh up hub1=10.77.0.11 hub2=10.77.0.12 inf1=10.77.0.21 inf2=10.77.0.22
#   ip netns exec lh-hub1 python manage.py serve --no-bootstrap   # with HUB_HOST=10.77.0.11, ...
#   deploy/multihost/hosts.sh down hub1 hub2 inf1 inf2
#
# The machine itself is 10.77.0.1 on the bridge (BRIDGE, ADDRESS): services on it that listen only on loopback
# (PostgreSQL, Redis) are reached through a forwarder bound to that address.
set -euo pipefail
BRIDGE="${BRIDGE:-lhbr0}"
ADDRESS="${ADDRESS:-10.77.0.1/24}"
PREFIX="${ADDRESS#*/}"

up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$ADDRESS" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  for spec in "$@"; do
    name="${spec%%=*}" addr="${spec#*=}"
    ns="lh-$name" veth="lh-$name"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"   # the host's end on the bridge, eth0 inside
    ip link set "$veth" master "$BRIDGE" up
    ip netns exec "$ns" ip addr add "$addr/$PREFIX" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "${ADDRESS%/*}"
  done
}

down() {
  for name in "$@"; do
    ip netns pids "lh-$name" 2>/dev/null | xargs -r kill -9 || true
    ip link del "lh-$name" 2>/dev/null || true   # deleting one end of a veth deletes both
    ip netns del "lh-$name" 2>/dev/null || true
  done
  if [ -z "$(ip link show master "$BRIDGE" 2>/dev/null)" ]; then
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
}

command="${1:?usage: hosts.sh up NAME=ADDRESS... | down NAME...}"
shift
"$command" "$@"
