#!/bin/sh
# Runs once, as the database's superuser, when the postgres container creates its database: the roles the programs
# use, neither of them a superuser. The consumer's role owns the database (and so its public schema) and creates the
# tables; the report API's role logs in and is granted SELECT by `consumer migrate`, nothing more.
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v owner_password="$OWNER_PASSWORD" -v reader_password="$READER_PASSWORD" <<'SQL'
CREATE ROLE coworking LOGIN PASSWORD :'owner_password';
CREATE ROLE coworking_reader LOGIN PASSWORD :'reader_password';
ALTER DATABASE coworking OWNER TO coworking;
SQL
