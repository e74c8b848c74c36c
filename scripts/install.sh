#!/usr/bin/env bash
# Install (or remove) edge-agent as a systemd service on Raspberry Pi OS (Debian 12/13) or
# JetPack (Ubuntu 22.04). Run as root from the source tree (a git checkout or unpacked release):
#
#   sudo scripts/install.sh                      # online: pip fetches the dependencies
#   sudo scripts/install.sh --wheels /media/usb/wheels   # offline, from a wheelhouse
#   sudo scripts/install.sh --system-opencv      # JetPack: use the system's OpenCV (GStreamer, CSI)
#   sudo scripts/install.sh --uninstall [--purge]
#
# Lays down: /opt/edge-agent/venv (the agent), /usr/local/bin/edge-agent, the edge-agent user
# (groups video, dialout, plugdev), /etc/edge-agent (root:edge-agent 0750), /var/lib/edge-agent
# (edge-agent 0750), the systemd units and udev rules; then enables the service and starts it
# when a config exists (otherwise: `edge-agent provision ...` writes one and starts it).
# --root DIR installs into another root (an image being built, or a test) and starts nothing.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --root DIR      install into DIR instead of / (no service start, no udev reload)
  --source DIR    edge-agent source tree to install (default: the tree holding this script)
  --wheels DIR    install offline from a wheelhouse (pip --no-index --find-links DIR)
  --python PY     interpreter for the virtual environment (default: python3, needs >= 3.10)
  --no-pip        create the virtual environment but do not install the agent into it
  --system-opencv use the system's OpenCV (JetPack's, with GStreamer; or apt's python3-opencv)
                  instead of the pip wheel: the venv sees system site-packages, no opencv wheel
  --no-start      enable the service but do not start it
  --uninstall     remove the agent, units and rules; keep config, data and the user
  --purge         with --uninstall: also delete /etc/edge-agent, /var/lib/edge-agent and the user
EOF
}

die() { echo "install.sh: error: $1" >&2; [ $# -gt 1 ] && echo "  fix: $2" >&2; exit 1; }
say() { echo "install.sh: $*"; }

ROOT=""
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS=""
PY=python3
PIP=1
SYSTEM_OPENCV=0
START=1
UNINSTALL=0
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --source) SRC="${2:?--source needs a directory}"; shift 2 ;;
    --wheels) WHEELS="${2:?--wheels needs a directory}"; shift 2 ;;
    --python) PY="${2:?--python needs an interpreter}"; shift 2 ;;
    --no-pip) PIP=0; shift ;;
    --system-opencv) SYSTEM_OPENCV=1; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" = / ] && ROOT=""
fi
LIVE=1; [ -n "$ROOT" ] && LIVE=0
[ "$(id -u)" = 0 ] || die "must run as root" "sudo $0 $*"

USER_NAME=edge-agent
OPT="$ROOT/opt/edge-agent"
VENV="$OPT/venv"
CONF="$ROOT/etc/edge-agent"
STATE="$ROOT/var/lib/edge-agent"
UNITDIR="$ROOT/etc/systemd/system"
RULES="$ROOT/etc/udev/rules.d/70-edge-agent.rules"
SYSUSERS="$ROOT/usr/lib/sysusers.d/edge-agent.conf"
BIN="$ROOT/usr/local/bin/edge-agent"
UNITS=(edge-agent.service edge-agent-retry.service edge-agent-retry.timer)
SYSTEMD_UP=0; [ "$LIVE" = 1 ] && [ -d /run/systemd/system ] && SYSTEMD_UP=1

systemctl_() {  # systemctl on the target root; a live system without systemd as PID 1 works offline
  if [ "$LIVE" = 0 ]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}

# --- uninstall -------------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if [ "$SYSTEMD_UP" = 1 ]; then
    systemctl disable --now edge-agent-retry.timer edge-agent.service 2>/dev/null || true
  elif command -v systemctl >/dev/null && [ -e "$UNITDIR/edge-agent.service" ]; then
    systemctl_ disable edge-agent-retry.timer edge-agent.service 2>/dev/null || true
  fi
  for u in "${UNITS[@]}"; do rm -f "$UNITDIR/$u"; done
  rm -f "$RULES" "$SYSUSERS"
  [ -L "$BIN" ] && rm -f "$BIN"
  rm -rf "$OPT"
  if [ "$SYSTEMD_UP" = 1 ]; then systemctl daemon-reload; fi
  if [ "$LIVE" = 1 ] && command -v udevadm >/dev/null && [ -d /run/udev ]; then udevadm control --reload-rules || true; fi
  say "removed the agent, its units and udev rules"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$CONF" "$STATE"
    if grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
      if [ "$LIVE" = 1 ]; then userdel "$USER_NAME"; else userdel --prefix "$ROOT" "$USER_NAME"; fi
    fi
    if grep -q "^$USER_NAME:" "$ROOT/etc/group" 2>/dev/null; then
      if [ "$LIVE" = 1 ]; then groupdel "$USER_NAME"; else groupdel --prefix "$ROOT" "$USER_NAME"; fi
    fi
    say "purged /etc/edge-agent, /var/lib/edge-agent and the $USER_NAME user"
  else
    say "kept /etc/edge-agent, /var/lib/edge-agent and the $USER_NAME user (--purge removes them)"
  fi
  exit 0
