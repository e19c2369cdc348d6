// Package systest is the one harness for tests across real processes:
// chaos, soak and bench. It builds the binaries (instancemgr and
// nats-server, from the module), starts processes, NATS servers and
// clusters, and private PostgreSQL servers, and makes sure that none of
// them outlives the test: each is killed with its process group when the
// test ends, and is sent SIGKILL by the kernel when the test process dies
// without ending it (a -timeout, a SIGKILL), through the parent-death
// signal (see New). What a killed run left on disk (a private server's
// data directory) is removed at the next start.
//
// It is for tests only. It must never start a process that is not tied to
// the test's harness, nor remove anything that a live test owns.
package systest
