#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing; fast when all are there.
set -euo pipefail
packages=(postgresql-15 postgresql-15-hypopg postgresql-15-pg-qualstats prometheus
          prometheus-alertmanager prometheus-postgres-exporter docker-compose
          chromium)  # headless Chromium: tests/analyzer/test_page.py reads the audit page
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts its own cluster and daemons where it can; the tests start their own on free
# ports, so stop the distribution's services to keep the machine quiet.
for svc in postgresql prometheus prometheus-alertmanager prometheus-postgres-exporter; do
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done
