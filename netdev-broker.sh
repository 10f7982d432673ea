#!/usr/bin/env bash
# netdev-broker management script, installed as /opt/netdev-broker/netdev-broker.sh by
# install.sh. See docs/install.md.
#
#   sudo /opt/netdev-broker/netdev-broker.sh                 interactive menu
#   sudo /opt/netdev-broker/netdev-broker.sh start|stop|restart|status
#   sudo /opt/netdev-broker/netdev-broker.sh logs [-n N] [--no-follow]
#   sudo /opt/netdev-broker/netdev-broker.sh configure [install.sh configure options]
#   sudo /opt/netdev-broker/netdev-broker.sh upgrade --binary PATH
#   sudo /opt/netdev-broker/netdev-broker.sh nginx --cert PATH --key PATH [--server-name NAME]
#                                                  [--listen [ADDR:]PORT] [--output FILE]
#   sudo /opt/netdev-broker/netdev-broker.sh uninstall [--purge]
#   /opt/netdev-broker/netdev-broker.sh health [--wait SECONDS]
#   /opt/netdev-broker/netdev-broker.sh version
#
# Installed under ROOT/opt/netdev-broker (install.sh --root ROOT), it manages that root: the
# config is ROOT/etc/netdev-broker/config.yml and the files it writes are under ROOT.
set -euo pipefail

readonly SERVICE=netdev-broker
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
# The root this copy belongs to: "" for /opt/netdev-broker, ROOT for ROOT/opt/netdev-broker.
if [[ -n ${NDB_ROOT:-} ]]; then
  ROOT=${NDB_ROOT%/}
elif [[ $HERE == */opt/netdev-broker ]]; then
  ROOT=${HERE%/opt/netdev-broker}
else
  ROOT=""
fi
readonly SELF HERE ROOT
readonly CONF=$ROOT/etc/netdev-broker/config.yml
readonly BIN=$ROOT/opt/netdev-broker/netdev-broker
readonly INSTALLER=$ROOT/opt/netdev-broker/install.sh
readonly NGINX_MARKER="written by netdev-broker.sh nginx"

die() {
  printf 'netdev-broker.sh: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,17p' "$SELF" | sed 's/^# \{0,1\}//'
}

# cfg_get KEY: a top-level scalar of the config (plain or quoted); status 1 if absent.
cfg_get() {
  [[ -r $CONF ]] || return 1
  K=$1 awk '
    index($0, ENVIRON["K"] ":") == 1 {
      v = substr($0, length(ENVIRON["K"]) + 2); sub(/^[ \t]+/, "", v)
      q = substr(v, 1, 1)
      if (q == "\"" || q == "'"'"'") { v = substr(v, 2); sub(q ".*$", "", v) }
      else { sub(/[ \t]+#.*$/, "", v); sub(/[ \t]+$/, "", v) }
      print v; found = 1; exit
    }
    END { exit !found }' "$CONF"
}

# The address to reach the broker on this host (a wildcard bind is reached on loopback).
api_host() {
  local h
  h=$(cfg_get host) || h=127.0.0.1
  case $h in
    0.0.0.0 | "") echo 127.0.0.1 ;;
    :: | "[::]") echo ::1 ;;
    *) echo "$h" ;;
  esac
}
api_port() { cfg_get port || echo 8765; }
url_host() { local h; h=$(api_host); [[ $h == *:* ]] && echo "[$h]" || echo "$h"; }

need_root() { [[ $(id -u) -eq 0 ]] || die "run it as root: sudo $SELF $*"; }
need_systemd() {
  command -v systemctl >/dev/null 2>&1 || die "systemctl not found: this host does not run systemd"
  [[ -z $ROOT ]] || die "installed in $ROOT: a scratch root has no running service"
}

# GET /health with bash's /dev/tcp (no curl needed); prints the body, status 0 on 200.
read -r -d '' HEALTH_GET <<'EOF' || true
exec 3<>"/dev/tcp/$1/$2" || exit 1
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" >&3
resp=$(cat <&3)
status=${resp%%$'\r'*}
[[ $status == "HTTP/1.1 200"* ]] || exit 1
printf '%s\n' "${resp#*$'\r\n\r\n'}"
EOF
readonly HEALTH_GET

health_once() {
  timeout 5 bash -c "$HEALTH_GET" health "$(api_host)" "$(api_port)" 2>/dev/null
}

