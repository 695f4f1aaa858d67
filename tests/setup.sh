#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine: the system tools the tests use as
# real peers (Docker engine, dig, dnsperf, dnsmasq, Unbound, busybox for the test image) and the Python
# packages. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# python3.11-minimal and libpython3.11-stdlib: the interpreter `make image` puts in the image's
# locally made base; docker-compose: Debian's Compose, which runs deploy/compose.yaml in the tests;
# systemd: systemd-analyze, which verifies deploy/dockdns.service; knot, knot-dnsutils and nsd:
# the benchmark's reference servers and forwarded-miss upstream (benchmarks/reference.py); gcc and
# python3-dev: the compiled build of the per-query modules (setup.py).
debs=(gcc python3-dev docker.io busybox-static dnsutils dnsperf dnsmasq-base iproute2 util-linux procps
      python3.11-minimal libpython3.11-stdlib docker-compose systemd dbus podman unbound openssl
      knot knot-dnsutils nsd)
missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  # The servers installed here (unbound, knot, nsd, dnsmasq) are run by the tests and the
  # benchmark on loopback ports of their own: none may start as a system service and take port
  # 53. Debian's policy-rc.d hook refuses service starts while they are installed.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
    trap '$SUDO rm -f "$policy"' EXIT  # also if the install fails
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
fi

# bench: matplotlib, for the benchmark's plot (benchmarks/plot.py), which the smoke test makes.
# DOCKDNS_COMPILE=1: the per-query modules compiled in place (setup.py), or this fails; the suite
# tests what users install. Run again after editing one of them (the tests refuse a stale one).
DOCKDNS_COMPILE=1 python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]'

# A real systemd-resolved for tests/integration/test_resolved.py: Debian's package extracted into
# a cache directory, never installed (the machine's resolver stays as it is); the tests run it in
# a namespace of their own (tests/support/resolved_ns.sh).
resolved_root=${DOCKDNS_TEST_RESOLVED_ROOT:-/var/cache/dockdns-test/systemd-resolved}
if [ ! -x "$resolved_root/lib/systemd/systemd-resolved" ]; then
  echo "extracting systemd-resolved into $resolved_root"
  download=$(mktemp -d)
  (cd "$download" && apt-get download -qq systemd-resolved 2>/dev/null \
     || { $SUDO apt-get update -qq && apt-get download -qq systemd-resolved; })
  $SUDO mkdir -p "$resolved_root"
  $SUDO dpkg-deb -x "$download"/systemd-resolved_*.deb "$resolved_root"
  rm -rf "$download"
fi

# Rootful Podman for tests/engine/test_podman.py: without this line runc fails here with "error
# setting rlimit type 7: operation not permitted".
if [ ! -e /etc/containers/containers.conf ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n' >/etc/containers/containers.conf
fi

# The engine the Docker tests use. The test harness would start it too, but starting it here makes
# the suite's first Docker test no different from its last.
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && [ -z "${DOCKER_HOST:-}" ]; then
  echo "starting dockerd (log: /tmp/dockdns-test-dockerd.log)"
  setsid dockerd >>/tmp/dockdns-test-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  # Not fatal here: the Docker tests fail without an engine under CI=true and skip elsewhere.
  docker info >/dev/null 2>&1 || echo "dockerd did not start: see /tmp/dockdns-test-dockerd.log" >&2
fi
