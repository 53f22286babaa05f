#!/usr/bin/env bash
# Evaluate already trained categories (all of data.categories unless CATEGORY is given).
# Usage: bash scripts/run_eval.sh CONFIG DATA_ROOT [CATEGORY] [section.key=value ...]
set -euo pipefail

usage="usage: bash $0 CONFIG DATA_ROOT [CATEGORY] [section.key=value ...]"
if [ "$#" -lt 2 ]; then
  echo "$usage" >&2
  exit 2
fi
config="$1"
data_root="$2"
shift 2
overrides=(data.root="$data_root")
if [ "$#" -gt 0 ] && [[ "$1" != *=* ]]; then
  overrides+=(data.categories="[$1]")
  shift
fi

source "$(dirname "$0")/common.sh"
"$python_bin" "$repo_root/eval.py" --config "$config" "${overrides[@]}" "$@"
