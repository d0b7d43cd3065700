#!/usr/bin/env bash
# getModuleUpdate side by side: `pbxlink release-server` answering the update check from its
# release index, and nginx serving the very same JSON as a static file, both loaded by wrk on
# loopback, over plain HTTP (the behind-a-proxy setup) and over TLS (the direct setup).
# Goal (issue 7): pbxlink >= 0.8x nginx's requests/s.
# Needs nginx and wrk (apt-get install nginx-light wrk). Env: DURATION (seconds per run, 10),
# CONNECTIONS (64), THREADS (2). wrk shares the machine with the server under test, the same
# for both; nginx runs one worker per core, like pbxlink's tokio runtime.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_dir"

duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
threads=${THREADS:-2}
results="$bench_dir/out/release.jsonl"
mkdir -p "$bench_dir/out"
: >"$results"

cargo build --release -q -p pbxlink
bin=$repo_dir/target/release/pbxlink
work=$(mktemp -d -t pbxlink-release.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# One certificate for both TLS servers.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

path=/getModuleUpdate/pbxlink/1.0.0
start_pbxlink() { # $1: port, $2..: extra release-server args
    local port=$1
    shift
    PBXLINK_LOG=warn "$bin" --config "$work/pbxlink.toml" release-server \
        --listen "127.0.0.1:$port" --public-url https://releases.example.com "$@" 2>>"$work/pbxlink.log" &
    pids+=($!)
    for _ in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$port/" 2>/dev/null && return; \
        curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return; sleep 0.1; done
    echo "pbxlink release-server did not start:" >&2
    cat "$work/pbxlink.log" >&2
    exit 1
}

cat >"$work/pbxlink.toml" <<TOML
data_dir = "$work/data"
[release]
tls_cert = "$work/cert.pem"
tls_key = "$work/key.pem"
TOML
for version in 1.0.0 1.1.0; do
    "$bin" --config "$work/pbxlink.toml" freepbx package --version "$version" --out "$work" >/dev/null
    "$bin" --config "$work/pbxlink.toml" release publish "$work/pbxlink-$version.tgz" --channel stable >/dev/null
done

plain_port=$(free_port)
tls_port=$(free_port)
start_pbxlink "$plain_port" --plain-http
start_pbxlink "$tls_port"

# nginx serves the exact bytes pbxlink answers, under the same path.
mkdir -p "$work/www$(dirname "$path")"
curl -s "http://127.0.0.1:$plain_port$path" >"$work/www$path"
nginx_plain=$(free_port)
nginx_tls=$(free_port)
cat >"$work/nginx.conf" <<NGINX
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/nginx.error.log;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    client_body_temp_path $work/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_plain;
        listen 127.0.0.1:$nginx_tls ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        root $work/www;
    }
}
NGINX
mkdir -p "$work/tmp"
# nginx workers run as an unprivileged user: let them read the file (mktemp made the dir 0700).
chmod -R a+rX "$work"
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
sleep 0.5
cmp <(curl -s "http://127.0.0.1:$nginx_plain$path") "$work/www$path"

measure() { # $1: name, $2: url
    local rps
    rps=$(wrk -t"$threads" -c"$connections" -d"${duration}s" "$2" | awk '/^Requests\/sec:/ {print $2}')
    printf '{"bench":"release_get_module_update","server":"%s","requests_per_second":%s}\n' "$1" "$rps" >>"$results"
    echo "$rps"
}

echo "getModuleUpdate, wrk -t$threads -c$connections -d${duration}s on loopback ($(nproc) cores)"
for scheme in http https; do
    if [ "$scheme" = http ]; then ours=$plain_port theirs=$nginx_plain; else ours=$tls_port theirs=$nginx_tls; fi
    pbx=$(measure "pbxlink-$scheme" "$scheme://127.0.0.1:$ours$path")
    ngx=$(measure "nginx-$scheme" "$scheme://127.0.0.1:$theirs$path")
    python3 -c "import sys; p, n = map(float, sys.argv[1:]); print(f'$scheme: pbxlink {p:,.0f} req/s, nginx {n:,.0f} req/s, ratio {p / n:.2f}')" "$pbx" "$ngx"
done
