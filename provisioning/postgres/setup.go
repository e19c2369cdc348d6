package postgres

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// AdminFixture is the part of the ODS/API 7.x EdFi_Admin database that
// registration touches (and Admin API 2.2.2's handlers write), in PostgreSQL's
// spelling: the shape registration must fit. Tests load it into an empty
// database; dev creates what is missing of it.
//
//go:embed edfi_admin_pg.sql
var AdminFixture string

// adminSchema is AdminFixture made idempotent, so that setup and dev can
// run it on every start.
var adminSchema = strings.NewReplacer("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", "CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ").Replace(AdminFixture)

// EnsureDatabase creates an empty database unless it exists. It is for
// set-up (the dev mode's EdFi_Admin), never for ODS instances.
func (e *Engine) EnsureDatabase(ctx context.Context, name string) error {
	exists, err := e.DatabaseExists(ctx, name)
	if err != nil || exists {
		return err
	}
	if err := checkIdent(name); err != nil {
		return err
	}
	if _, err := e.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil && !isDuplicateDatabase(err) {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// EnsureAdminSchema creates the EdFi_Admin registration tables that are
// missing; existing tables are left as they are.
func (r *Registry) EnsureAdminSchema(ctx context.Context) error {
	if _, err := r.pool.Exec(ctx, adminSchema); err != nil {
		return fmt.Errorf("create the EdFi_Admin tables: %w", err)
	}
	return nil
}

// EnsureMinimalTemplate creates a small stand-in for Ed-Fi's
// Ods_Minimal_Template unless a database of that name exists. connectTo
// gives the pgx connection string of a database on the same server.
func (e *Engine) EnsureMinimalTemplate(ctx context.Context, name string, connectTo func(database string) string) error {
	exists, err := e.DatabaseExists(ctx, name)
	if err != nil || exists {
		return err
	}
	if err := e.EnsureDatabase(ctx, name); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, connectTo(name))
	if err != nil {
		return fmt.Errorf("connect to template %q: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS edfi;
CREATE TABLE IF NOT EXISTS edfi.schoolyeartype (
    schoolyear smallint PRIMARY KEY,
    currentschoolyear boolean NOT NULL,
    schoolyeardescription varchar(50) NOT NULL
);
INSERT INTO edfi.schoolyeartype VALUES (2025, false, '2024-2025'), (2026, true, '2025-2026') ON CONFLICT DO NOTHING;`)
	if err != nil {
		return fmt.Errorf("fill template %q: %w", name, err)
	}
	return nil
}
