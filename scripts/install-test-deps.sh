#!/usr/bin/env bash
# Debian packages the integration tests start for real. Idempotent; run as root (CI does).
set -euo pipefail
# prometheus (+ promtool): scrapes the agent; slurmctld/slurmd/munge: a real single-node Slurm for drains;
# stress-ng: saturates the CPUs in the agent benchmark; gcc: builds the shared objects preflight's tests inspect;
# tmux: the terminal `coldaisle top` is driven in; chromium: opens the HTML reports headless (browser tests);
# systemd: systemd-analyze verifies the agent's unit; openipmi + ipmitool: a simulated BMC (ipmi_sim) on loopback.
pkgs=(prometheus slurmctld slurmd slurm-client munge stress-ng gcc tmux chromium systemd openipmi ipmitool)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=("${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: run as root (apt-get install ${pkgs[*]})" >&2
  exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
