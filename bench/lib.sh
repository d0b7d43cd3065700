# Shared by the bench scripts: installs the peer implementations on first use.
# Sourced, not run. Peers live in bench/.venv and bench/node_modules (git-ignored).

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$bench_dir/.." && pwd)

ensure_python_peers() {
    if [ ! -x "$bench_dir/.venv/bin/python" ]; then
        python3 -m venv "$bench_dir/.venv"
    fi
    # pip is quick when everything is already there; a half-done venv gets repaired.
    "$bench_dir/.venv/bin/pip" install -q -r "$bench_dir/requirements.txt"
}

ensure_node_peers() {
    if [ ! -d "$bench_dir/node_modules/asterisk-manager" ]; then
        npm ci --prefix "$bench_dir" --no-audit --no-fund
    fi
}
