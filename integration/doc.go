// Package integration holds the tests that run the system end to end on
// real services: the local PostgreSQL, an embedded NATS server with
// JetStream, and the Admin API simulator over real HTTP.
package integration
