#!/usr/bin/env bash
# Install everything accordwatch needs, idempotently: `scripts/setup.sh` for the stack,
# `scripts/setup.sh --test` adds the test tools and the servers the tests start
# (PostgreSQL and Prometheus from Debian's packages). A second run reuses what the first
# installed: the virtualenv is stamped with the hash of pyproject.toml, the Kafka jars
# with the hash of deploy/kafka/pom.xml.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=run
BENCH=0
[[ "${1:-}" == "--test" ]] && MODE=test
# --bench: everything --test installs, plus the load generator the benchmarks drive HTTP with.
[[ "${1:-}" == "--bench" ]] && { MODE=test; BENCH=1; }
VENV=.venv
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1; fi
}

APT_UPDATED=0
apt_install() {
  # Never let a package's maintainer script start its daemon: the project starts its own.
  local created=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d; created=1
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  [[ $created -eq 1 ]] && as_root rm -f /usr/sbin/policy-rc.d
  return 0
}

# --- system packages ---------------------------------------------------------------
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[[ -n "$PY" ]] || { say "installing Python 3"; apt_install python3 python3-venv; PY=python3; }

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [[ $MODE == test ]]; then
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
  command -v prometheus >/dev/null || missing+=(prometheus)
  # The browser tests drive Debian's Chromium (never a browser download) and inject axe-core.
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v npm >/dev/null || missing+=(npm)
fi
if [[ $BENCH == 1 ]]; then
  command -v wrk >/dev/null || missing+=(wrk)
fi
if (( ${#missing[@]} )); then
  say "installing from Debian: ${missing[*]}"
  apt_install "${missing[@]}"
fi

# --- virtualenv ----------------------------------------------------------------------
EXTRAS=""
[[ $MODE == test ]] && EXTRAS="[test]"
STAMP="$VENV/.installed-$MODE"
WANT=$( (cat pyproject.toml; "$PY" --version) | sha256sum | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]]; then
  say "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
stamped() { [[ -f "$VENV/.installed-$1" && $(cat "$VENV/.installed-$1") == "$WANT" ]]; }
if stamped "$MODE" || { [[ $MODE == run ]] && stamped test; }; then
  :  # up to date
else
  say "installing accordwatch$EXTRAS into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".$EXTRAS"
  echo "$WANT" > "$STAMP"
fi

# --- the local Kafka broker -----------------------------------------------------------
say "assembling the Kafka broker (cached after the first run)"
"$VENV/bin/python" -m services.stack.broker assemble

# --- a Compose v2 checker for the compose-file test ----------------------------------
# No Docker engine runs here and bookworm ships only Compose v1, which predates the
# Compose Specification. The test only needs `docker compose config`, so take the Compose
# v2 plugin binary from Debian trixie's package, unpacked under .local/ (apt's own state
# and sources are left untouched).
COMPOSE=.local/bin/docker-compose
if [[ $MODE == test && ! -x $COMPOSE ]] && ! docker compose version >/dev/null 2>&1; then
  say "fetching the Compose v2 plugin from Debian trixie"
  work=$(mktemp -d)
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n' \
    > "$work/sources.list"
  mkdir -p "$work/lists/partial"
  apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$work/lists"
            -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root
            -o "Dir::Cache::pkgcache=$work/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$work/srcpkgcache.bin")
  as_root apt-get "${apt_opts[@]}" update -qq
  (cd "$work" && as_root apt-get "${apt_opts[@]}" download -qq docker-compose)
  dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
  mkdir -p .local/bin
  install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE"
  rm -rf "$work"
fi

# --- axe-core for the browser tests' accessibility checks ------------------------------
# Pinned by tests/readers/package-lock.json, installed with `npm ci` into .local/node/
# (stamped with the lock's hash, so a second run installs nothing).
if [[ $MODE == test ]]; then
  NODE_DIR=.local/node
  LOCK_HASH=$(sha256sum tests/readers/package-lock.json | cut -d' ' -f1)
  if [[ ! -f $NODE_DIR/node_modules/axe-core/axe.min.js || $(cat "$NODE_DIR/.installed" 2>/dev/null) != "$LOCK_HASH" ]]; then
    say "installing axe-core (npm ci) into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp tests/readers/package.json tests/readers/package-lock.json "$NODE_DIR/"
    (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$LOCK_HASH" > "$NODE_DIR/.installed"
  fi
fi
