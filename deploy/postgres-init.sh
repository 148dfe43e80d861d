#!/bin/sh
# Runs once, as the database's superuser, when the postgres container creates its database: the roles the programs
# use, neither of them a superuser. The consumer's role owns the database (and so its public schema) and creates the
# tables; the report API's role logs in and is granted SELECT by `consumer migrate`, nothing more.
set -eu
# The passwords come from the environment (psql's \getenv), never the command line, where any local user sees them.
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<'SQL'
\getenv owner_password OWNER_PASSWORD
\getenv reader_password READER_PASSWORD
CREATE ROLE coworking LOGIN PASSWORD :'owner_password';
CREATE ROLE coworking_reader LOGIN PASSWORD :'reader_password';
ALTER DATABASE coworking OWNER TO coworking;
SQL
