#!/usr/bin/env bash
# Set up testbed on a Debian 12 (bookworm) machine, as root.  Idempotent: run it as often as you like.
#
#   scripts/setup.sh          system packages + .venv with testbed
#   scripts/setup.sh --test   the same, plus what the test suite needs
#
# Installs only what testbed uses: iptables (for the NFQUEUE target), libnetfilter-queue (for the
# NetfilterQueue Python binding, built from source), a C compiler and Python headers for that
# build, and the Python packages in a virtualenv at .venv beside this script's repository.
set -euo pipefail

cd "$(dirname "$0")/.."
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (it installs Debian packages); e.g. sudo scripts/setup.sh" >&2
    exit 1
fi

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null; then
    echo "setup.sh: installing python3"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup.sh: testbed needs Python >= 3.11 as '$PYTHON' (Debian 12 ships 3.11: apt-get install python3)" >&2
    exit 1
fi

debs=(iptables libnetfilter-queue-dev libnfnetlink-dev pkg-config gcc iperf3 iputils-ping curl coturn)
# chromium: the libwebrtc call engine (`engine: chromium`); driven headless, no browser download.
debs+=(chromium)
# Real tools run by scenarios/tools/ (testbed/doctor.py's VPN_BINARIES and PROXY_BINARIES check them).
debs+=(wireguard-go wireguard-tools openvpn shadowsocks-libev obfs4proxy stunnel4 socat)
# Debian's own python3 needs its venv and header packages; a self-built Python has both.
if [[ "$("$PYTHON" -c 'import sys; print(sys.prefix)')" == /usr ]]; then
    debs+=(python3-venv python3-dev)
fi
# The rootless tests run testbed as a throwaway user from a venv made with the system's python
# (a pyenv under /root is not reachable by other users): tests/integration/test_rootless_netns.py.
[[ -n "$extras" ]] && debs+=(python3 python3-venv)
missing=()
for d in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if ((${#missing[@]})); then
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # coturn's package may enable a system-wide TURN server on the host; testbed only ever runs
    # coturn inside its own namespaces, with its own config, so keep the host's copy off.
    if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null && systemctl is-enabled coturn >/dev/null 2>&1; then
        systemctl disable --now coturn >/dev/null 2>&1 || true
    fi
    # Likewise shadowsocks-libev's package starts a host-wide ss-server on 127.0.0.1:8388; testbed's
    # ss-server and ss-local run only inside its namespaces, from the scenario's command line.
    if [[ " ${missing[*]} " == *" shadowsocks-libev "* ]] && command -v systemctl >/dev/null &&
        systemctl is-enabled shadowsocks-libev >/dev/null 2>&1; then
        systemctl disable --now shadowsocks-libev >/dev/null 2>&1 || true
    fi
fi

if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# pip and setuptools are chatty even with -q; show their output only if something fails.
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup.sh: installing the Python packages failed (output above)" >&2
    exit 1
fi
echo "setup.sh: ready ($(.venv/bin/testbed --version))"
