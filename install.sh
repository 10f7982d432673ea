#!/usr/bin/env bash
# netdev-broker installer for a (hardened) jump host. See docs/install.md.
#
#   sudo ./install.sh [install] [OPTIONS]   install or reinstall: user, files, config, service
#   sudo ./install.sh configure [OPTIONS]   change the settings of an installation
#   sudo ./install.sh upgrade [OPTIONS]     replace the binary, keep the config, restart
#   sudo ./install.sh uninstall [--purge]   remove service and files; --purge: config, logs,
#                                           state and the service user too
#
# Run `./install.sh --help` for the options. Needs bash, coreutils, awk, useradd/groupadd and
# systemd on the host; never cargo, a compiler or the network.
set -euo pipefail
umask 077

readonly SERVICE=netdev-broker
readonly SVC_USER=netdev-broker
readonly SVC_GROUP=netdev-broker
readonly INSTALL_DIR=/opt/netdev-broker
readonly CONF_DIR=/etc/netdev-broker
readonly CONF=$CONF_DIR/config.yml
readonly UNIT_FILE=/etc/systemd/system/$SERVICE.service
readonly DEFAULT_LOG_FILE=/var/log/netdev-broker/netdev-broker.log
readonly DEFAULT_STATE_DIR=/var/lib/netdev-broker
readonly DEFAULT_CMD_LOG_DIR=/var/log/netdev-broker/commands
readonly NGINX_MARKER="written by netdev-broker.sh nginx"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

usage() {
  cat <<'EOF'
Usage: sudo ./install.sh [install|configure|upgrade|uninstall] [OPTIONS]

Commands:
  install     (default) Create the netdev-broker user and group, install the binary and the
              management script into /opt/netdev-broker, write /etc/netdev-broker/config.yml
              (root:netdev-broker 0640), create the log, state and command-log directories,
              install, enable and start netdev-broker.service. On an existing installation
              the current settings are the defaults.
  configure   Change settings (prompts, or the options below); keeps the unit's writable paths
              and limits in step with the config and restarts a running service. With only
              --add-token/--remove-token: no prompts, only api_tokens changes, and a running
              service is reloaded (systemctl reload), not restarted.
  upgrade     Replace the binary (the old one is kept as netdev-broker.previous) and the
              scripts, keep the config, restart the service if it runs.
  uninstall   Stop and remove the service and /opt/netdev-broker. Config, logs, state and the
              service user stay unless --purge.

Every prompt has an option and an environment variable; the option wins:
  --host ADDR            NDB_HOST           bind address (default 127.0.0.1)
  --port N               NDB_PORT           listen port (default 8765)
  --api-token TOKEN      NDB_API_TOKEN      API token (default: keep the current one, or a
                                            freshly generated 32-byte random hex token)
  --generate-token                          replace the token with a fresh random one
  --log-level LEVEL      NDB_LOG_LEVEL      DEBUG, INFO, WARNING or ERROR (default INFO)
  --log-mode MODE        NDB_LOG_MODE       journal (= stdout under systemd), file or both
                                            (default journal)
  --log-file PATH        NDB_LOG_FILE       (default /var/log/netdev-broker/netdev-broker.log)
  --state-dir PATH       NDB_STATE_DIR      (default /var/lib/netdev-broker)
  --cmd-log-dir PATH|off NDB_CMD_LOG_DIR    per-session command logs (default
                                            /var/log/netdev-broker/commands; off: none)
  --max-sessions N       NDB_MAX_SESSIONS   (default 1000; sizes LimitNOFILE and TasksMax)
  --trusted-proxies LIST NDB_TRUSTED_PROXIES comma-separated addresses/CIDRs whose
                                            X-Forwarded-For the dashboard believes (none: [])
  --add-web-user NAME[:PASSWORD_FILE]       add a dashboard user (or change its password); the
                                            password is PASSWORD_FILE's first line, else
                                            $NDB_WEB_PASSWORD, else asked on the terminal;
                                            hashed with `netdev-broker hash-password`
  --add-web-user-hash NAME:BCRYPT_HASH      add a dashboard user with a ready bcrypt hash
  --remove-web-user NAME                    remove a dashboard user
  --web-secret-key KEY   NDB_WEB_SECRET_KEY dashboard cookie key (default: generated when the
                                            first web user is added)
  --bcrypt-cost N        NDB_BCRYPT_COST    bcrypt cost for new web users (default 12)
  --add-token NAME:ROLE[:EXPIRES]           add a named API token to api_tokens (also
                                            NDB_ADD_TOKEN=NAME:ROLE[:EXPIRES]); ROLE: viewer,
                                            reader, operator or admin; EXPIRES: YYYY-MM-DD (00:00
                                            UTC) or an RFC 3339 time. The binary's `token new`
                                            makes it; the config keeps only its SHA-256 and the
                                            token is printed once. Refused if NAME exists
  --remove-token NAME                       remove the named API token NAME (refused if there is
                                            none); with --add-token NAME:... in the same run:
                                            a new token under the same name

Other options:
  --binary PATH          NDB_BINARY         the netdev-broker binary to install (default: the
                                            one beside install.sh)
  --non-interactive      NDB_NONINTERACTIVE=1  never prompt: options, variables, current
                                            settings and defaults only (also when stdin is not
                                            a terminal)
  -y, --yes                                 do not ask for confirmation (uninstall)
  --purge                                   uninstall: remove config, logs, state, the nginx
                                            site written by netdev-broker.sh and the user too
  --no-systemd                              do not call systemctl (no enable, start, restart)
  --root DIR             NDB_ROOT           install into DIR instead of / (for tests and image
                                            builds): every path, in the files written too, is
                                            DIR-prefixed; the user and group go into
                                            DIR/etc/passwd and DIR/etc/group (useradd --prefix),
                                            files are chowned to their numeric ids; systemd only
                                            gets `systemctl --root DIR enable`, nothing starts
  -h, --help
EOF
}

# --- output -------------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

# --- options ------------------------------------------------------------------------------------
CMD=install
ROOT=${NDB_ROOT:-}
NO_SYSTEMD=0
NONINTERACTIVE=${NDB_NONINTERACTIVE:-0}
ASSUME_YES=0
PURGE=0
BINARY_SRC=${NDB_BINARY:-}
OPT_HOST=${NDB_HOST:-}
OPT_PORT=${NDB_PORT:-}
OPT_TOKEN=${NDB_API_TOKEN:-}
OPT_GENERATE_TOKEN=0
OPT_LOG_LEVEL=${NDB_LOG_LEVEL:-}
OPT_LOG_MODE=${NDB_LOG_MODE:-}
OPT_LOG_FILE=${NDB_LOG_FILE:-}
OPT_STATE_DIR=${NDB_STATE_DIR:-}
OPT_CMD_LOG_DIR=${NDB_CMD_LOG_DIR:-}
OPT_MAX_SESSIONS=${NDB_MAX_SESSIONS:-}
OPT_TRUSTED_PROXIES=${NDB_TRUSTED_PROXIES:-}
OPT_WEB_SECRET_KEY=${NDB_WEB_SECRET_KEY:-}
BCRYPT_COST=${NDB_BCRYPT_COST:-12}
ADD_USERS=()
ADD_HASHES=()
REMOVE_USERS=()
ADD_TOKENS=()
[[ -z ${NDB_ADD_TOKEN:-} ]] || ADD_TOKENS+=("$NDB_ADD_TOKEN")
REMOVE_TOKENS=()
SETTINGS_GIVEN=""

