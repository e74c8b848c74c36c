#!/usr/bin/env bash
# The test command (README): creates .venv, installs the agent with its test extras and the system
# programs the tests use (mosquitto), then runs the whole suite against the asset mirror.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[opencv,test,hub]'

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
# live-camera tests: an RTSP server (gst-rtsp-server through the system python3-gi) fed by ffmpeg
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null \
  || need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
# boot test (tests/service/test_boot.py, root only): a Debian 12 rootfs booted with systemd-nspawn
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)  # its wheelhouse
# install.sh --system-opencv test (tests/service/test_install.py, root only): Debian's OpenCV
/usr/bin/python3 -c "import cv2" 2>/dev/null || need_apt+=(python3-opencv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "WARNING: the tests need ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]})." >&2
    echo "         Tests that need them will fail with a message naming the program." >&2
  fi
fi

# The AsyncAPI test parses docs/asyncapi.yaml with the official parser (node); skipped without node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && [ ! -d .node/node_modules/@asyncapi/parser ]; then
  npm install --prefix .node --no-audit --no-fund -q '@asyncapi/parser@3' >/dev/null || echo "WARNING: npm could not install @asyncapi/parser" >&2
fi

export EDGE_AGENT_MIRROR=${EDGE_AGENT_MIRROR:-../shared/assets}
export PYTHONUNBUFFERED=1

# Linters and the type checker first (configured in pyproject.toml): an error fails the run.
echo "ruff check + ruff format --check + mypy"
.venv/bin/ruff check -q .
.venv/bin/ruff format --check -q .
if ! mypy_out=$(.venv/bin/mypy 2>&1); then echo "$mypy_out"; exit 1; fi  # quiet when clean (about 20 s cold, 2 s cached)
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
