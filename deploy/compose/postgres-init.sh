#!/usr/bin/env bash
# First start of the compose PostgreSQL (docker-entrypoint-initdb.d): one role and one database per
# service, each owned by its role and closed to the others ("a service owns its tables").
# TELECRM_DATABASES lists the services, TELECRM_DB_PASSWORD is the password of their roles.
set -euo pipefail

for name in ${TELECRM_DATABASES:?}; do
  echo "telecrm: creating role and database ${name}"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
       -v name="${name}" -v password="${TELECRM_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT ALL ON DATABASE :"name" TO :"name";
SQL
done