fi

# --- checks ----------------------------------------------------------------------------------
[ -f "$SRC/pyproject.toml" ] && [ -f "$SRC/systemd/edge-agent.service" ] \
  || die "$SRC is not an edge-agent source tree" "run the script from the checkout, or pass --source DIR"
OS_RELEASE="$ROOT/etc/os-release"; [ -f "$OS_RELEASE" ] || OS_RELEASE=/etc/os-release
OS_ID=$(. "$OS_RELEASE" 2>/dev/null; echo "${ID:-unknown}")
OS_VER=$(. "$OS_RELEASE" 2>/dev/null; echo "${VERSION_ID:-?}")
case "$OS_ID:$OS_VER" in
  debian:12|debian:13|raspbian:12|raspbian:13|ubuntu:22.04) say "target OS: $OS_ID $OS_VER" ;;
  *) say "warning: $OS_ID $OS_VER is not a tested target (Raspberry Pi OS / Debian 12-13, JetPack / Ubuntu 22.04); continuing" ;;
esac
command -v systemctl >/dev/null || die "systemctl not found" "this installer needs a systemd system (apt-get install systemd)"
command -v "$PY" >/dev/null || die "$PY not found" "apt-get install python3 python3-venv, or pass --python"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PY is older than Python 3.10" "install python3.10 or newer and pass --python /usr/bin/python3.X"
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$LIVE" = 1 ] && command -v apt-get >/dev/null; then
    say "installing python3-venv (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
      || die "python3-venv is missing and apt-get could not install it" "connect to the network once, or apt-get install python3-venv from local media"
  else
    die "$PY cannot create virtual environments" "apt-get install python3-venv"
  fi
fi

if [ "$SYSTEM_OPENCV" = 1 ]; then
  if ! "$PY" -c 'import cv2' 2>/dev/null; then
    if [ "$(command -v "$PY")" != /usr/bin/python3 ] && /usr/bin/python3 -c 'import cv2' 2>/dev/null; then
      die "--system-opencv: $PY has no OpenCV (python3 -c 'import cv2' fails), /usr/bin/python3 has one" \
        "pass --python /usr/bin/python3"
    fi
    die "--system-opencv: no system OpenCV for $PY (python3 -c 'import cv2' fails)" \
      "apt-get install python3-opencv (on a Jetson: JetPack's OpenCV, apt-get install nvidia-opencv), or install without --system-opencv to use the pip wheel"
  fi
  say "system OpenCV: $("$PY" -c 'import cv2; print(cv2.__version__, "at", cv2.__file__)')"
fi

# --- user, groups, directories ---------------------------------------------------------------
install -d -m 0755 "$ROOT/etc"
install -D -m 0644 "$SRC/systemd/edge-agent.sysusers" "$SYSUSERS"
if command -v systemd-sysusers >/dev/null; then
  if [ "$LIVE" = 1 ]; then systemd-sysusers edge-agent.conf; else systemd-sysusers --root="$ROOT" edge-agent.conf; fi
else  # very old systems only
  for g in video dialout plugdev; do getent group "$g" >/dev/null || groupadd --system "$g"; done
  id "$USER_NAME" >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/edge-agent --shell /usr/sbin/nologin "$USER_NAME"
  usermod -a -G video,dialout,plugdev "$USER_NAME"
fi
uid=$(awk -F: -v u="$USER_NAME" '$1 == u {print $3}' "$ROOT/etc/passwd")
gid=$(awk -F: -v u="$USER_NAME" '$1 == u {print $4}' "$ROOT/etc/passwd")
[ -n "$uid" ] || die "user $USER_NAME was not created" "check systemd-sysusers' messages above"
install -d -m 0755 "$OPT"
install -d -m 0750 -o 0 -g "$gid" "$CONF"
install -d -m 0750 -o "$uid" -g "$gid" "$STATE"