parse_args() {
  local first=1
  while (($# > 0)); do
    local a=$1
    shift
    if ((first)) && [[ $a != -* ]]; then
      case $a in
        install | configure | upgrade | uninstall) CMD=$a ;;
        *) die "unknown command '$a' (install, configure, upgrade, uninstall; --help)" ;;
      esac
      first=0
      continue
    fi
    first=0
    local val=""
    case $a in
      --*=*)
        val=${a#*=}
        a=${a%%=*}
        set -- "$val" "$@"
        ;;
    esac
    need() { (($# > 0)) || die "$a needs a value"; }
    case $a in
      -h | --help)
        usage
        exit 0
        ;;
      --root) need "$@"; ROOT=$1; shift ;;
      --binary) need "$@"; BINARY_SRC=$1; shift ;;
      --no-systemd) NO_SYSTEMD=1 ;;
      --non-interactive) NONINTERACTIVE=1 ;;
      -y | --yes) ASSUME_YES=1 ;;
      --purge) PURGE=1 ;;
      --host) need "$@"; OPT_HOST=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --port) need "$@"; OPT_PORT=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --api-token) need "$@"; OPT_TOKEN=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --generate-token) OPT_GENERATE_TOKEN=1; SETTINGS_GIVEN+=" $a" ;;
      --log-level) need "$@"; OPT_LOG_LEVEL=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --log-mode) need "$@"; OPT_LOG_MODE=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --log-file) need "$@"; OPT_LOG_FILE=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --state-dir) need "$@"; OPT_STATE_DIR=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --cmd-log-dir) need "$@"; OPT_CMD_LOG_DIR=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --max-sessions) need "$@"; OPT_MAX_SESSIONS=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --trusted-proxies) need "$@"; OPT_TRUSTED_PROXIES=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --add-web-user) need "$@"; ADD_USERS+=("$1"); shift; SETTINGS_GIVEN+=" $a" ;;
      --add-web-user-hash) need "$@"; ADD_HASHES+=("$1"); shift; SETTINGS_GIVEN+=" $a" ;;
      --remove-web-user) need "$@"; REMOVE_USERS+=("$1"); shift; SETTINGS_GIVEN+=" $a" ;;
      --add-token) need "$@"; ADD_TOKENS+=("$1"); shift; SETTINGS_GIVEN+=" $a" ;;
      --remove-token) need "$@"; REMOVE_TOKENS+=("$1"); shift; SETTINGS_GIVEN+=" $a" ;;
      --web-secret-key) need "$@"; OPT_WEB_SECRET_KEY=$1; shift; SETTINGS_GIVEN+=" $a" ;;
      --bcrypt-cost) need "$@"; BCRYPT_COST=$1; shift ;;
      *) die "unknown option '$a' (--help lists them)" ;;
    esac
  done
  if [[ -n $ROOT ]]; then
    [[ $ROOT == /* ]] || die "--root needs an absolute path"
    ROOT=${ROOT%/}
  fi
  if ! [[ $BCRYPT_COST =~ ^[0-9]{1,2}$ ]] || ((10#$BCRYPT_COST < 4 || 10#$BCRYPT_COST > 31)); then
    die "--bcrypt-cost must be a number from 4 to 31"
  fi
}

# The path P as seen from here: ROOT-prefixed (ROOT is "" for /).
r() { printf '%s%s' "$ROOT" "$1"; }
# The system path of a path read from a file written with --root (strips the prefix).
unr() {
  if [[ -n $ROOT && $1 == "$ROOT"/* ]]; then
    printf '%s' "${1#"$ROOT"}"
  else
    printf '%s' "$1"
  fi
}

interactive() { [[ $NONINTERACTIVE != 1 && -t 0 ]]; }

# --- config file: read and write top-level keys ------------------------------------------------
# The config is YAML; these helpers handle the subset this installer writes and the example
# file uses: top-level `key: value` lines (plain, "double" or 'single' quoted scalars, flow
# lists `[a, b]`) and block lists under a top-level key. Everything else in the file is kept.
AWK_UNQUOTE='
function unquote(v,   out, i, c) {
  sub(/^[ \t]+/, "", v)
  if (substr(v, 1, 1) == "\"") {
    out = ""
    for (i = 2; i <= length(v); i++) {
      c = substr(v, i, 1)
      if (c == "\\") { i++; out = out substr(v, i, 1); continue }
      if (c == "\"") break
      out = out c
    }
    return out
  }
  if (substr(v, 1, 1) == "'"'"'") {
    out = ""
    for (i = 2; i <= length(v); i++) {
      c = substr(v, i, 1)
      if (c == "'"'"'") {
        if (substr(v, i + 1, 1) == "'"'"'") { out = out c; i++; continue }
        break
      }
      out = out c
    }
    return out
  }
  sub(/[ \t]+#.*$/, "", v)
  sub(/[ \t]+$/, "", v)
  return v
}
function is_key(line, k) {
  return index(line, k ":") == 1 && (length(line) == length(k) + 1 || substr(line, length(k) + 2, 1) ~ /[ \t]/)
}'

# cfg_get FILE KEY: the scalar value of a top-level key; status 1 if the key is absent.
cfg_get() {
  [[ -f $1 ]] || return 1
  K=$2 awk "$AWK_UNQUOTE"'
    is_key($0, ENVIRON["K"]) { print unquote(substr($0, length(ENVIRON["K"]) + 2)); found = 1; exit }
    END { exit !found }' "$1"
}

# cfg_list FILE KEY: the items of a top-level list (flow `[a, "b"]` or block `- a`), one a line.
cfg_list() {
  [[ -f $1 ]] || return 0
  K=$2 awk "$AWK_UNQUOTE"'
    !inb && is_key($0, ENVIRON["K"]) {
      v = substr($0, length(ENVIRON["K"]) + 2); sub(/^[ \t]+/, "", v); sub(/[ \t]+#.*$/, "", v)
      if (substr(v, 1, 1) == "[") {
        v = substr(v, 2); sub(/\][ \t]*$/, "", v)
        n = split(v, parts, ",")
        for (i = 1; i <= n; i++) { p = unquote(parts[i]); if (p != "") print p }
        exit
      }
      inb = 1; next
    }
    inb {
      if ($0 ~ /^[^ \t#-]/) exit
      if ($0 ~ /^[ \t]*-[ \t]*/) { v = $0; sub(/^[ \t]*-[ \t]*/, "", v); v = unquote(v); if (v != "") print v }
    }' "$1"
}

