// Package adminapi is the worker's client for the Ed-Fi Admin API 2.2.2
// "Admin Console" endpoints (see docs/adminapi-contract.md). Its
// subpackage simulator serves the same contract in memory.
//
// The client never logs or returns a token or a client secret in an error.
package adminapi