# --- the agent -------------------------------------------------------------------------------
# the venv sees the system's site-packages exactly when --system-opencv is given; a venv made the
# other way is made again (a pip wheel left in it would hide the system OpenCV)
SYSTEM_SITE=false; [ "$SYSTEM_OPENCV" = 1 ] && SYSTEM_SITE=true
if [ -x "$VENV/bin/python" ] && ! grep -qi "^include-system-site-packages *= *$SYSTEM_SITE" "$VENV/pyvenv.cfg" 2>/dev/null; then
  say "re-creating $VENV (include-system-site-packages = $SYSTEM_SITE)"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV$([ "$SYSTEM_OPENCV" = 1 ] && echo ' (with system site-packages)')"
  if [ "$SYSTEM_OPENCV" = 1 ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
fi
if [ "$PIP" = 1 ]; then
  pip_args=(--disable-pip-version-check --quiet)
  [ -n "$WHEELS" ] && pip_args+=(--no-index --find-links "$WHEELS")
  target="$SRC[opencv]"  # the pip OpenCV wheel (extra "opencv")
  if [ "$SYSTEM_OPENCV" = 1 ]; then
    target="$SRC"
    # the system cv2 is built against the system numpy: a numpy 1.x stays 1.x (numpy 2 breaks its ABI)
    if "$VENV/bin/python" -c 'import numpy, sys; sys.exit(int(numpy.__version__.split(".")[0]) != 1)' 2>/dev/null; then
      echo "numpy<2" >"$OPT/constraints.txt"
      pip_args+=(--constraint "$OPT/constraints.txt")
    fi
  fi
  say "installing edge-agent from $SRC${WHEELS:+ (offline, wheels from $WHEELS)}$([ "$SYSTEM_OPENCV" = 1 ] && echo ', without the pip OpenCV wheel')"
  "$VENV/bin/python" -m pip install "${pip_args[@]}" "$target" \
    || die "pip could not install edge-agent" "online: check the network; offline: the wheelhouse must hold every dependency for this CPU (see docs/install.md)"
  "$VENV/bin/edge-agent" --version >/dev/null || die "the installed edge-agent does not start" "run $VENV/bin/edge-agent --version to see why"
fi
if [ "$SYSTEM_OPENCV" = 1 ]; then
  # the system OpenCV must be what the venv imports: present, loadable, not shadowed by a wheel
  cv=$("$VENV/bin/python" - 2>&1 <<'PYEOF'
import importlib.metadata as md, re, sys
import cv2
wheels = []
for n in ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"):
    try:
        d = md.distribution(n)
    except md.PackageNotFoundError:
        continue
    if str(d.locate_file("")).startswith(sys.prefix):
        wheels.append(n)
gst = "yes" if re.search(r"^\s*GStreamer:\s*YES", cv2.getBuildInformation(), re.M) else "no"
print(f"OpenCV {cv2.__version__} at {cv2.__file__}, GStreamer: {gst}")
if wheels:
    sys.exit("a pip OpenCV wheel in the venv hides it: " + ", ".join(wheels))
PYEOF
  ) || die "the virtual environment cannot use the system OpenCV: ${cv##*$'\n'}" \
    "check that $PY -c 'import cv2' works and that no opencv-python wheel is installed in $VENV (pip uninstall), then run install.sh --system-opencv again"
  say "using the system OpenCV: $cv"
  case "$cv" in *"GStreamer: no") say "warning: this OpenCV has no GStreamer: gst: pipelines (Jetson CSI cameras) cannot open" ;; esac
fi
install -d -m 0755 "$OPT/docs"
[ -f "$SRC/docs/install.md" ] && install -m 0644 "$SRC/docs/install.md" "$OPT/docs/install.md"
install -d -m 0755 "$(dirname "$BIN")"
ln -sfn /opt/edge-agent/venv/bin/edge-agent "$BIN"

# --- systemd and udev ------------------------------------------------------------------------
for u in "${UNITS[@]}"; do install -D -m 0644 "$SRC/systemd/$u" "$UNITDIR/$u"; done
install -D -m 0644 "$SRC/systemd/70-edge-agent.rules" "$RULES"
if [ "$LIVE" = 1 ] && command -v udevadm >/dev/null && [ -d /run/udev ]; then
  udevadm control --reload-rules
  udevadm trigger --action=add --subsystem-match=usb --subsystem-match=tty --subsystem-match=apex || true
fi
[ "$SYSTEMD_UP" = 1 ] && systemctl daemon-reload
systemctl_ enable edge-agent.service edge-agent-retry.timer >/dev/null 2>&1 \
  || die "could not enable edge-agent.service" "run: systemctl enable edge-agent.service and read its message"
say "installed and enabled edge-agent.service and edge-agent-retry.timer"
[ "$SYSTEMD_UP" = 1 ] && systemctl start edge-agent-retry.timer

if [ "$SYSTEMD_UP" = 0 ]; then
  say "systemd is not running here (image build, chroot or container): the service starts at the next boot"
elif [ ! -f "$CONF/config.toml" ]; then
  say "no /etc/edge-agent/config.toml yet: run 'edge-agent provision --bundle FILE.json --device-id ID' (it starts the service)"
elif [ "$START" = 1 ]; then
  systemctl reset-failed edge-agent.service 2>/dev/null || true
  systemctl restart edge-agent.service || die "edge-agent.service did not start" "journalctl -u edge-agent -n 50"
  say "started edge-agent.service; check it with 'edge-agent doctor'"
fi
