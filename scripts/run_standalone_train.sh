#!/usr/bin/env bash
# Train and evaluate one category on one device.
# Usage: bash scripts/run_standalone_train.sh CONFIG DATA_ROOT CATEGORY [DEVICE_ID] [section.key=value ...]
#   e.g. bash scripts/run_standalone_train.sh configs/mvtec.yaml /data/mvtec bottle 0 \
#            runtime.device_target=Ascend backbone.checkpoint=/weights/patchcore.ckpt
# Logs go to <output.dir>/logs/<category>.log as well as the console.
set -euo pipefail

usage="usage: bash $0 CONFIG DATA_ROOT CATEGORY [DEVICE_ID] [section.key=value ...]"
if [ "$#" -lt 3 ]; then
  echo "$usage" >&2
  exit 2
fi
config="$1"
data_root="$2"
category="$3"
device_id="${4:-0}"
shift $(( $# < 4 ? $# : 4 ))

source "$(dirname "$0")/common.sh"
[ -f "$config" ] || { echo "config file $config does not exist" >&2; exit 2; }
[ -d "$data_root/$category" ] || { echo "no folder $data_root/$category" >&2; exit 2; }

output_dir="$("$python_bin" -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("output", {}).get("dir", "outputs"))' "$config")"
for arg in "$@"; do
  case "$arg" in output.dir=*) output_dir="${arg#output.dir=}" ;; esac
done
mkdir -p "$output_dir/logs"
log="$output_dir/logs/$category.log"

overrides=(data.root="$data_root" data.categories="[$category]" runtime.device_id="$device_id" "$@")
{
  "$python_bin" "$repo_root/train.py" --config "$config" "${overrides[@]}"
  "$python_bin" "$repo_root/eval.py" --config "$config" "${overrides[@]}"
} 2>&1 | tee "$log"
