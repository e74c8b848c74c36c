#!/bin/bash
# Runs inside the booted Debian 12 container (systemd as PID 1), as boottest.service; see
# tests/service/boot.py. Boot 1 installs offline and exercises the running service; boot 2 checks
# the boot itself, the doctor and the watchdog. Every result goes to /out; the test reads it.
set -u
OUT=/out
log() { echo "$(date +%T.%N | cut -c1-12) $*" >> $OUT/drive.log; }
state() { systemctl show edge-agent.service -p ActiveState -p SubState -p MainPID -p NRestarts -p StatusText -p Result --no-pager; }
wait_for() {  # wait_for SECONDS CMD...: until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.2
  done
}
finish() { log "phase $PHASE done"; touch "$OUT/phase$PHASE.done"; systemctl poweroff --no-block; exit 0; }

if [ ! -e $OUT/phase1.done ]; then
  PHASE=1
  log "boot 1: installing offline"
  /src/scripts/install.sh --source /src --wheels /wheels > $OUT/install.log 2>&1
  echo $? > $OUT/install.rc
  [ "$(cat $OUT/install.rc)" = 0 ] || finish
  # what `edge-agent provision` would write: the sample clip, the default model from the mirror,
  # and a camera whose file is missing (the agent logs a warning for it and keeps retrying)
  cat > /etc/edge-agent/config.toml <<'TOML'
[device]
id = "boot-test"
site = "lab"
[models]
mirror = "/mirror"
[inference]
num_threads = 1
[api]
enabled = false
[[cameras]]
name = "demo"
source = "/mirror/media/traffic_frames.mp4"
loop = true
[[cameras]]
name = "gone"
source = "/var/lib/edge-agent/gone.mp4"
reconnect_initial_s = 5
reconnect_max_s = 30
TOML
  chown root:edge-agent /etc/edge-agent/config.toml; chmod 0640 /etc/edge-agent/config.toml
  t0=$SECONDS
  systemctl start edge-agent.service; echo $? > $OUT/start.rc   # Type=notify: returns at READY=1
  echo $((SECONDS - t0)) > $OUT/start.seconds
  state > $OUT/state-started.txt
  sleep 2
  systemctl reload edge-agent.service; echo $? > $OUT/reload.rc
  sleep 1
  state > $OUT/state-reloaded.txt
  systemctl status edge-agent.service --no-pager -l > $OUT/status-reloaded.txt 2>&1
  journalctl -u edge-agent.service -b --no-pager -o cat > $OUT/journal-agent.txt
  journalctl -u edge-agent.service -b -p warning --no-pager -o json > $OUT/journal-agent-warning.json
  finish
fi

PHASE=2
log "boot 2: the installed unit at boot"
wait_for 120 sh -c 'systemctl show -p ActiveState --value edge-agent.service | grep -qx active'
state > $OUT/state-boot2.txt
journalctl -b -p warning --no-pager -o json > $OUT/journal-boot2-warning.json
systemd-analyze security edge-agent.service --no-pager > $OUT/security.txt 2>&1
/usr/local/bin/edge-agent doctor --only service --json > $OUT/doctor.json 2> $OUT/doctor.stderr
# the watchdog: a frozen process (SIGSTOP) stops its pings; systemd kills and restarts it
mkdir -p /run/systemd/system/edge-agent.service.d
printf '[Service]\nWatchdogSec=5s\nRestartSec=1s\n' > /run/systemd/system/edge-agent.service.d/50-boot-test.conf
systemctl daemon-reload
systemctl restart edge-agent.service
state > $OUT/state-before-freeze.txt
pid=$(systemctl show -p MainPID --value edge-agent.service)
kill -STOP "$pid"; log "froze $pid"
t0=$SECONDS
wait_for 60 sh -c "p=\$(systemctl show -p MainPID --value edge-agent.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ] && systemctl show -p ActiveState --value edge-agent.service | grep -qx active"
echo $((SECONDS - t0)) > $OUT/watchdog.seconds
state > $OUT/state-after-freeze.txt
journalctl -u edge-agent.service -b --no-pager -o cat | grep -i watchdog > $OUT/journal-watchdog.txt
finish
