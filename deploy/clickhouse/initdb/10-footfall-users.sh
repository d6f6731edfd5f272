#!/usr/bin/env bash
# Creates footfall's three least-privilege ClickHouse users (footfall_ingest, footfall_analyst,
# footfall_admin) and their roles from deploy/clickhouse/grants.sql, with passwords taken from the
# environment, on current ClickHouse (SQL-driven access control).
#
# In the official clickhouse/clickhouse-server image: mount it into /docker-entrypoint-initdb.d/
# (deploy/compose.yaml does). The entrypoint runs it once, on the first start with an empty data
# volume, against a server listening on 127.0.0.1 only; it runs (or sources) every *.sh there.
# grants.sql itself is mounted elsewhere (FOOTFALL_GRANTS_SQL), because the entrypoint would
# run a *.sql file as it is, CHANGE_ME placeholders and all.
#
# Environment:
#   FOOTFALL_CLICKHOUSE_PASSWORD          footfall_ingest's password   (or ..._FILE: a file holding it)
#   FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD    footfall_admin's password    (or ..._FILE)
#   FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD  footfall_analyst's password  (or ..._FILE)
#   FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS   addresses/CIDRs the three users may log in from,
#                                         comma- or space-separated (default: grants.sql's
#                                         loopback only); compose.yaml passes its network's subnet
#   FOOTFALL_GRANTS_SQL                   default /etc/footfall/clickhouse/grants.sql
#   CLICKHOUSE_USER / CLICKHOUSE_PASSWORD the administrator that runs it (the image's variables)
#
# `10-footfall-users.sh --print-sql` prints the SQL it would run and runs nothing
# (tests/deploy/check.sh checks that SQL on ClickHouse 26.x through chdb).
#
# Passwords are never printed or written anywhere: only their SHA-256 goes to ClickHouse
# (IDENTIFIED WITH sha256_hash). Users are created once (CREATE USER IF NOT EXISTS): to rotate a
# password later, ALTER USER ... IDENTIFIED WITH sha256_hash BY '<new hash>' (see
# deploy/clickhouse/README.md) and update deploy/.env.

footfall_initdb_users() {
  set -euo pipefail
  local mode=run
  if [ "${1:-}" = "--print-sql" ]; then mode=print; fi

  local grants=${FOOTFALL_GRANTS_SQL:-/etc/footfall/clickhouse/grants.sql}
  if [ ! -r "$grants" ]; then
    echo "10-footfall-users.sh: cannot read $grants (mount deploy/clickhouse/grants.sql there)" >&2
    return 1
  fi

  # password VAR: the value of VAR, or of the file named by VAR_FILE.
  password() {
    local var=$1 file_var="${1}_FILE" value=""
    if [ -n "${!var:-}" ]; then
      value=${!var}
    elif [ -n "${!file_var:-}" ]; then
      [ -r "${!file_var}" ] || { echo "10-footfall-users.sh: cannot read ${file_var}=${!file_var}" >&2; return 1; }
      value=$(cat "${!file_var}")
    fi
    if [ "${#value}" -lt 16 ]; then
      echo "10-footfall-users.sh: $var (or ${file_var}) must be set to at least 16 characters" \
           "(make one with: openssl rand -hex 32)" >&2
      return 1
    fi
    printf '%s' "$value"
  }
  sha256_hex() { sha256sum | cut -d' ' -f1; }

  local ingest analyst admin
  ingest=$(password FOOTFALL_CLICKHOUSE_PASSWORD | sha256_hex)
  admin=$(password FOOTFALL_CLICKHOUSE_ADMIN_PASSWORD | sha256_hex)
  analyst=$(password FOOTFALL_CLICKHOUSE_ANALYST_PASSWORD | sha256_hex)
  local h
  for h in "$ingest" "$admin" "$analyst"; do
    # the SHA-256 of nothing: a password was missing (pipefail already stops there; belt and braces)
    if [ "$h" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ]; then return 1; fi
  done

  # HOST clause: grants.sql's loopback-only default, or the networks given.
  local loopback="HOST IP '127.0.0.1', IP '::1'" host_clause
  host_clause=$loopback
  local networks=${FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS:-}
  if [ -n "$networks" ]; then
    local net parts=()
    for net in ${networks//,/ }; do
      if ! [[ $net =~ ^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$ ]]; then
        echo "10-footfall-users.sh: FOOTFALL_CLICKHOUSE_CLIENT_NETWORKS: '$net' is not an address or CIDR" >&2
        return 1
      fi
      parts+=("IP '$net'")
    done
    host_clause="HOST $(IFS=,; echo "${parts[*]}" | sed 's/,/, /g')"
  fi

  local sql
  sql=$(grep -v '^[[:space:]]*--' "$grants")
  local n_host
  n_host=$(grep -cF "$loopback" <<<"$sql" || true)
  if [ "$n_host" -ne 3 ]; then
    echo "10-footfall-users.sh: expected grants.sql to give 3 users \"$loopback\", found $n_host: update this script" >&2
    return 1
  fi
  sql=${sql//"$loopback"/"$host_clause"}
  sql=${sql//CHANGE_ME_sha256_hex_of_the_ingest_password/$ingest}
  sql=${sql//CHANGE_ME_sha256_hex_of_the_analyst_password/$analyst}
  sql=${sql//CHANGE_ME_sha256_hex_of_the_admin_password/$admin}
  if grep -q CHANGE_ME <<<"$sql"; then
    echo "10-footfall-users.sh: grants.sql has a CHANGE_ME placeholder this script does not fill: update it" >&2
    return 1
  fi

  if [ "$mode" = print ]; then
    printf '%s\n' "$sql"
    return 0
  fi

  # The entrypoint's own client when it sources this file; the same command otherwise.
  local client=()
  # shellcheck disable=SC2154  # clickhouseclient: the entrypoint's array, when it sources this file
  if declare -p clickhouseclient >/dev/null 2>&1; then
    client=("${clickhouseclient[@]}")
  else
    client=(clickhouse-client --multiquery --host 127.0.0.1
            --user "${CLICKHOUSE_USER:-default}" --password "${CLICKHOUSE_PASSWORD:-}")
  fi
  echo "10-footfall-users.sh: creating footfall_ingest, footfall_analyst, footfall_admin (${host_clause})"
  "${client[@]}" <<<"$sql"
  "${client[@]}" --query "SELECT name, arrayStringConcat(default_roles_list, ',') AS default_roles FROM system.users WHERE startsWith(name, 'footfall_') ORDER BY name FORMAT PrettyCompactNoEscapes"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  footfall_initdb_users "$@"
else
  # Sourced by the image's entrypoint: run in a subshell so that `set -euo pipefail` and the
  # helper functions stay out of the entrypoint's shell; a failure still fails the entrypoint.
  ( footfall_initdb_users )
fi
