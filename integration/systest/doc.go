// Package systest is the one harness for tests across real processes:
// chaos, soak and bench. It builds the binaries (instancemgr and
// nats-server, from the module), starts processes, NATS servers and
// clusters, and private PostgreSQL servers, and makes sure that none of
// them outlives the test: each is killed with its process group when the
// test ends, and is sent SIGKILL by the kernel when the test process dies
// without ending it (a -timeout, a SIGKILL), through the parent-death
// signal (see Harness). What a killed run left on disk (its logs, NATS
// data, binaries, a private server's data directory: every directory the
// harness makes is named after its test process) is removed at the next
// start; what it left on a PostgreSQL server, by the next world
// (integration/itest).
//
// It is for tests only. It must never start a process that is not tied to
// the test's harness, nor remove anything that a live test owns.
package systest
