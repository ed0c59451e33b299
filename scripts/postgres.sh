#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with a role that may create databases,
# and prints the admin URL the tests use (last line of stdout).
#   - reuses a server that already answers;
#   - otherwise (as root on Debian/Ubuntu) installs PostgreSQL with apt and starts a cluster.
# Env: MESCON_PG_ROLE / MESCON_PG_PASSWORD (default mescon / mescon).
set -euo pipefail
role=${MESCON_PG_ROLE:-mescon}
pass=${MESCON_PG_PASSWORD:-mescon}
log() { echo "postgres.sh: $*" >&2; }

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "no PostgreSQL answers on 127.0.0.1:5432 and I am not root to install one; start one and retry"
    exit 1
  fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"' | grep -q .; then
    pg_createcluster "$ver" main -p 5432 >/dev/null
  fi
  # apt does not start services in containers (policy-rc.d), so start the cluster by hand.
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start
  for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL did not come up"; exit 1; }
fi

url="postgres://$role:$pass@127.0.0.1:5432/postgres"
if ! psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "cannot log in as $role and cannot create it (not root)"; exit 1; }
  log "creating role $role with CREATEDB"
  runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -p 5432 <<SQL >/dev/null
DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role LOGIN PASSWORD '$pass' CREATEDB;
  ELSE
    ALTER ROLE $role LOGIN PASSWORD '$pass' CREATEDB;
  END IF;
END\$\$;
SQL
fi
psql "$url" -Atqc 'select 1' >/dev/null
echo "$url"