cmd_health() {
  local wait=0 deadline
  while (($# > 0)); do
    case $1 in
      --wait) wait=${2:?--wait needs seconds}; shift 2 ;;
      *) die "health: unknown option '$1'" ;;
    esac
  done
  deadline=$((SECONDS + wait))
  while true; do
    if health_once; then return 0; fi
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
  echo "no answer from http://$(url_host):$(api_port)/health" >&2
  return 1
}

cmd_status() {
  need_systemd
  systemctl status --no-pager "$SERVICE.service" || true
  printf '\nGET http://%s:%s/health: ' "$(url_host)" "$(api_port)"
  health_once || echo "no answer"
}

cmd_logs() {
  local n=100 follow=1 mode file
  while (($# > 0)); do
    case $1 in
      -n) n=${2:?-n needs a number}; shift 2 ;;
      --no-follow) follow=0; shift ;;
      -f | --follow) follow=1; shift ;;
      *) die "logs: unknown option '$1'" ;;
    esac
  done
  mode=$(cfg_get log_mode) || mode=stdout
  case ${mode,,} in
    file)
      file=$(cfg_get log_file) || file=/var/log/netdev-broker/netdev-broker.log
      [[ -r $file ]] || die "cannot read $file (log_mode: file): run as root, or the broker has not logged yet"
      if ((follow)); then exec tail -n "$n" -F "$file"; else exec tail -n "$n" "$file"; fi
      ;;
    *)
      # stdout and both: the journal has every line.
      command -v journalctl >/dev/null 2>&1 || die "journalctl not found (log_mode: $mode)"
      if ((follow)); then
        exec journalctl -u "$SERVICE.service" -n "$n" -f
      else
        exec journalctl -u "$SERVICE.service" -n "$n" --no-pager
      fi
      ;;
  esac
}

cmd_nginx() {
  local cert="" key="" name=_ listen=443 out="" force=0 port upstream body
  while (($# > 0)); do
    case $1 in
      --cert) cert=${2:?--cert needs a path}; shift 2 ;;
      --key) key=${2:?--key needs a path}; shift 2 ;;
      --server-name) name=${2:?--server-name needs a name}; shift 2 ;;
      --listen) listen=${2:?--listen needs [ADDR:]PORT}; shift 2 ;;
      --output) out=${2:?--output needs a path}; shift 2 ;;
      --force) force=1; shift ;;
      -h | --help)
        cat <<'EOF'
netdev-broker.sh nginx --cert PATH --key PATH [--server-name NAME] [--listen [ADDR:]PORT]
                       [--output FILE] [--force]
