#!/bin/sh
# Runs once, by the postgres image's entrypoint, on an empty data directory.
# Creates what instancemgr provisions against, as `instancemgr dev` does:
#   - EdFi_Admin, loaded with the ODS/API 7.x registration tables
#     (provisioning/postgres/edfi_admin_pg.sql, mounted at $FIXTURE);
#   - the template database (provisioning.template in ../instancemgr.yaml),
#     a small stand-in for Ed-Fi's Ods_Minimal_Template. Restore the real
#     template instead for anything but a trial.
set -eu

ADMIN_DB=EdFi_Admin
TEMPLATE_DB=Ods_Minimal_Template
FIXTURE=/fixtures/edfi_admin_pg.sql

if [ ! -r "$FIXTURE" ]; then
	echo "initdb: $FIXTURE is not mounted (see compose.yaml)" >&2
	exit 1
fi

psql() {
	command psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --no-password "$@"
}

psql --dbname "${POSTGRES_DB:-postgres}" <<SQL
CREATE DATABASE "$ADMIN_DB";
CREATE DATABASE "$TEMPLATE_DB";
SQL

psql --dbname "$ADMIN_DB" --file "$FIXTURE"

psql --dbname "$TEMPLATE_DB" <<'SQL'
CREATE SCHEMA IF NOT EXISTS edfi;
CREATE TABLE IF NOT EXISTS edfi.schoolyeartype (
    schoolyear smallint PRIMARY KEY,
    currentschoolyear boolean NOT NULL,
    schoolyeardescription varchar(50) NOT NULL
);
INSERT INTO edfi.schoolyeartype VALUES (2025, false, '2024-2025'), (2026, true, '2025-2026') ON CONFLICT DO NOTHING;
SQL

echo "initdb: created $ADMIN_DB (with the registration tables) and $TEMPLATE_DB"
