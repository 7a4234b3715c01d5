#!/usr/bin/env bash
# Debian packages the integration tests start for real. Idempotent; run as root (CI does).
set -euo pipefail
pkgs=()
[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: run as root (apt-get install ${pkgs[*]})" >&2
  exit 1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
