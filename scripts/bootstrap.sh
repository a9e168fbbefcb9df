#!/usr/bin/env bash
# Install what Tamga needs on Debian 12, idempotently: Debian packages, then the virtual environment.
# Re-running does nothing when everything is in place (a stamp tracks pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(pcscd vsmartcard-vpcd libpcsclite-dev swig gcc python3-dev python3-venv softhsm2 opensc opensc-pkcs11 pcsc-tools
          libgl1 libegl1 fonts-noto-core openssl sqlite3 util-linux procps
          systemd yubico-piv-tool chromium chromium-driver postgresql
          gettext poppler-utils zbar-tools libnss3-tools)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: $PYTHON is older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat .venv/.tamga-installed 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "bootstrap: installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip wheel setuptools
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[central,dev,ui]"
  echo "$want" > .venv/.tamga-installed
fi
