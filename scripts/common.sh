# Sourced by the run_*.sh scripts: the repository root and the Python interpreter to use.
# PYTHON, when set, wins; else the repository's .venv (made by `make demo` / `make test`);
# else python3 from PATH.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  python_bin="$PYTHON"
elif [ -x "$repo_root/.venv/bin/python" ]; then
  python_bin="$repo_root/.venv/bin/python"
else
  python_bin="python3"
fi
