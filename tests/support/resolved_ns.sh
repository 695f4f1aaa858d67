#!/usr/bin/env bash
# A real systemd-resolved in a private mount and network namespace with its own system bus
# (the recipe in RECIPES.md). Run as: unshare -m -n --propagation private bash THIS ROOT DIR
# [DOCKER_SOCKET]. ROOT is the extracted systemd-resolved package; DIR a scratch directory of
# the test's; DOCKER_SOCKET (default /run/docker.sock) is made reachable as DIR/docker.sock. The
# machine's resolver and bus are never touched, and no packet can leave (the namespace has only
# lo and the test's veth links). Writes DIR/pids (to kill) and DIR/ready, then waits.
set -euo pipefail
root=$1 dir=$2 docker_socket=${3:-/run/docker.sock}
# Docker's socket stays reachable under DIR (a path socket works across network namespaces),
# before /run is replaced.
if [ -S "$docker_socket" ]; then
  touch "$dir/docker.sock"; mount --bind "$docker_socket" "$dir/docker.sock"
fi
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd
cp /etc/passwd "$dir/passwd"; echo "systemd-resolve:x:991:991::/:/usr/sbin/nologin" >>"$dir/passwd"
cp /etc/group "$dir/group"; echo "systemd-resolve:x:991:" >>"$dir/group"
mount --bind "$dir/passwd" /etc/passwd; mount --bind "$dir/group" /etc/group
mkdir -p "$dir/busd"
cp /usr/share/dbus-1/system.d/* "$root"/usr/share/dbus-1/system.d/* "$dir/busd/"
mount --bind "$dir/busd" /usr/share/dbus-1/system.d
ip link set lo up
dbus-daemon --system --fork --print-pid >"$dir/pids"
"$root/lib/systemd/systemd-resolved" >"$dir/resolved.log" 2>&1 &
echo $! >>"$dir/pids"
for _ in $(seq 100); do
  "$root/usr/bin/resolvectl" status >/dev/null 2>&1 && break
  sleep 0.1
done
"$root/usr/bin/resolvectl" status >/dev/null
touch "$dir/ready"
exec sleep infinity
