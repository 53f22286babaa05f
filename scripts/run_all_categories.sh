#!/usr/bin/env bash
# Train and evaluate every category of the config, spread over several devices, then print one
# results table. Each device works through its share of the categories one after another;
# finished categories are reused on a rerun, so an interrupted run continues where it stopped.
# Usage: bash scripts/run_all_categories.sh CONFIG DATA_ROOT NUM_DEVICES [section.key=value ...]
#   e.g. bash scripts/run_all_categories.sh configs/mvtec.yaml /data/mvtec 8 runtime.device_target=Ascend
set -euo pipefail

usage="usage: bash $0 CONFIG DATA_ROOT NUM_DEVICES [section.key=value ...]"
if [ "$#" -lt 3 ] || ! [[ "$3" =~ ^[1-9][0-9]*$ ]]; then
  echo "$usage" >&2
  exit 2
fi
config="$1"
data_root="$2"
num_devices="$3"
shift 3

source "$(dirname "$0")/common.sh"

# Resolved list of categories (the config plus any data.categories override).
mapfile -t categories < <(PYTHONPATH="$repo_root" "$python_bin" -m src.config --config "$config" "$@" \
  | "$python_bin" -c 'import sys, yaml; print("\n".join(yaml.safe_load(sys.stdin)["data"]["categories"]))')

pids=()
for (( device = 0; device < num_devices; device++ )); do
  (
    for (( i = device; i < ${#categories[@]}; i += num_devices )); do
      bash "$repo_root/scripts/run_standalone_train.sh" "$config" "$data_root" "${categories[$i]}" "$device" "$@" \
        > /dev/null
    done
  ) &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
if [ "$status" -ne 0 ]; then
  echo "some categories failed; see <output.dir>/logs/<category>.log" >&2
fi
"$python_bin" "$repo_root/eval.py" --config "$config" data.root="$data_root" "$@" --summary-only
exit "$status"
