#!/usr/bin/env bash
# Install the Debian packages NoctisPro needs, only those missing. Idempotent; quiet when all is there.
#   ops/install-system.sh run    what `make run` needs
#   ops/install-system.sh test   plus what `make test` needs (dcmtk peers, Chromium, docker-compose)
set -euo pipefail
mode=${1:-run}

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd nginx || need+=(nginx)
have_cmd redis-server || need+=(redis-server)
{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || have_cmd initdb; } || need+=(postgresql)
have_cmd runuser || need+=(util-linux)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
have_cmd cc || need+=(build-essential)
have_cmd pkg-config || need+=(pkg-config)
have_cmd storescu || need+=(dcmtk)
if [ "$mode" = test ]; then
  have_cmd chromium || need+=(chromium)
  have_cmd docker-compose || need+=(docker-compose)
  # make bench-dicomweb compares with Orthanc and its DICOMweb plugin
  have_cmd Orthanc || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
  dpkg -s orthanc-dicomweb >/dev/null 2>&1 || need+=(orthanc-dicomweb)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts these as system services on install; NoctisPro runs its own under var/.
  for svc in nginx redis-server postgresql orthanc; do
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

if ! have_cmd cargo; then
  echo "cargo (Rust) is missing: install the Rust toolchain (rustup) to build dicom_scp_server" >&2
  exit 1
fi
