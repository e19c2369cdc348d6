// Package consumer pulls jobs from the durable JetStream consumer and carries
// them out, one handler per operation.
//
// The ack wait is the job's lock: a replica pulls a message only when it has
// a free worker, renews the lock with InProgress heartbeats while the job
// runs, and acks only after the registration transaction has committed. Every
// handler first checks what already exists and does only what is missing, so
// a redelivered job has the effect of running once.
//
// One job's path, in consumer.go from top to bottom: work pulls a message
// when a worker is free; process builds the Delivery once (job, attempt,
// subject, stream sequence, correlation ID = the bridge's message ID, and
// a logger with them all) and passes it on as an argument; run sends it
// through the operation's middleware chain, built once (middleware.go:
// recoverer.go, observe.go, phases.go, seams.go, a file and a test each),
// to the operation's handler (Handlers in ops.go), which does only the
// operation; settle acks, naks with a delay, releases on shutdown, or ends
// the job through finish, the one path that reports a failure and writes
// a dead letter (also used by the max-deliveries advisory in advisory.go).
// errors.go holds the one table that says which failures are terminal and
// their reason codes.
//
// The chain is Watermill's: each layer is a message.HandlerMiddleware
// (the recoverer is Watermill's Recoverer), made for one delivery with the
// delivery as its argument, so the delivery, its phase clock and its seams
// never ride in a context. Watermill's router and NATS subscriber do not
// fit: the subscriber buffers pulled messages, gives up on a message after
// its own timer without renewing the lock, and has no InProgress, so
// fetching, heartbeats, ack, nak with delay and term go through nats.go's
// jetstream package directly. Tests reach into a replica only through TestSeams.
//
// Beside the jobs, each replica runs a Purger (purge.go): deleted
// databases kept in trash (provisioning.deleteRetention) are dropped once
// their retention has passed, each by whichever replica takes it first.
//
// It must never ack a job whose effect has not committed.
package consumer
