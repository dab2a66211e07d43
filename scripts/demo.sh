#!/usr/bin/env bash
# borderlink demo: three units on loopback exchange cards, send a seizure alert and a risk profile,
# read and acknowledge them. Every command is printed before it runs, as an operator would type it.
set -euo pipefail

DEMO=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/borderlink-demo.XXXXXX")}
export BORDERLINK_PASSPHRASE="demo-only-passphrase"   # demo only: real nodes use a prompt or --passphrase-fd
export BORDERLINK_AUDIT_CHECKPOINT_INTERVAL=0.5 BORDERLINK_AUDIT_WITNESS_INTERVAL=1  # demo pace
PIDS=()

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { local a out=""; for a in "$@"; do case "$a" in *\ *) out+="'$a' ";; *) out+="$a ";; esac; done
         printf '\033[2m$ %s\033[0m\n' "${out% }"; "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_nodes EXIT

declare -A UNIT=( [bar-pcu]="PCU ME MEBAR" [belgrade-accu]="ACCU RS RSBEG" [skopje-coord]="coordinator MK MKSKP" )
declare -A PORT
NAMES=(bar-pcu belgrade-accu skopje-coord)

say "1. Each unit creates its identity (keys encrypted at rest with Argon2id)"
for n in "${NAMES[@]}"; do
  read -r type cc loc <<<"${UNIT[$n]}"
  PORT[$n]=$(free_port)
  run borderlink --home "$DEMO/$n" init --name "$n" --unit-type "$type" --country "$cc" \
      --location "$loc" --endpoint "https://127.0.0.1:${PORT[$n]}" --kdf-profile interactive
done

say "2. Key custodians exchange contact cards and compare fingerprints out of band"
for n in "${NAMES[@]}"; do run borderlink --home "$DEMO/$n" keys export-card -o "$DEMO/$n.card"; done
for a in "${NAMES[@]}"; do
  for b in "${NAMES[@]}"; do
    [ "$a" = "$b" ] && continue
    fp=$(borderlink --home "$DEMO/$b" keys show --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
    run borderlink --home "$DEMO/$a" peers add "$DEMO/$b.card" --fingerprint "$fp"
  done
done
run borderlink --home "$DEMO/bar-pcu" peers list

say "3. Start the three nodes on loopback"
for n in "${NAMES[@]}"; do
  printf '\033[2m$ borderlink --home %s serve --listen 127.0.0.1:%s &\033[0m\n' "$DEMO/$n" "${PORT[$n]}"
  borderlink --home "$DEMO/$n" serve --listen "127.0.0.1:${PORT[$n]}" 2>"$DEMO/$n.log" &
  PIDS+=($!)
done
for n in "${NAMES[@]}"; do
  python3 - "${PORT[$n]}" "$DEMO/$n/admin.sock" <<'PY'
import os, ssl, sys, time, urllib.request
port, sock = sys.argv[1], sys.argv[2]
# Readiness only (no data is exchanged), so the probe need not pin the node's certificate.
tls = ssl.create_default_context()
tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
for _ in range(1200):  # up to a minute on a loaded machine; a second when idle
    try:
        if urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", timeout=1, context=tls).status == 200 and os.path.exists(sock):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(f"node on port {port} did not start")
PY
done
run borderlink --home "$DEMO/bar-pcu" status

say "4. Bar PCU sends a seizure alert to Belgrade ACCU and the coordinator, and waits for receipts"
borderlink template seizure-alert > "$DEMO/alert.json"
printf '\033[2m$ borderlink template seizure-alert > alert.json\033[0m\n'
run borderlink --home "$DEMO/bar-pcu" send --to belgrade-accu,skopje-coord --type seizure-alert \
    --priority urgent "$DEMO/alert.json" --wait 30
ALERT=$(borderlink --home "$DEMO/bar-pcu" outbox --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')

say "5. Belgrade ACCU reads the alert (decrypted and verified) and acknowledges it"
run borderlink --home "$DEMO/belgrade-accu" inbox
run borderlink --home "$DEMO/belgrade-accu" inbox show "$ALERT"
run borderlink --home "$DEMO/belgrade-accu" inbox ack "$ALERT" --action seized --details "38 kg found in reefer"

say "6. Belgrade ACCU warns Bar PCU with a risk profile"
borderlink template risk-profile > "$DEMO/profile.json"
printf '\033[2m$ borderlink template risk-profile > profile.json\033[0m\n'
run borderlink --home "$DEMO/belgrade-accu" send --to bar-pcu --type risk-profile "$DEMO/profile.json" --wait 30

say "7. Bar PCU sees the feedback and the profile; every recipient's receipt is stored"
for _ in $(seq 1 600); do
  [ "$(borderlink --home "$DEMO/bar-pcu" inbox --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')" -ge 2 ] && break
  sleep 0.1
done
run borderlink --home "$DEMO/bar-pcu" inbox
run borderlink --home "$DEMO/bar-pcu" outbox
run borderlink --home "$DEMO/skopje-coord" status

say "8. Everything above is in each node's tamper-evident audit log, witnessed by its peers"
sleep 2.5
run borderlink --home "$DEMO/bar-pcu" audit log --kind message.
run borderlink --home "$DEMO/bar-pcu" audit verify
run borderlink --home "$DEMO/bar-pcu" status

say "9. Bar PCU's custodian rotates its keys; its peers switch by themselves (same node id)"
run borderlink --home "$DEMO/bar-pcu" keys rotate
for _ in $(seq 1 600); do
  borderlink --home "$DEMO/belgrade-accu" audit log --kind key.rotated --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["items"] else 1)' && break
  sleep 0.1
done
run borderlink --home "$DEMO/belgrade-accu" peers list
run borderlink --home "$DEMO/bar-pcu" send --to belgrade-accu --type seizure-alert "$DEMO/alert.json" --wait 30

say "10. Skopje, the regional coordinator, watches the flow: who sent what to whom, how fast (no contents)"
run borderlink --home "$DEMO/skopje-coord" monitor --once --window 10m
run borderlink --home "$DEMO/skopje-coord" dashboard

say "Done. The nodes stop now; the homes stay in $DEMO. To try by hand:"
cat <<EOT
  export PATH="${BORDERLINK_BIN:-$(dirname "$(command -v borderlink)")}:\$PATH"
  export BORDERLINK_PASSPHRASE=demo-only-passphrase
  borderlink --home $DEMO/bar-pcu serve --listen 127.0.0.1:${PORT[bar-pcu]} &
  borderlink --home $DEMO/belgrade-accu serve --listen 127.0.0.1:${PORT[belgrade-accu]} &
  borderlink template seizure-alert > alert.json     # edit it
  borderlink --home $DEMO/bar-pcu send --to belgrade-accu --type seizure-alert alert.json --wait
  borderlink --home $DEMO/belgrade-accu inbox
  borderlink --home $DEMO/bar-pcu seal --to belgrade-accu --type seizure-alert alert.json -o alert.sealed
  borderlink --home $DEMO/belgrade-accu open alert.sealed      # offline, for removable media
  borderlink --home $DEMO/bar-pcu keys show                    # the key history after step 9
  borderlink --home $DEMO/skopje-coord serve --listen 127.0.0.1:${PORT[skopje-coord]} &
  borderlink --home $DEMO/skopje-coord dashboard               # open the link it prints
  borderlink --home $DEMO/skopje-coord monitor                 # the same, live in the terminal
EOT
