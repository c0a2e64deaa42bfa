#!/usr/bin/env bash
# Back up and restore Qingling's JetStream data with the nats CLI (see deploy/backup.md).
#
#   deploy/backup.sh backup  DIR   snapshot HZ_CHECKPOINTS, KV_hz_status, HAZARDS, OBJ_hz_evidence
#                                  (those that exist) into DIR/<stream>; DIR must not exist yet.
#                                  Refuses when HAZARDS exists without HZ_CHECKPOINTS: the signed
#                                  checkpoints cannot be rebuilt, so a backup without them is not one
#   deploy/backup.sh restore DIR   restore every stream found in DIR into a server that has none
#                                  of them (Qingling stopped); refuses to overwrite
#
# The connection comes from the nats CLI's usual settings: NATS_URL, NATS_USER / NATS_PASSWORD,
# NATS_CREDS, NATS_NKEY, NATS_CA / NATS_CERT / NATS_KEY, or NATS_CONTEXT. Optional:
#   NATS_CLI=/path/to/nats   the CLI to use (default: nats on PATH; natscli v0.5.0 is tested)
#   REPLICAS=N               on restore, place each stream with N replicas instead of the
#                            backup's own (e.g. 1 when restoring a cluster's backup on one node)
# Exits non-zero on the first failure.
set -euo pipefail

NATS=${NATS_CLI:-nats}

# natscli 0.5 moved `nats stream backup|restore` to `nats backup stream|restore stream` and added
# `nats backup validate`; older CLIs only have the first form.
cli_forms() {
  if "$NATS" backup validate --help >/dev/null 2>&1; then
    BACKUP=(backup stream) RESTORE=(backup restore stream) VALIDATE=(backup validate)
  else
    BACKUP=(stream backup) RESTORE=(stream restore) VALIDATE=()
  fi
}

# Backup order matters because the snapshots are taken one after another, not at one instant:
#  - checkpoints first: they vouch for events already in the log, so taken before HAZARDS they
#    never cover a seq past the backed-up log's end (which verify would call truncated). They are
#    NOT derived state: each instance signs its own from its own acks, and nothing re-derives them;
#  - status next: derived from HAZARDS, restored it is never ahead of the log, so the projections
#    only catch up;
#  - evidence last: an event may name a photo only after the photo was stored, so every photo
#    that a backed-up event names is in the evidence backup.
STREAMS=(HZ_CHECKPOINTS KV_hz_status HAZARDS OBJ_hz_evidence)

