#!/bin/sh
# Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/).
# - a read-only role for Grafana's "Read model" data source: SELECT on the tables the
#   owner ($POSTGRES_USER, who runs the migrations) creates in the read-model database, and
#   nothing else;
# - a database of its own for the alert store, so that role never sees webhook secrets.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader="$GRAFANA_READMODEL_USER" -v password="$GRAFANA_READMODEL_PASSWORD" \
  -v owner="$POSTGRES_USER" -v readmodel="$POSTGRES_DB" -v alerts="$POSTGRES_ALERTS_DB" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"readmodel" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
CREATE DATABASE :"alerts" OWNER :"owner";
REVOKE CONNECT ON DATABASE :"alerts" FROM PUBLIC;
SQL
