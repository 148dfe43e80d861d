#!/bin/sh
# Runs once, when the postgres container creates its database: the report API's SELECT-only role.
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v password="$READER_PASSWORD" <<'SQL'
CREATE ROLE coworking_reader LOGIN PASSWORD :'password';
SQL