say() { printf 'backup.sh: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

exists() { "$NATS" stream info "$1" --json >/dev/null 2>&1; }

# info_field STREAM FIELD: a number from `nats stream info --json`'s state (messages, last_seq).
info_field() {
  "$NATS" stream info "$1" --json | tr -d ' \n' | grep -o "\"$2\":[0-9]*" | head -n1 | cut -d: -f2
}

backup() {
  local dir=$1
  if [[ -e $dir ]]; then die "$dir exists; back up into a new directory"; fi
  "$NATS" account info >/dev/null || die "cannot reach JetStream (check NATS_URL and credentials)"
  if exists HAZARDS && ! exists HZ_CHECKPOINTS; then
    die "HAZARDS exists but HZ_CHECKPOINTS does not (or these credentials cannot see it): the signed checkpoints cannot be rebuilt from the log, so they must be in every backup; check the user's permissions"
  fi
  mkdir -p "$dir"
  local s n=0
  for s in "${STREAMS[@]}"; do
    if ! exists "$s"; then
      say "$s: not on this server, skipped"
      continue
    fi
    say "$s: backing up"
    # Qingling's consumers are ephemeral (ordered consumers, KV watches): none to keep.
    "$NATS" "${BACKUP[@]}" --no-progress --no-consumers "$s" "$dir/$s"
    if [[ ${#VALIDATE[@]} -gt 0 ]]; then
      "$NATS" "${VALIDATE[@]}" --no-progress "$dir/$s" >/dev/null || die "$s: the backup in $dir/$s does not validate"
      say "$s: backup validated"
    fi
    "$NATS" stream info "$s" --json >"$dir/$s.info.json"
    n=$((n + 1))
  done
  [[ $n -gt 0 ]] || die "none of ${STREAMS[*]} exists; is this Qingling's NATS account?"
  {
    echo "qingling backup"
    echo "taken: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "server: ${NATS_URL:-${NATS_CONTEXT:-default context}}"
    for s in "${STREAMS[@]}"; do
      [[ -f $dir/$s.info.json ]] || continue
      echo "$s: messages $(tr -d ' \n' <"$dir/$s.info.json" | grep -o '"messages":[0-9]*' | head -n1 | cut -d: -f2)," \
        "last_seq $(tr -d ' \n' <"$dir/$s.info.json" | grep -o '"last_seq":[0-9]*' | head -n1 | cut -d: -f2) (when its snapshot ended)"
    done
  } >"$dir/MANIFEST"
  cat "$dir/MANIFEST" >&2
  say "done: $dir"
}

restore() {
  local dir=$1 s found=()
  [[ -d $dir ]] || die "$dir: no such backup directory"
  for s in HAZARDS OBJ_hz_evidence KV_hz_status HZ_CHECKPOINTS; do
    [[ -d $dir/$s ]] && found+=("$s")
  done
  [[ ${#found[@]} -gt 0 ]] || die "$dir holds none of ${STREAMS[*]}"
  if [[ -d $dir/HAZARDS && ! -d $dir/HZ_CHECKPOINTS ]]; then
    say "WARNING: $dir has HAZARDS without HZ_CHECKPOINTS; the checkpoints cannot be rebuilt, so verify can then check chains, hashes and signatures but not truncation, removals or events appended bypassing the service"
  fi
  # Refuse before restoring anything: a restore never merges into or replaces a live stream.
  for s in "${found[@]}"; do
    if exists "$s"; then
      die "stream $s already exists on the target. Restore only into a server (or account) without Qingling's streams: stop Qingling first; to replace a broken copy, take a backup of it, then remove it deliberately (HAZARDS denies purge and message deletes, so only deleting the whole stream removes it)."
    fi
  done
  local args=(--no-progress)
  if [[ -n ${REPLICAS:-} ]]; then args+=(--replicas "$REPLICAS"); fi
  for s in "${found[@]}"; do
    say "$s: restoring"
    "$NATS" "${RESTORE[@]}" "${args[@]}" "$dir/$s" >/dev/null
    if [[ -f $dir/$s.info.json ]]; then
      local want got
      want=$(tr -d ' \n' <"$dir/$s.info.json" | grep -o '"last_seq":[0-9]*' | head -n1 | cut -d: -f2)
      got=$(info_field "$s" last_seq)
      # The info was read just after the snapshot; a write during the snapshot makes it newer.
      if [[ -n $want && -n $got && $got -lt $want ]]; then
        say "$s: WARNING restored last_seq $got < $want seen after the backup (writes during the backup are not in it)"
      else
        say "$s: last_seq $got"
      fi
    fi
  done
  if exists HAZARDS; then
    "$NATS" stream info HAZARDS --json | tr -d ' \n' | grep -q '"deny_delete":true' ||
      die "restored HAZARDS lost deny_delete"
    "$NATS" stream info HAZARDS --json | tr -d ' \n' | grep -q '"deny_purge":true' ||
      die "restored HAZARDS lost deny_purge"
    say "HAZARDS: deny_delete and deny_purge still set"
  fi
  if exists HZ_CHECKPOINTS; then
    "$NATS" stream info HZ_CHECKPOINTS --json | tr -d ' \n' | grep -q '"deny_delete":true' ||
      die "restored HZ_CHECKPOINTS lost deny_delete"
    "$NATS" stream info HZ_CHECKPOINTS --json | tr -d ' \n' | grep -q '"deny_purge":true' ||
      die "restored HZ_CHECKPOINTS lost deny_purge"
    say "HZ_CHECKPOINTS: deny_delete and deny_purge still set"
  fi
  say "done. Start Qingling on it and run 'qingling verify' before taking traffic."
}

case ${1:-} in
backup | restore)
  [[ $# -eq 2 ]] || die "usage: $0 backup|restore DIR"
  command -v "$NATS" >/dev/null || die "the nats CLI ($NATS) is not installed: go install github.com/nats-io/natscli/nats@v0.5.0"
  cli_forms
  "$1" "$2"
  ;;
*)
  echo "usage: $0 backup DIR | restore DIR   (see deploy/backup.md)" >&2
  exit 2
  ;;
esac
