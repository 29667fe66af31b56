# shellcheck shell=bash
# PostgreSQL: a Debian cluster on PGPORT with the shop's role and one database per service.
# Sourced by deploy/local/stack.sh after common.sh; not run on its own.

PGHOST="${PGHOST:-localhost}"
PGPORT="${PGPORT:-5432}"
SHOP_PG_USER="${SHOP_PG_USER:-shop}"
SHOP_PG_PASSWORD="${SHOP_PG_PASSWORD:-shop}"
SHOP_PG_DATABASES="${SHOP_PG_DATABASES:-shop_point shop_product shop_coupon shop_order shop_ranking}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

# Runs a command as the postgres OS user, without any PG* variables that would redirect it.
as_postgres() {
  local clean=(env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER -u PGPASSWORD -u PGDATABASE -u PGSERVICE -u PGPASSFILE)
  if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "${clean[@]}" "$@")
  else
    (cd / && $SUDO -u postgres "${clean[@]}" "$@")
  fi
}

pg_server_installed() {
  command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

# Sets PG_VER / PG_NAME to the Debian cluster listening on PGPORT ("" if none).
pg_find_cluster() {
  PG_VER=""; PG_NAME=""
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  local line
  line="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p {print $1, $2; exit}')"
  if [ -n "$line" ]; then PG_VER="${line%% *}"; PG_NAME="${line#* }"; fi
}

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PGHOST" -p "$PGPORT" -t 2 >/dev/null 2>&1
  else
    port_open "$PGHOST" "$PGPORT"
  fi
}

pg_install() {
  log "postgres: server not installed, installing Debian's postgresql"
  # The package does not start its service: we start the cluster ourselves.
  apt_install_unstarted postgresql
  # If the install started a cluster anyway, stop it: it is nobody's yet.
  local v n st
  while read -r v n _ st _; do
    if [ "$st" = online ]; then
      log "postgres: stopping cluster $v/$n started by the package install"
      $SUDO pg_ctlcluster "$v" "$n" stop || true
    fi
  done < <(pg_lsclusters -h 2>/dev/null || true)
}

pg_provision() {
  command -v psql >/dev/null 2>&1 || { warn "postgres: psql not found, cannot create role/databases"; return 1; }
  id postgres >/dev/null 2>&1 || { warn "postgres: no postgres OS user, cannot create role/databases"; return 1; }
  local pw_sql="${SHOP_PG_PASSWORD//\'/\'\'}" db sql
  sql="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$SHOP_PG_USER') THEN
    CREATE ROLE \"$SHOP_PG_USER\" LOGIN CREATEDB PASSWORD '$pw_sql';
  ELSE
    ALTER ROLE \"$SHOP_PG_USER\" LOGIN CREATEDB PASSWORD '$pw_sql';
  END IF;
END \$\$;
"
  for db in $SHOP_PG_DATABASES; do
    sql+="SELECT 'CREATE DATABASE \"$db\" OWNER \"$SHOP_PG_USER\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')
\\gexec
"
  done
  if ! printf '%s' "$sql" | as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" -d postgres >/dev/null; then
    warn "postgres: could not create role/databases as the postgres OS user"
    return 1
  fi
  log "postgres: role $SHOP_PG_USER and databases ($SHOP_PG_DATABASES) are in place"
}

pg_check_login() {
  command -v psql >/dev/null 2>&1 || return 0
  local first="${SHOP_PG_DATABASES%% *}" err
  if ! err="$(PGPASSWORD="$SHOP_PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -h "$PGHOST" -p "$PGPORT" \
        -U "$SHOP_PG_USER" -d "$first" -tAc 'select 1' 2>&1)"; then
    die "postgres: password login as $SHOP_PG_USER@$PGHOST:$PGPORT/$first failed: $err"
  fi
  log "postgres: password login as $SHOP_PG_USER over TCP works"
}

