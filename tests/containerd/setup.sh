#!/usr/bin/env bash
# Provide a real containerd for the integration tests (tests/test_containerd.py): Debian's
# containerd 1.6 and runc, the tools that build the test images, then the images themselves.
# Idempotent; run as root. Nothing is started here: the test fixtures start a private
# containerd per session.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: must run as root (it installs Debian packages)" >&2
    exit 1
fi

packages=(containerd runc busybox-static gcc libc6-dev containernetworking-plugins)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
else
    echo "setup.sh: packages already installed: ${packages[*]}"
fi

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$here/../../.venv/bin/python" ]; then
        python="$here/../../.venv/bin/python"
    else
        python="python3"
    fi
fi
"$python" "$here/build_images.py"
