// Package bridge polls the Admin API for pending instance requests and
// publishes each as one job on JetStream.
//
// A job enters the stream once, however many polls see it and however long
// it stays pending: each instance and operation has its own subject, and the
// bridge publishes with "expected last subject sequence 0", so the stream
// refuses a second message on a subject that already holds one. The message
// ID (the job ID) adds JetStream's de-duplication window on top, for two
// bridges racing. A publish counts only when JetStream acknowledged it; a
// failed publish is simply tried again on the next poll.
//
// Publish is the same publish for one request, by its id: the manage
// flavor's write routes call it once a request's row has committed, so
// that the request waits for no poll, and the poll that sees the request
// later finds its job stored.
//
// A poll lists each tenant's instances once, a bounded number of tenants
// at a time. The bridge remembers the subjects it saw stored while their
// requests stay pending, so a request already queued costs no stream
// look-up and no detail call on later polls; that memory is bounded in
// size and age, forgotten when the stream is made again, and empty after
// a restart, when the stream's guard decides as before.
//
// The bridge never changes anything in the Admin API.
package bridge