pg_up() {
  if ! is_local_host "$PGHOST"; then
    log "postgres: external ($PGHOST:$PGPORT), not managed here"
    return 0
  fi
  local t0; t0=$(now)
  if pg_ready; then
    pg_find_cluster
    if marker_exists postgres; then
      log "postgres: already running (ours, cluster $(marker_get postgres)) on $PGHOST:$PGPORT"
    else
      log "postgres: something already answers on $PGHOST:$PGPORT, reusing it (not ours)"
    fi
    pg_provision || true
    pg_check_login
    return 0
  fi
  marker_clear postgres

  pg_server_installed || pg_install
  pg_find_cluster
  if [ -z "$PG_VER" ]; then
    local ver name=main
    ver="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    if pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$ver main"; then name=shop; fi
    log "postgres: creating cluster $ver/$name on port $PGPORT"
    $SUDO pg_createcluster -p "$PGPORT" "$ver" "$name" >/dev/null 9>&-
    pg_find_cluster
    [ -n "$PG_VER" ] || die "postgres: pg_createcluster did not produce a cluster on port $PGPORT"
  fi

  local confd="/etc/postgresql/$PG_VER/$PG_NAME/conf.d" want
  want="# Written by deploy/local/stack.sh (local dev/test stack).
max_connections = 400
shared_buffers = 128MB
# loopback only: TLS would cost ~20% CPU per statement for nothing
ssl = off
"
  if [ "$(cat "$confd/shop.conf" 2>/dev/null || true)" != "${want%$'\n'}" ]; then
    $SUDO mkdir -p "$confd"
    printf '%s' "$want" | $SUDO tee "$confd/shop.conf" >/dev/null
    log "postgres: wrote $confd/shop.conf (max_connections=400, shared_buffers=128MB)"
  fi
  grep -qE "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'conf.d'" "/etc/postgresql/$PG_VER/$PG_NAME/postgresql.conf" \
    || warn "postgres: postgresql.conf has no include_dir = 'conf.d'; shop.conf is not applied"

  local pglog="/var/log/postgresql/postgresql-$PG_VER-$PG_NAME.log"
  log "postgres: starting cluster $PG_VER/$PG_NAME on port $PGPORT, log $pglog"
  if ! $SUDO pg_ctlcluster "$PG_VER" "$PG_NAME" start 9>&-; then
    show_log_tail "$pglog"
    die "postgres: pg_ctlcluster $PG_VER $PG_NAME start failed"
  fi
  marker_set postgres "$PG_VER $PG_NAME"
  local deadline=$(( $(now) + PG_START_TIMEOUT ))
  until pg_ready; do
    if [ "$(now)" -ge "$deadline" ]; then
      show_log_tail "$pglog"
      die "postgres: not ready after ${PG_START_TIMEOUT}s"
    fi
    sleep 0.3
  done
  pg_provision || die "postgres: provisioning failed"
  pg_check_login
  log "postgres: ready (cluster $PG_VER/$PG_NAME) in $(( $(now) - t0 ))s"
}

pg_down() {
  if ! marker_exists postgres; then
    if is_local_host "$PGHOST" && pg_ready; then log "postgres: running but not started by us, leaving it"; fi
    return 0
  fi
  local ver name
  read -r ver name <<<"$(marker_get postgres)"
  if [ -n "$ver" ] && [ -n "$name" ]; then
    log "postgres: stopping cluster $ver/$name"
    $SUDO pg_ctlcluster "$ver" "$name" stop -m fast 2>/dev/null || \
      $SUDO pg_ctlcluster "$ver" "$name" stop -m immediate 2>/dev/null || true
    log "postgres: stopped"
  fi
  marker_clear postgres
}

pg_status() {
  if ! is_local_host "$PGHOST"; then
    if pg_ready; then echo "postgres   external  $PGHOST:$PGPORT  up"; else echo "postgres   external  $PGHOST:$PGPORT  NOT REACHABLE"; fi
    return 0
  fi
  if pg_ready; then
    if marker_exists postgres; then
      echo "postgres   up        $PGHOST:$PGPORT  ours, cluster $(marker_get postgres | tr ' ' '/'), user $SHOP_PG_USER"
    else
      echo "postgres   up        $PGHOST:$PGPORT  not ours"
    fi
  else
    echo "postgres   down      $PGHOST:$PGPORT"
  fi
}
