// Package chaos proves the system's guarantees under faults, across real
// processes: instancemgr consumer replicas, the bridge and the Admin API
// simulator run as separate binaries, NATS runs as nats-server binaries
// built from the module, and the suite kills, freezes and restarts them
// while jobs are in flight, then counts every effect.
//
// go test ./integration/chaos runs a size that fits CI; with
// INSTANCEMGR_CHAOS_FULL=1 (task test:chaos) it runs the full one.
package chaos