# cfg_web_users FILE: "username<TAB>password_hash" for each web_users entry.
cfg_web_users() {
  [[ -f $1 ]] || return 0
  awk "$AWK_UNQUOTE"'
    function flush() { if (u != "") print u "\t" h; u = ""; h = "" }
    !inb && is_key($0, "web_users") { inb = 1; next }
    inb {
      if ($0 ~ /^[^ \t#-]/) exit
      line = $0
      if (line ~ /^[ \t]*-/) { flush(); sub(/^[ \t]*-[ \t]*/, "", line) }
      sub(/^[ \t]+/, "", line)
      if (line ~ /^username:/) u = unquote(substr(line, 10))
      else if (line ~ /^password_hash:/) h = unquote(substr(line, 15))
    }
    END { flush() }' "$1"
}

# cfg_put FILE KEY TEXT: replace the top-level KEY (its line and any indented or "- " lines
# under it) by TEXT (one or more lines; empty: remove the key); append TEXT if KEY is absent.
cfg_put() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  K=$2 T=$3 awk '
    function is_key(line, k) {
      return index(line, k ":") == 1 && (length(line) == length(k) + 1 || substr(line, length(k) + 2, 1) ~ /[ \t]/)
    }
    skip { if ($0 ~ /^[ \t]/ || $0 ~ /^-/) next; skip = 0 }
    !done && is_key($0, ENVIRON["K"]) { if (ENVIRON["T"] != "") print ENVIRON["T"]; done = 1; skip = 1; next }
    { print }
    END { if (!done && ENVIRON["T"] != "") print ENVIRON["T"] }' "$1" >"$tmp"
  cat "$tmp" >"$1"
  rm -f "$tmp"
}

# cfg_tokens list|remove|add FILE [NAME] [ENTRY]: the named tokens of the top-level block list
# api_tokens. list: their names, one a line. remove: FILE without the item named NAME (its lines
# from its "- " to its last field; comments between items stay), "api_tokens: []" once the
# last is gone. add: FILE with ENTRY (lines of an item indented "  - ", as `token new` prints
# it; re-indented to the list's own items) after the last item, the key appended if absent.
# Every other line is kept byte for byte. Status 3: no item NAME (remove); 4: api_tokens is not
# a block list (flow style: edit it by hand); 5: an item NAME exists (add).
cfg_tokens() {
  M=$1 N=${3:-} E=${4:-} awk "$AWK_UNQUOTE"'
    function ind(s) { match(s, /^[ \t]*/); return RLENGTH }
    function dash(s) { return s ~ /^[ \t]*-([ \t]|$)/ }
    function content(s) { return s !~ /^[ \t]*(#.*)?$/ }
    function pad(n,   s) { s = ""; while (n-- > 0) s = s " "; return s }
    # The entry with its item dash at column `col` (ENTRY has it at 2).
    function entry(col,   out, parts, i, n, l) {
      n = split(ENVIRON["E"], parts, "\n")
      out = ""
      for (i = 1; i <= n; i++) {
        l = parts[i]
        if (l == "") continue
        if (col >= 2) l = pad(col - 2) l
        else l = substr(l, 3 - col)
        out = out l "\n"
      }
      return out
    }
    { L[NR] = $0 }
    END {
      mode = ENVIRON["M"]; want = ENVIRON["N"]; n = NR
      for (k = 1; k <= n; k++) if (is_key(L[k], "api_tokens")) break
      if (k > n) {
        if (mode == "remove") exit 3
        if (mode == "add") {
          for (i = 1; i <= n; i++) print L[i]
          printf "api_tokens:\n%s", entry(2)
        }
        exit 0
      }
      v = substr(L[k], length("api_tokens") + 2); sub(/^[ \t]+/, "", v); sub(/[ \t]*#.*$/, "", v)
      if (v != "" && v != "[]" && v != "~" && v != "null") exit 4
      # The block: indented or "-" lines after the key; blank lines and comments at column 0
      # belong to it only when more of it follows.
      last = k
      for (i = k + 1; i <= n; i++) {
        if (L[i] ~ /^[ \t]/ || L[i] ~ /^-/) { if (content(L[i])) last = i; continue }
        if (L[i] == "" || L[i] ~ /^#/) continue
        break
      }
      # The items: dash lines at the first item'"'"'s indentation.
      items = 0; col = -1
      for (i = k + 1; i <= last; i++) {
        if (!content(L[i])) continue
        if (col < 0 && dash(L[i])) col = ind(L[i])
        if (col >= 0 && dash(L[i]) && ind(L[i]) == col) { items++; first[items] = i }
        else if (items == 0) exit 4
        if (items > 0) stop[items] = i
      }
      # Each item'"'"'s name: the key "name:" at its mapping'"'"'s indentation.
      for (j = 1; j <= items; j++) {
        name[j] = ""
        d = L[first[j]]; sub(/-/, " ", d)
        if (content(d)) kc = ind(d)
        else { kc = -1; for (i = first[j] + 1; i <= stop[j]; i++) if (content(L[i])) { kc = ind(L[i]); break } }
        for (i = first[j]; i <= stop[j]; i++) {
          l = (i == first[j]) ? d : L[i]
          if (ind(l) == kc && substr(l, kc + 1) ~ /^name:/) { name[j] = unquote(substr(l, kc + 6)); break }
        }
      }
      if (mode == "list") {
        for (j = 1; j <= items; j++) if (name[j] != "") print name[j]
        exit 0
      }
      hit = 0
      for (j = 1; j <= items; j++) if (name[j] == want) hit = j
      if (mode == "remove") {
        if (!hit) exit 3
        if (items == 1) {
          rest = substr(L[k], length("api_tokens:") + 1); sub(/^[ \t]*/, "", rest)
          L[k] = "api_tokens: []" (rest == "" ? "" : " " rest)
        }
        for (i = 1; i <= n; i++) if (i < first[hit] || i > stop[hit]) print L[i]
        exit 0
      }
      if (hit) exit 5
      if (items == 0 && v != "") {
        rest = substr(L[k], length("api_tokens:") + 1); sub(/^[ \t]*(\[\]|~|null)[ \t]*/, "", rest)
        L[k] = "api_tokens:" (rest == "" ? "" : " " rest)
      }
      for (i = 1; i <= n; i++) {
        print L[i]
        if (i == last) printf "%s", entry(items ? col : 2)
      }
    }' "$2"
}

# A YAML double-quoted scalar.
yq() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# --- validation ---------------------------------------------------------------------------------
no_ctrl() { [[ $1 != *[[:cntrl:]]* ]]; }
v_host() { [[ -n $1 && $1 =~ ^[A-Za-z0-9.:_-]+$ ]] || { echo "a bind address such as 127.0.0.1, ::1 or 0.0.0.0"; return 1; }; }
v_port() {
  if ! [[ $1 =~ ^[0-9]{1,5}$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
    echo "a port number from 1 to 65535"
    return 1
  fi
}
v_token() {
  if [[ -z $1 ]] || ! no_ctrl "$1" || [[ $1 =~ [[:space:]] ]]; then
    echo "a non-empty token without spaces or control characters"
    return 1
  fi
}
v_level() {
  case ${1^^} in DEBUG | INFO | WARNING | WARN | ERROR) ;; *) echo "DEBUG, INFO, WARNING or ERROR"; return 1 ;; esac
}
v_mode() {
  case ${1,,} in journal | stdout | file | both) ;; *) echo "journal, file or both"; return 1 ;; esac
}
v_path() {
  if ! [[ $1 == /* && $1 != *[[:space:]\"\'\\]* && $1 != */ && $1 != *..* ]] || ! no_ctrl "$1"; then
    echo "an absolute path without spaces, quotes, .. or a trailing /"
    return 1
  fi
}
# A directory the service will own (chown, mode 0700/0750): never a shared system directory.
v_own_dir() {
  v_path "$1" || return 1
  case $1 in
    /bin | /boot | /dev | /etc | /home | /lib* | /media | /mnt | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /var/lib | /var/log | /var/tmp | /var/cache | /var/spool | /etc/* | /home/* | /root/* | /opt/netdev-broker*)
      echo "a directory of the broker's own such as /var/lib/netdev-broker, not the shared $1"
      return 1
      ;;
  esac
}
v_log_file() {
  v_path "$1" || return 1
  v_own_dir "$(dirname "$1")" >/dev/null || {
    echo "a file in a directory of the broker's own, such as $DEFAULT_LOG_FILE (not in $(dirname "$1"))"
    return 1
  }
}
v_dir_or_off() { [[ ${1,,} == off ]] || v_own_dir "$1"; }
v_sessions() {
  if ! [[ $1 =~ ^[0-9]{1,6}$ ]] || ((10#$1 < 1 || 10#$1 > 100000)); then
    echo "a number from 1 to 100000"
    return 1
  fi
}
v_proxies() {
  [[ ${1,,} == none || $1 =~ ^[0-9A-Fa-f.:/]+(,[[:space:]]*[0-9A-Fa-f.:/]+)*$ ]] ||
    { echo "comma-separated addresses or CIDRs, or none"; return 1; }
}
v_username() { [[ $1 =~ ^[A-Za-z0-9._@-]{1,64}$ ]] || { echo "1-64 letters, digits, . _ @ -"; return 1; }; }
v_bcrypt() { [[ $1 =~ ^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$ ]] || { echo "a bcrypt hash (\$2b\$12\$ + 53 characters)"; return 1; }; }

# decide VAR LABEL OPTION_VALUE DEFAULT VALIDATOR: VAR = the option's value if given, else the
# answer to a prompt (interactive), else DEFAULT. Invalid values are refused (re-asked).
decide() {
  local var=$1 label=$2 given=$3 def=$4 check=$5 ans msg
  if [[ -n $given ]]; then
    msg=$("$check" "$given") || die "$label: '$given' is not valid: expected $msg"
    printf -v "$var" '%s' "$given"
    return
  fi
  if interactive; then
    while true; do
      read -r -p "$label [$def]: " ans || die "no answer for '$label'"
      ans=${ans:-$def}
      if msg=$("$check" "$ans"); then
        printf -v "$var" '%s' "$ans"
        return
      fi
      say "  expected $msg"
    done
  fi
  # The current config's value (or the default) is checked too: a hand-edited file must not
  # make the installer chown a shared directory.
  msg=$("$check" "$def") || die "$label: the current value '$def' is not valid here: expected $msg (give a new one with its option)"
  printf -v "$var" '%s' "$def"
}

confirm() {
  local ans
  interactive || return 0
  read -r -p "$1 [y/N]: " ans || return 1
  [[ ${ans,,} == y || ${ans,,} == yes ]]
}

# --- system: user, ids, files, systemd ----------------------------------------------------------
require_root() {
  [[ $(id -u) -eq 0 ]] || die "run it as root: sudo $0 $CMD ..."
}

ensure_user() {
  local pre=()
  if [[ -n $ROOT ]]; then
    # Never the host's /etc/passwd: the scratch root's own files (useradd --prefix).
    pre=(--prefix "$ROOT")
    (umask 022 && mkdir -p "$ROOT/etc")
    local f
    for f in passwd group shadow gshadow; do
      [[ -e $ROOT/etc/$f ]] || install -m "$([[ $f == *sha* ]] && echo 0640 || echo 0644)" /dev/null "$ROOT/etc/$f"
    done
  fi
  if ! id_of group "$SVC_GROUP" >/dev/null; then
    groupadd "${pre[@]}" --system "$SVC_GROUP"
    say "created group $SVC_GROUP${ROOT:+ (in $ROOT/etc/group)}"
  fi
  if ! id_of passwd "$SVC_USER" >/dev/null; then
    useradd "${pre[@]}" --system --gid "$SVC_GROUP" --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --comment "netdev-broker service" "$SVC_USER"
    say "created system user $SVC_USER${ROOT:+ (in $ROOT/etc/passwd)}"
  fi
  SVC_UID=$(id_of passwd "$SVC_USER") || die "user $SVC_USER not found after creating it"
  SVC_GID=$(id_of group "$SVC_GROUP") || die "group $SVC_GROUP not found after creating it"
}

# id_of passwd|group NAME: the numeric id, from ROOT's files (or the host's name service).
id_of() {
  if [[ -z $ROOT ]]; then
    getent "$1" "$2" | cut -d: -f3 | grep .
  else
    [[ -f $ROOT/etc/$1 ]] || return 1
    N=$2 awk -F: '$1 == ENVIRON["N"] { print $3; found = 1; exit } END { exit !found }' "$ROOT/etc/$1"
  fi
}

# mkdir_owned PATH MODE OWNER: PATH (parents 0755 root) with MODE and OWNER (uid:gid).
mkdir_owned() {
  local d
  d=$(r "$1")
  (umask 022 && mkdir -p "$(dirname "$d")")
  install -d -m "$2" -o "${3%%:*}" -g "${3##*:}" "$d"
}

# install_file SRC DEST MODE: atomically (temp file + rename), owner root.
install_file() {
  local dest tmp
  dest=$(r "$2")
  [[ -e $dest && $1 -ef $dest ]] && { chmod "$3" "$dest"; return; }
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  cat "$1" >"$tmp"
  chown 0:0 "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$dest"
}

use_systemd() {
  ((NO_SYSTEMD == 0)) || return 1
  command -v systemctl >/dev/null 2>&1 || {
    warn "systemctl not found: the unit is installed but not enabled or started"
    return 1
  }
  return 0
}

# systemd is running here (not a container or chroot without it).
systemd_running() { [[ -z $ROOT && -d /run/systemd/system ]]; }

# find_source NAME: a file shipped beside install.sh (or already installed).
find_source() {
  local c
  for c in "$SCRIPT_DIR/$1" "$(r "$INSTALL_DIR")/$1"; do
    [[ -f $c ]] && { printf '%s' "$c"; return 0; }
  done
  return 1
}

check_binary() {
  local v
  [[ -f $1 && -x $1 ]] || die "no executable netdev-broker binary at $1 (--binary PATH)"
  v=$("$1" --version 2>/dev/null | head -n1) || die "$1 --version failed: is it a netdev-broker binary for this machine?"
  [[ $v == "netdev-broker "* ]] || die "$1 does not look like netdev-broker (--version said '$v')"
  printf '%s' "$v"
}

# --- settings -------------------------------------------------------------------------------------
load_current() {
  local cfg
  cfg=$(r "$CONF")
  CUR_HOST=$(cfg_get "$cfg" host) || CUR_HOST=127.0.0.1
  CUR_PORT=$(cfg_get "$cfg" port) || CUR_PORT=8765
  CUR_TOKEN=$(cfg_get "$cfg" api_token) || CUR_TOKEN=""
  CUR_LOG_LEVEL=$(cfg_get "$cfg" log_level) || CUR_LOG_LEVEL=INFO
  CUR_LOG_MODE=$(cfg_get "$cfg" log_mode) || CUR_LOG_MODE=stdout
  CUR_LOG_FILE=$(cfg_get "$cfg" log_file) || CUR_LOG_FILE=$DEFAULT_LOG_FILE
  CUR_STATE_DIR=$(cfg_get "$cfg" state_dir) || CUR_STATE_DIR=$DEFAULT_STATE_DIR
  if [[ -f $cfg ]]; then
    CUR_CMD_LOG_DIR=$(cfg_get "$cfg" cmd_log_dir) || CUR_CMD_LOG_DIR=""
  else
    CUR_CMD_LOG_DIR=$DEFAULT_CMD_LOG_DIR
  fi
  CUR_MAX_SESSIONS=$(cfg_get "$cfg" max_sessions) || CUR_MAX_SESSIONS=1000
  CUR_WEB_SECRET_KEY=$(cfg_get "$cfg" web_secret_key) || CUR_WEB_SECRET_KEY=""
  local p
  CUR_PROXIES=""
  while IFS= read -r p; do CUR_PROXIES+=${CUR_PROXIES:+,}$p; done < <(cfg_list "$cfg" trusted_proxies)
  [[ -n $CUR_PROXIES ]] || CUR_PROXIES=none
  CUR_LOG_FILE=$(unr "$CUR_LOG_FILE")
  CUR_STATE_DIR=$(unr "$CUR_STATE_DIR")
  CUR_CMD_LOG_DIR=$(unr "$CUR_CMD_LOG_DIR")
  [[ -n $CUR_CMD_LOG_DIR ]] || CUR_CMD_LOG_DIR=off
  [[ $CUR_LOG_MODE == stdout ]] && CUR_LOG_MODE=journal
  WEB_NAMES=()
  WEB_HASHES=()
  local u h
  while IFS=$'\t' read -r u h; do
    WEB_NAMES+=("$u")
    WEB_HASHES+=("$h")
  done < <(cfg_web_users "$cfg")
}

web_user_index() {
  local i
  for i in "${!WEB_NAMES[@]}"; do
    [[ ${WEB_NAMES[$i]} == "$1" ]] && { echo "$i"; return 0; }
  done
  return 1
}

web_set() {
  local i
  if i=$(web_user_index "$1"); then
    WEB_HASHES[i]=$2
    say "web user $1: password changed"
  else
    WEB_NAMES+=("$1")
    WEB_HASHES+=("$2")
    say "web user $1: added"
  fi
}

web_remove() {
  local i names=() hashes=()
  if ! i=$(web_user_index "$1"); then
    warn "web user $1 does not exist: nothing to remove"
    return 0
  fi
  for i in "${!WEB_NAMES[@]}"; do
    [[ ${WEB_NAMES[$i]} == "$1" ]] && continue
    names+=("${WEB_NAMES[$i]}")
    hashes+=("${WEB_HASHES[$i]}")
  done
  WEB_NAMES=("${names[@]}")
  WEB_HASHES=("${hashes[@]}")
  say "web user $1: removed"
}

# hash_password BIN [PASSWORD_FILE]: a bcrypt hash from the binary's hash-password. The password
# goes through a pipe (never argv): from the file's first line, $NDB_WEB_PASSWORD, or the
# terminal (the binary asks twice without echo).
hash_password() {
  local bin=$1 file=${2:-} pw
  if [[ -n $file ]]; then
    [[ -r $file ]] || die "cannot read the password file $file"
    IFS= read -r pw <"$file" || [[ -n $pw ]] || die "the password file $file is empty"
    printf '%s\n' "$pw" | "$bin" hash-password --cost "$BCRYPT_COST"
  elif [[ -n ${NDB_WEB_PASSWORD:-} ]]; then
    printf '%s\n' "$NDB_WEB_PASSWORD" | "$bin" hash-password --cost "$BCRYPT_COST"
  elif interactive; then
    "$bin" hash-password --cost "$BCRYPT_COST" </dev/tty
  else
    die "no password for the new web user: give NAME:PASSWORD_FILE, set NDB_WEB_PASSWORD, or run interactively"
  fi
}

# --- named API tokens (api_tokens:) ---------------------------------------------------------
# plan_tokens BIN CFG: check the --remove-token and --add-token requests against CFG and make the
# new tokens with BIN's `token new`, before anything is written: TOKEN_NAMES, TOKEN_ROLES,
# TOKEN_EXPIRES, TOKEN_ENTRIES and TOKEN_SECRETS hold what edit_tokens writes and show_tokens
# prints.
plan_tokens() {
  local bin=$1 cfg=$2 names=() spec name rest role expires out rc n i args
  TOKEN_NAMES=()
  TOKEN_ROLES=()
  TOKEN_EXPIRES=()
  TOKEN_ENTRIES=()
  TOKEN_SECRETS=()
  ((${#ADD_TOKENS[@]} + ${#REMOVE_TOKENS[@]} > 0)) || return 0
  if [[ -f $cfg ]]; then
    rc=0
    out=$(cfg_tokens list "$cfg") || rc=$?
    ((rc != 4)) || die "api_tokens in $CONF is not a block list (- name: ...): edit it by hand"
    ((rc == 0)) || die "cannot read api_tokens from $CONF"
    [[ -z $out ]] || mapfile -t names <<<"$out"
  fi
  for name in "${REMOVE_TOKENS[@]}"; do
    i=-1
    for n in "${!names[@]}"; do [[ ${names[$n]} == "$name" ]] && i=$n; done
    ((i >= 0)) || die "--remove-token: there is no API token named '$name' in $CONF${names[*]:+ (there are: ${names[*]})}"
    unset 'names[i]'
    names=("${names[@]}")
  done
  if ((${#ADD_TOKENS[@]} > 0)); then
    "$bin" --help 2>/dev/null | grep -q 'token new' ||
      die "--add-token: $bin does not know 'token new' (upgrade it first: install.sh upgrade)"
  fi
  for spec in "${ADD_TOKENS[@]}"; do
    [[ $spec == *:* ]] || die "--add-token needs NAME:ROLE[:EXPIRES] (ROLE: viewer, reader, operator or admin)"
    name=${spec%%:*}
    rest=${spec#*:}
    role=${rest%%:*}
    expires=""
    [[ $rest == *:* ]] && expires=${rest#*:}
    for n in "${names[@]}"; do
      [[ $n != "$name" ]] || die "--add-token: an API token named '$name' exists already (--remove-token $name first to replace it)"
    done
    args=(token new --name "$name" --role "$role")
    [[ -z $expires ]] || args+=(--expires "$expires")
    out=$("$bin" "${args[@]}" 2>&1) || die "--add-token $spec: $(printf '%s\n' "$out" | head -n1 | sed 's/^netdev-broker: //')"
    names+=("$name")
    TOKEN_NAMES+=("$name")
    TOKEN_ROLES+=("$role")
    TOKEN_EXPIRES+=("$expires")
    TOKEN_SECRETS+=("$(printf '%s\n' "$out" | grep -m1 '^ndb_')")
    TOKEN_ENTRIES+=("$(printf '%s\n' "$out" | grep '^  ')")
    [[ -n ${TOKEN_SECRETS[-1]} && -n ${TOKEN_ENTRIES[-1]} ]] || die "--add-token $spec: unexpected output from '$bin token new'"
  done
}

# edit_tokens FILE: the planned removals and additions, in FILE (nothing else changes).
edit_tokens() {
  local f=$1 tmp name i
  ((${#ADD_TOKENS[@]} + ${#REMOVE_TOKENS[@]} > 0)) || return 0
  tmp=$(mktemp "$f.XXXXXX")
  for name in "${REMOVE_TOKENS[@]}"; do
    cfg_tokens remove "$f" "$name" >"$tmp" || { rm -f "$tmp"; return 1; }
    cat "$tmp" >"$f"
    say "API token $name: removed"
  done
  for i in "${!TOKEN_ENTRIES[@]}"; do
    cfg_tokens add "$f" "${TOKEN_NAMES[$i]}" "${TOKEN_ENTRIES[$i]}" >"$tmp" || { rm -f "$tmp"; return 1; }
    cat "$tmp" >"$f"
  done
  rm -f "$tmp"
}

# show_tokens: each new token, once, after the config holding its hash is in place.
show_tokens() {
  local i
  for i in "${!TOKEN_SECRETS[@]}"; do
    say "API token ${TOKEN_NAMES[$i]}: added (role ${TOKEN_ROLES[$i]}${TOKEN_EXPIRES[$i]:+, expires ${TOKEN_EXPIRES[$i]}}); the config keeps only its SHA-256."
    say "  The token, shown only now (clients send it as X-API-Token):"
    say "  ${TOKEN_SECRETS[$i]}"
  done
}

# The settings as they are in the config (upgrade and uninstall change none).
settings_from_current() {
  HOST=$CUR_HOST
  PORT=$CUR_PORT
  TOKEN=$CUR_TOKEN
  LOG_LEVEL=$CUR_LOG_LEVEL
  LOG_MODE=$CUR_LOG_MODE
  LOG_FILE=$CUR_LOG_FILE
  STATE_DIR=$CUR_STATE_DIR
  CMD_LOG_DIR=$CUR_CMD_LOG_DIR
  MAX_SESSIONS=$CUR_MAX_SESSIONS
  [[ $MAX_SESSIONS =~ ^[0-9]+$ ]] || MAX_SESSIONS=1000
}

# gather BIN: decide every setting (options, prompts, current values, defaults).
gather() {
  local bin=$1 def_token token_label msg
  load_current
  decide HOST "Bind address (keep it on loopback unless a proxy or firewall guards it)" "$OPT_HOST" "$CUR_HOST" v_host
  decide PORT "Port" "$OPT_PORT" "$CUR_PORT" v_port
  PORT=$((10#$PORT))
  if ((OPT_GENERATE_TOKEN)) || [[ -z $CUR_TOKEN ]]; then
    def_token=$(random_hex)
    token_label="API token (Enter: the freshly generated one shown)"
    TOKEN_GENERATED=1
  else
    def_token=$CUR_TOKEN
    token_label="API token (Enter: keep the current one)"
    TOKEN_GENERATED=0
  fi
  if [[ -z $OPT_TOKEN ]] && interactive; then
    local ans shown=$def_token
    ((TOKEN_GENERATED)) || shown="current"
    while true; do
      read -r -p "$token_label [$shown]: " ans || die "no answer for the API token"
      [[ -n $ans ]] || { TOKEN=$def_token; break; }
      if msg=$(v_token "$ans"); then
        TOKEN=$ans
        TOKEN_GENERATED=0
        break
      fi
      say "  expected $msg"
    done
  elif [[ -n $OPT_TOKEN ]]; then
    decide TOKEN "API token" "$OPT_TOKEN" "" v_token
    TOKEN_GENERATED=0
  else
    TOKEN=$def_token
  fi
  ((${#TOKEN} >= 16)) || warn "the API token is short (${#TOKEN} characters): anyone who guesses it drives your network"
  decide LOG_LEVEL "Log level (DEBUG, INFO, WARNING, ERROR)" "$OPT_LOG_LEVEL" "$CUR_LOG_LEVEL" v_level
  LOG_LEVEL=${LOG_LEVEL^^}
  decide LOG_MODE "Log mode (journal, file, both)" "$OPT_LOG_MODE" "$CUR_LOG_MODE" v_mode
  LOG_MODE=${LOG_MODE,,}
  [[ $LOG_MODE == stdout ]] && LOG_MODE=journal
  if [[ $LOG_MODE == journal && -z $OPT_LOG_FILE ]]; then
    # Not asked (nothing is written there), but its directory is still made and owned.
    LOG_FILE=$CUR_LOG_FILE
    msg=$(v_log_file "$LOG_FILE") || die "log_file: the current value '$LOG_FILE' is not valid here: expected $msg (--log-file)"
  else
    decide LOG_FILE "Log file" "$OPT_LOG_FILE" "$CUR_LOG_FILE" v_log_file
  fi
  decide STATE_DIR "State directory (the broker's known_hosts)" "$OPT_STATE_DIR" "$CUR_STATE_DIR" v_own_dir
  decide CMD_LOG_DIR "Command log directory (off: none)" "$OPT_CMD_LOG_DIR" "$CUR_CMD_LOG_DIR" v_dir_or_off
  [[ ${CMD_LOG_DIR,,} == off ]] && CMD_LOG_DIR=off
  decide MAX_SESSIONS "Most sessions open at once" "$OPT_MAX_SESSIONS" "$CUR_MAX_SESSIONS" v_sessions
  MAX_SESSIONS=$((10#$MAX_SESSIONS))
  decide PROXIES "Trusted reverse proxies for the dashboard (e.g. 127.0.0.1 behind nginx; none)" "$OPT_TRUSTED_PROXIES" "$CUR_PROXIES" v_proxies
  [[ ${PROXIES,,} == none ]] && PROXIES=none

  # Web dashboard users.
  local spec name file hash msg
  for name in "${REMOVE_USERS[@]}"; do
    web_remove "$name"
  done
  for spec in "${ADD_USERS[@]}"; do
    name=${spec%%:*}
    file=""
    [[ $spec == *:* ]] && file=${spec#*:}
    msg=$(v_username "$name") || die "--add-web-user: '$name' is not valid: expected $msg"
    hash=$(hash_password "$bin" "$file") || die "hashing the password of $name failed"
    web_set "$name" "$hash"
  done
  for spec in "${ADD_HASHES[@]}"; do
    [[ $spec == *:* ]] || die "--add-web-user-hash needs NAME:HASH"
    name=${spec%%:*}
    hash=${spec#*:}
    msg=$(v_username "$name") || die "--add-web-user-hash: '$name' is not valid: expected $msg"
    msg=$(v_bcrypt "$hash") || die "--add-web-user-hash $name: expected $msg"
    web_set "$name" "$hash"
  done
  if interactive && ((${#ADD_USERS[@]} + ${#ADD_HASHES[@]} + ${#REMOVE_USERS[@]} == 0)); then
    web_prompts "$bin"
  fi
  WEB_SECRET_KEY=${OPT_WEB_SECRET_KEY:-$CUR_WEB_SECRET_KEY}
  if ((${#WEB_NAMES[@]} > 0)) && [[ -z $WEB_SECRET_KEY ]]; then
    WEB_SECRET_KEY=$(random_hex)
    say "generated web_secret_key (the dashboard is enabled)"
  fi
  [[ -z $WEB_SECRET_KEY ]] || v_token "$WEB_SECRET_KEY" >/dev/null || die "--web-secret-key: no spaces or control characters"
  [[ -z $WEB_SECRET_KEY || ${#WEB_SECRET_KEY} -ge 32 ]] || die "--web-secret-key: at least 32 characters (the broker refuses a shorter key; openssl rand -hex 32)"
  plan_tokens "$bin" "$(r "$CONF")"
}

web_prompts() {
  local bin=$1 name msg hash
  if ((${#WEB_NAMES[@]} == 0)); then
    confirm "Enable the web dashboard (operators log in with a username and password)?" || return 0
  else
    say "Web dashboard users: ${WEB_NAMES[*]}"
    while true; do
      read -r -p "Remove a web user (Enter: none): " name || break
      [[ -n $name ]] || break
      web_remove "$name"
    done
  fi
  while true; do
    if ((${#WEB_NAMES[@]} == 0)); then
      read -r -p "Web user to add: " name || break
      [[ -n $name ]] || { say "  no user: the dashboard stays off"; break; }
    else
      read -r -p "Add a web user or change a password (Enter: done): " name || break
      [[ -n $name ]] || break
    fi
    if ! msg=$(v_username "$name"); then
      say "  expected $msg"
      continue
    fi
    hash=$(hash_password "$bin" "") || { say "  not added"; continue; }
    web_set "$name" "$hash"
  done
}

# --- writing ----------------------------------------------------------------------------------------
config_template() {
  local t
  if t=$(find_source config.example.yml); then
    cat "$t"
  else
    cat <<'EOF'
# netdev-broker configuration (config.example.yml documents every key).
host: 127.0.0.1
port: 8765
api_token: ""
log_level: INFO
log_mode: stdout
log_file: /var/log/netdev-broker/netdev-broker.log
cmd_log_dir: ""
state_dir: /var/lib/netdev-broker
max_sessions: 1000
EOF
  fi
}

write_config() {
  local bin=$1 cfg tmp web="" i proxies="" p
  cfg=$(r "$CONF")
  tmp=$(mktemp "$(dirname "$cfg")/.config.yml.XXXXXX")
  if [[ -f $cfg ]]; then
    cat "$cfg" >"$tmp"
  else
    {
      printf '# Written by install.sh on %s. Change it with "netdev-broker.sh configure", or edit it\n' "$(date -u +%Y-%m-%d)"
      printf '# and run "netdev-broker.sh configure --non-interactive" to bring the unit in step.\n'
      config_template
    } >"$tmp"
  fi
  cfg_put "$tmp" host "host: $(yq "$HOST")"
  cfg_put "$tmp" port "port: $PORT"
  cfg_put "$tmp" api_token "api_token: $(yq "$TOKEN")"
  cfg_put "$tmp" log_level "log_level: $LOG_LEVEL"
  cfg_put "$tmp" log_mode "log_mode: $([[ $LOG_MODE == journal ]] && echo stdout || echo "$LOG_MODE")"
  cfg_put "$tmp" log_file "log_file: $(yq "$(r "$LOG_FILE")")"
  cfg_put "$tmp" state_dir "state_dir: $(yq "$(r "$STATE_DIR")")"
  if [[ $CMD_LOG_DIR == off ]]; then
    cfg_put "$tmp" cmd_log_dir 'cmd_log_dir: ""'
  else
    cfg_put "$tmp" cmd_log_dir "cmd_log_dir: $(yq "$(r "$CMD_LOG_DIR")")"
  fi
  cfg_put "$tmp" max_sessions "max_sessions: $MAX_SESSIONS"
  if [[ $PROXIES != none ]]; then
    local list=()
    IFS=, read -r -a list <<<"$PROXIES"
    for p in "${list[@]}"; do
      p=${p//[[:space:]]/}
      [[ -z $p ]] || proxies+=${proxies:+, }$(yq "$p")
    done
  fi
  cfg_put "$tmp" trusted_proxies "trusted_proxies: [$proxies]"
  if [[ -n $WEB_SECRET_KEY ]]; then
    cfg_put "$tmp" web_secret_key "web_secret_key: $(yq "$WEB_SECRET_KEY")"
  fi
  if ((${#WEB_NAMES[@]} > 0)); then
    web="web_users:"
    for i in "${!WEB_NAMES[@]}"; do
      web+=$'\n'"  - username: $(yq "${WEB_NAMES[$i]}")"$'\n'"    password_hash: $(yq "${WEB_HASHES[$i]}")"
    done
  fi
  cfg_put "$tmp" web_users "$web"
  edit_tokens "$tmp" || { rm -f "$tmp"; die "cannot edit api_tokens in $CONF; nothing changed"; }
  chown "0:$SVC_GID" "$tmp"
  chmod 0640 "$tmp"
  check_new_config "$bin" "$tmp"
  mv -f "$tmp" "$cfg"
  say "wrote $cfg (root:$SVC_GROUP 0640)"
  show_tokens
}

# check_new_config BIN TMP: a binary that knows `check-config` validates the file before it
# replaces the old one (TMP is removed if refused).
check_new_config() {
  if "$1" --help 2>/dev/null | grep -q 'check-config'; then
    "$1" check-config --config "$2" >/dev/null || {
      rm -f "$2"
      die "the new config was refused by '$1 check-config'; nothing changed"
    }
  fi
}

# Only --add-token/--remove-token were given (no other option or NDB_ setting).
tokens_only() {
  ((${#ADD_TOKENS[@]} + ${#REMOVE_TOKENS[@]} > 0)) || return 1
  [[ -z $OPT_HOST$OPT_PORT$OPT_TOKEN$OPT_LOG_LEVEL$OPT_LOG_MODE$OPT_LOG_FILE$OPT_STATE_DIR ]] || return 1
  [[ -z $OPT_CMD_LOG_DIR$OPT_MAX_SESSIONS$OPT_TRUSTED_PROXIES$OPT_WEB_SECRET_KEY ]] || return 1
  ((OPT_GENERATE_TOKEN == 0 && ${#ADD_USERS[@]} + ${#ADD_HASHES[@]} + ${#REMOVE_USERS[@]} == 0))
}

# configure with token changes only: no prompts; api_tokens is edited and every other byte of
# the config kept; the file is checked, then a running service reloaded (SIGHUP applies token
# changes without a restart, sessions stay open).
configure_tokens() {
  local bin=$1 cfg tmp
  cfg=$(r "$CONF")
  plan_tokens "$bin" "$cfg"
  tmp=$(mktemp "$(dirname "$cfg")/.config.yml.XXXXXX")
  cat "$cfg" >"$tmp"
  edit_tokens "$tmp" || { rm -f "$tmp"; die "cannot edit api_tokens in $CONF; nothing changed"; }
  chown "0:$SVC_GID" "$tmp"
  chmod 0640 "$tmp"
  check_new_config "$bin" "$tmp"
  mv -f "$tmp" "$cfg"
  say "wrote $cfg (api_tokens only; root:$SVC_GROUP 0640)"
  show_tokens
  reload_service
}

# reload_service: `systemctl reload` a running service (the broker rereads its config on SIGHUP).
reload_service() {
  if ((NO_SYSTEMD)) || [[ -n $ROOT ]]; then
    say "not reloaded ($([[ -n $ROOT ]] && echo "a scratch root" || echo "--no-systemd")): the tokens apply at the next reload or start"
    return 0
  fi
  use_systemd || return 0
  if ! systemd_running; then
    warn "systemd is not running here: the tokens apply when $SERVICE starts"
    return 0
  fi
  if systemctl is-active --quiet "$SERVICE.service"; then
    systemctl reload "$SERVICE.service"
    say "reloaded $SERVICE.service (no restart: sessions stay open)"
  else
    say "$SERVICE.service is not running: the tokens apply when it starts"
  fi
}

# The directories the service writes to (system paths, unique, in order).
rw_dirs() {
  local d seen=" "
  for d in "$(dirname "$LOG_FILE")" "$STATE_DIR" "$([[ $CMD_LOG_DIR == off ]] || echo "$CMD_LOG_DIR")"; do
    [[ -n $d && $seen != *" $d "* ]] || continue
    seen+="$d "
    printf '%s\n' "$d"
  done
}

make_dirs() {
  local owner="$SVC_UID:$SVC_GID"
  mkdir_owned "$INSTALL_DIR" 0755 0:0
  mkdir_owned "$CONF_DIR" 0750 "0:$SVC_GID"
  mkdir_owned "$(dirname "$LOG_FILE")" 0750 "$owner"
  mkdir_owned "$STATE_DIR" 0700 "$owner"
  [[ $CMD_LOG_DIR == off ]] || mkdir_owned "$CMD_LOG_DIR" 0750 "$owner"
}

write_unit() {
  local template unit nofile tasks conns paths="" d
  template=$(find_source "$SERVICE.service") || die "netdev-broker.service not found beside install.sh"
  conns=$(cfg_get "$(r "$CONF")" max_connections) || conns=512
  [[ $conns =~ ^[0-9]+$ ]] || conns=512
  # One thread and one socket per session and per HTTP connection; a command-log file per
  # session at most; workers, DNS helpers, logs and slack on top.
  nofile=$((2 * MAX_SESSIONS + conns + 1024))
  nofile=$(((nofile + 1023) / 1024 * 1024))
  tasks=$((MAX_SESSIONS + conns + 256))
  while IFS= read -r d; do paths+=${paths:+ }$(r "$d"); done < <(rw_dirs)
  unit=$(r "$UNIT_FILE")
  (umask 022 && mkdir -p "$(dirname "$unit")")
  local tmp
  tmp=$(mktemp "$(dirname "$unit")/.$SERVICE.service.XXXXXX")
  EXEC="$(r "$INSTALL_DIR")/netdev-broker serve --config $(r "$CONF")" NOFILE=$nofile TASKS=$tasks RW=$paths awk '
    /^ExecStart=/ { print "ExecStart=" ENVIRON["EXEC"]; next }
    /^LimitNOFILE=/ { print "LimitNOFILE=" ENVIRON["NOFILE"]; next }
    /^TasksMax=/ { print "TasksMax=" ENVIRON["TASKS"]; next }
    /^ReadWritePaths=/ { print "ReadWritePaths=" ENVIRON["RW"]; next }
    { print }' "$template" >"$tmp"
  chown 0:0 "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$unit"
  say "wrote $unit (LimitNOFILE=$nofile, TasksMax=$tasks, ReadWritePaths=$paths)"
}

install_files() {
  local bin=$1 f src
  install_file "$bin" "$INSTALL_DIR/netdev-broker" 0755
  for f in netdev-broker.sh install.sh; do
    src=$(find_source "$f") || die "$f not found beside install.sh"
    install_file "$src" "$INSTALL_DIR/$f" 0755
  done
  for f in "$SERVICE.service" config.example.yml; do
    if src=$(find_source "$f"); then
      install_file "$src" "$INSTALL_DIR/$f" 0644
    fi
  done
}

# health: ask the installed management script to wait for GET /health.
health_check() {
  "$(r "$INSTALL_DIR")/netdev-broker.sh" health --wait 15 || {
    warn "the service did not answer /health: see 'netdev-broker.sh logs' or 'journalctl -u $SERVICE'"
    return 1
  }
}

# systemd_apply enable|restart|try-restart
systemd_apply() {
  use_systemd || return 0
  if [[ -n $ROOT ]]; then
    [[ $1 == enable ]] && systemctl --root="$ROOT" enable "$SERVICE.service" >/dev/null 2>&1 &&
      say "enabled $SERVICE.service in $ROOT (nothing is started in a scratch root)"
    return 0
  fi
  if ! systemd_running; then
    warn "systemd is not running here: $SERVICE.service is installed but not started"
    return 0
  fi
  systemctl daemon-reload
  case $1 in
    enable)
      systemctl enable "$SERVICE.service" >/dev/null 2>&1
      systemctl restart "$SERVICE.service"
      say "started $SERVICE.service"
      health_check
      ;;
    restart)
      if systemctl is-active --quiet "$SERVICE.service"; then
        systemctl restart "$SERVICE.service"
        say "restarted $SERVICE.service"
        health_check
      else
        say "$SERVICE.service is not running: start it with 'netdev-broker.sh start'"
      fi
      ;;
  esac
}

require_installed() {
  [[ -x $(r "$INSTALL_DIR")/netdev-broker && -f $(r "$CONF") ]] ||
    die "netdev-broker is not installed${ROOT:+ in $ROOT} (run: sudo ./install.sh install)"
}

# --- commands -------------------------------------------------------------------------------------
cmd_install() {
  local bin=${BINARY_SRC:-$SCRIPT_DIR/netdev-broker} version
  version=$(check_binary "$bin")
  say "installing $version${ROOT:+ into $ROOT}"
  ensure_user
  gather "$bin"
  make_dirs
  install_files "$bin"
  write_config "$(r "$INSTALL_DIR")/netdev-broker"
  write_unit
  systemd_apply enable
  summary
}

cmd_configure() {
  require_installed
  local bin
  bin=$(r "$INSTALL_DIR")/netdev-broker
  ensure_user
  if tokens_only; then
    configure_tokens "$bin"
    return
  fi
  gather "$bin"
  make_dirs
  write_config "$bin"
  write_unit
  systemd_apply restart
  summary
}

cmd_upgrade() {
  require_installed
  [[ -z $SETTINGS_GIVEN ]] || die "upgrade keeps the config as it is:$SETTINGS_GIVEN belong(s) to 'configure'"
  local bin=${BINARY_SRC:-$SCRIPT_DIR/netdev-broker} dest old new f src
  dest=$(r "$INSTALL_DIR")/netdev-broker
  [[ $bin -ef $dest ]] && die "that is the installed binary itself: give the new one with --binary PATH"
  new=$(check_binary "$bin")
  old=$("$dest" --version 2>/dev/null | head -n1) || old="(unknown)"
  ensure_user
  load_current
  settings_from_current
  make_dirs
  cp -p "$dest" "$dest.previous"
  install_file "$bin" "$INSTALL_DIR/netdev-broker" 0755
  for f in netdev-broker.sh install.sh "$SERVICE.service" config.example.yml; do
    src="$SCRIPT_DIR/$f"
    [[ -f $src ]] || continue
    install_file "$src" "$INSTALL_DIR/$f" "$([[ $f == *.sh ]] && echo 0755 || echo 0644)"
  done
  write_unit
  say "upgraded: $old -> $new (the old binary is $INSTALL_DIR/netdev-broker.previous); config kept"
  systemd_apply restart
}

cmd_uninstall() {
  local cfg d
  [[ -z $SETTINGS_GIVEN ]] || die "uninstall takes no settings ($SETTINGS_GIVEN)"
  cfg=$(r "$CONF")
  if ((ASSUME_YES == 0)) && interactive; then
    confirm "Remove netdev-broker${ROOT:+ from $ROOT}$( ((PURGE)) && echo ' with its config, logs, state and user')?" ||
      die "nothing removed"
  fi
  load_current
  if use_systemd; then
    if [[ -n $ROOT ]]; then
      systemctl --root="$ROOT" disable "$SERVICE.service" >/dev/null 2>&1 || true
    elif systemd_running; then
      systemctl disable --now "$SERVICE.service" >/dev/null 2>&1 || true
    fi
  fi
  rm -f "$(r "$UNIT_FILE")" "$(r /etc/systemd/system/multi-user.target.wants/$SERVICE.service)"
  if use_systemd && systemd_running; then systemctl daemon-reload; fi
  rm -rf "$(r "$INSTALL_DIR")"
  say "removed $SERVICE.service and $INSTALL_DIR"
  if ((PURGE == 0)); then
    say "kept: $CONF_DIR (config), $(dirname "$CUR_LOG_FILE") (logs), $CUR_STATE_DIR (state: known_hosts), user $SVC_USER; --purge removes them"
    return 0
  fi
  rm -rf "$(r "$CONF_DIR")"
  rm -f "$(r "$CUR_LOG_FILE")"
  for d in "$CUR_CMD_LOG_DIR" "$CUR_STATE_DIR" "$(dirname "$CUR_LOG_FILE")"; do
    [[ $d != off && -n $d ]] || continue
    # Only directories that are plainly ours: a path component named netdev-broker.
    if [[ /$d/ == */netdev-broker/* && $d != /netdev-broker ]]; then
      rm -rf "$(r "$d")"
    elif [[ -e $(r "$d") ]]; then
      warn "left $d (not a netdev-broker path): remove it yourself if it held only the broker's files"
    fi
  done
  for d in /etc/nginx/sites-enabled/netdev-broker /etc/nginx/sites-available/netdev-broker /etc/nginx/conf.d/netdev-broker.conf; do
    if [[ -f $(r "$d") ]] && grep -q "$NGINX_MARKER" "$(r "$d")"; then
      rm -f "$(r "$d")"
      say "removed the nginx site $d (reload nginx)"
    fi
  done
  local pre=()
  [[ -z $ROOT ]] || pre=(--prefix "$ROOT")
  if id_of passwd "$SVC_USER" >/dev/null; then userdel "${pre[@]}" "$SVC_USER"; fi
  if id_of group "$SVC_GROUP" >/dev/null; then groupdel "${pre[@]}" "$SVC_GROUP" 2>/dev/null || true; fi
  say "purged: config, logs, state, user and group $SVC_USER"
}

summary() {
  local url_host=$HOST
  case $HOST in 0.0.0.0) url_host=127.0.0.1 ;; :: | "[::]") url_host="[::1]" ;; *:*) url_host="[$HOST]" ;; esac
  say ""
  say "netdev-broker${ROOT:+ (in $ROOT)}:"
  say "  API:        http://$url_host:$PORT/ (token in the X-API-Token header)"
  if ((TOKEN_GENERATED)) && interactive; then
    say "  API token:  $TOKEN   (also in $CONF as api_token)"
  else
    say "  API token:  in $CONF (api_token)$( ((TOKEN_GENERATED)) && echo ': a new one was generated')"
  fi
  say "  config:     $CONF"
  say "  logs:       $([[ $LOG_MODE == journal ]] && echo "journal (journalctl -u $SERVICE)" || echo "$LOG_FILE")"
  say "  dashboard:  $( ((${#WEB_NAMES[@]} > 0)) && echo "http://$url_host:$PORT/ (${WEB_NAMES[*]})" || echo off)"
  say "  manage:     sudo $INSTALL_DIR/netdev-broker.sh [start|stop|restart|status|logs|configure|nginx|uninstall]"
}

main() {
  parse_args "$@"
  require_root
  [[ -z $ROOT || -d $ROOT ]] || die "--root $ROOT: no such directory"
  SVC_UID=0
  SVC_GID=0
  TOKEN_GENERATED=0
  case $CMD in
    install) cmd_install ;;
    configure) cmd_configure ;;
    upgrade) cmd_upgrade ;;
    uninstall) cmd_uninstall ;;
  esac
}

main "$@"
