package postgres

// The shape of Ed-Fi's ODS for Data Standard 6.1 on PostgreSQL, as counts
// only (Ed-Fi's scripts and names stay Ed-Fi's): what
// EnsureODSShapedTemplate reproduces with generated names.
//
// Source: github.com/Ed-Fi-Alliance-OSS/Ed-Fi-ODS, main at commit
// 24fe66cfc04459ad6d6cac09d635d3c149b24669 (2026-06-25), folder
// Application/EdFi.Ods.Standard/Standard/6.1.0/Artifacts/PgSql/Structure/Ods:
// its 47 scripts 0010-Schemas.sql … 1520-UpdateEdFiStandardVersionTo61.sql
// (tables, foreign keys, id indexes, auth views, aggregate-id sequences)
// and the 15 of its Changes/ folder (change queries: the tracked-changes
// tables, the change-version sequence, columns and indexes), run in name
// order into an empty PostgreSQL 15 database and counted in the catalog
// (pg_namespace, pg_class with reltoastrelid, pg_constraint, pg_index, pg_views,
// pg_attribute), so that what later scripts drop or replace is not
// counted. RecordOwnership/ (an optional feature adding one column per
// table) is not counted. Without Changes/ (change queries off) they are:
// 4 schemas, 835 tables and primary keys, 1 unique constraint, 180 unique
// and 1278 other indexes, 1677 foreign keys, 180 sequences, 5 views, 5668
// columns. Not reproduced: Ed-Fi's 546 functions and 681 triggers
// (catalog rows, no relation files to copy).
//
// Schemas exclude public and PostgreSQL's own. Two of the six hold no
// table: one holds only the change-version sequence, one only functions.
const (
	ODSSchemas = 6
	// Tables per schema, largest first: the Ed-Fi entities, the tracked
	// changes, interoperability, authorization.
	ODSTablesMain         = 829
	ODSTablesChanges      = 176
	ODSTablesInterop      = 5
	ODSTablesAuth         = 1
	ODSTables             = ODSTablesMain + ODSTablesChanges + ODSTablesInterop + ODSTablesAuth   // 1011
	ODSPrimaryKeys        = 1011                                                                  // one per table
	ODSUniqueConstraints  = 1                                                                     // UNIQUE constraints, each with its index
	ODSUniqueIndexes      = 180                                                                   // CREATE UNIQUE INDEX, not behind a constraint
	ODSIndexes            = 1454                                                                  // CREATE INDEX, not unique
	ODSForeignKeys        = 1677                                                                  // 1671 among the entities, 6 in interoperability
	ODSSequences          = 181                                                                   // 180 with the entities, 1 on its own schema
	ODSViews              = 9                                                                     // 8 authorization, 1 interoperability
	ODSColumns            = 8559                                                                  // of tables
	ODSToastTables        = 347                                                                   // tables whose rows may be long enough for TOAST: a file and an index more each
	ODSAllIndexes         = ODSPrimaryKeys + ODSUniqueConstraints + ODSUniqueIndexes + ODSIndexes // 2646 in pg_index
	odsForeignKeysMain    = 1671
	odsForeignKeysInterop = 6
	odsSequencesMain      = 180
	odsViewsAuth          = 8
	odsViewsInterop       = 1
	odsIndexesAuth        = 1 // the other 1453 are the entities'
	odsColumnsMain        = 5819
	odsColumnsChanges     = 2715
	odsColumnsInterop     = 23
	odsColumnsAuth        = 2
	odsToastMain          = 241
	odsToastChanges       = 106
	// The entity tables whose names end in "descriptor": those Ed-Fi's
	// minimal template fills.
	odsDescriptorTables = 281
)