Writes an nginx TLS reverse-proxy site for the broker (default: /etc/nginx/sites-available/
netdev-broker, or /etc/nginx/conf.d/netdev-broker.conf where there is no sites-available) and
prints how to enable it. --listen defaults to 443 (all addresses, IPv4 and IPv6).
EOF
        return 0
        ;;
      *) die "nginx: unknown option '$1' (--help)" ;;
    esac
  done
  [[ -n $cert && -n $key ]] || die "nginx needs --cert PATH and --key PATH (the TLS certificate chain and its key)"
  [[ $cert == /* && $key == /* ]] || die "nginx: --cert and --key need absolute paths"
  [[ $name =~ ^[A-Za-z0-9._*-]+$ ]] || die "nginx: --server-name '$name' is not a host name"
  [[ $listen =~ ^([0-9.]+:|\[[0-9A-Fa-f:]+\]:)?[0-9]{1,5}$ ]] || die "nginx: --listen expects PORT or ADDR:PORT"
  [[ -f $cert ]] || echo "netdev-broker.sh: warning: $cert does not exist (yet)" >&2
  [[ -f $key ]] || echo "netdev-broker.sh: warning: $key does not exist (yet)" >&2
  if [[ -z $out ]]; then
    if [[ -d $ROOT/etc/nginx/sites-available || ! -d $ROOT/etc/nginx/conf.d ]]; then
      out=$ROOT/etc/nginx/sites-available/netdev-broker
    else
      out=$ROOT/etc/nginx/conf.d/netdev-broker.conf
    fi
  fi
  if [[ -e $out && $force -eq 0 ]] && ! grep -q "$NGINX_MARKER" "$out"; then
    die "$out exists and was not written by this script: --force overwrites it"
  fi
  port=$(api_port)
  upstream="$(url_host):$port"
  body=$(cfg_get max_body_bytes) || body=1048576
  [[ $body =~ ^[0-9]+$ ]] || body=1048576
  local listens="    listen $listen ssl;"
  [[ $listen =~ ^[0-9]+$ ]] && listens+=$'\n'"    listen [::]:$listen ssl;"
  mkdir -p "$(dirname "$out")"
  (
    umask 022
    cat >"$out" <<EOF
# netdev-broker reverse proxy, $NGINX_MARKER on $(date -u +%Y-%m-%d).
# TLS in front of the broker on $upstream (its API, /health and the web dashboard).
# The broker reads X-Forwarded-For only from addresses in its trusted_proxies (the dashboard's
# login rate limit): netdev-broker.sh configure --trusted-proxies 127.0.0.1
server {
$listens
    server_name $name;

    ssl_certificate     $cert;
    ssl_certificate_key $key;
    ssl_protocols       TLSv1.2 TLSv1.3;
    ssl_session_cache   shared:netdev_broker_tls:1m;
    ssl_session_timeout 1h;

    add_header Strict-Transport-Security "max-age=31536000" always;
    # The broker's own limit (max_body_bytes) answers 413 beyond this anyway.
    client_max_body_size $body;

    location / {
        proxy_pass http://$upstream;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # The broker's own address as Host: its token-less routes (/health, /docs, the
        # dashboard) answer only under one of its names (DNS-rebinding guard); the name the
        # browser used goes in X-Forwarded-Host, and the certificate is what a rebinding name
        # would fail on here.
        proxy_set_header Host \$proxy_host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header X-Forwarded-Host \$host;
        proxy_set_header X-Real-IP \$remote_addr;
        # A device command may take minutes (POST .../exec "timeout").
        proxy_read_timeout 3600s;
        proxy_send_timeout 300s;
        proxy_buffering off;
    }
}
EOF
  )
  echo "wrote $out (TLS on $listen -> http://$upstream)"
  local avail enabled
  case $out in
    */sites-available/*)
      avail=${out#"$ROOT"}
      enabled=${avail/sites-available/sites-enabled}
      echo "enable it with:"
      echo "  sudo ln -s $avail $enabled"
      ;;
    *) echo "enable it with:" ;;
  esac
  echo "  sudo nginx -t && sudo systemctl reload nginx"
  if ! grep -Eq '^trusted_proxies:.*127\.0\.0\.1' "$CONF" 2>/dev/null; then
    echo "and let the dashboard's login rate limit see the real clients (X-Forwarded-For):"
    echo "  sudo $SELF configure --non-interactive --trusted-proxies 127.0.0.1"
  fi
}

run_installer() {
  [[ -x $INSTALLER ]] || die "$INSTALLER not found: reinstall with install.sh"
  if [[ -n $ROOT ]]; then
    exec "$INSTALLER" "$@" --root "$ROOT"
  fi
  exec "$INSTALLER" "$@"
}

menu() {
  local choice
  [[ -t 0 ]] || die "no command given and stdin is not a terminal (--help lists the commands)"
  while true; do
    cat <<EOF

netdev-broker $("$BIN" --version 2>/dev/null | head -n1 | cut -d' ' -f2) on $(url_host):$(api_port)
  1) status       2) start        3) stop         4) restart
  5) logs         6) configure    7) nginx site   8) uninstall
  q) quit
EOF
    read -r -p "choice: " choice || return 0
    case $choice in
      1) (cmd_status) || true ;;
      2) (main start) || true ;;
      3) (main stop) || true ;;
      4) (main restart) || true ;;
      5) (cmd_logs) || true ;;
      6) (run_installer configure) || true ;;
      7)
        local cert key name
        read -r -p "certificate (PEM chain) path: " cert || continue
        read -r -p "private key path: " key || continue
        read -r -p "server name [_]: " name || continue
        (cmd_nginx --cert "$cert" --key "$key" --server-name "${name:-_}") || true
        ;;
      8) (run_installer uninstall) || true ;;
      q | Q | quit | exit) return 0 ;;
      *) echo "1-8 or q" ;;
    esac
  done
}

main() {
  local cmd=${1:-}
  (($# == 0)) || shift
  case $cmd in
    "") menu ;;
    start | stop | restart)
      need_root "$cmd"
      need_systemd
      systemctl "$cmd" "$SERVICE.service"
      echo "$cmd: done"
      if [[ $cmd != stop ]]; then cmd_health --wait 15; fi
      ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    health) cmd_health "$@" ;;
    version) "$BIN" --version ;;
    configure | upgrade | uninstall)
      need_root "$cmd"
      run_installer "$cmd" "$@"
      ;;
    nginx)
      cmd_nginx "$@"
      ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$cmd' (--help lists them)" ;;
  esac
}

main "$@"
