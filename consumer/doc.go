// Package consumer pulls jobs from the durable JetStream consumer and carries
// them out, one handler per operation.
//
// The ack wait is the job's lock: a replica pulls a message only when it has
// a free worker, renews the lock with InProgress heartbeats while the job
// runs, and acks only after the registration transaction has committed. Every
// handler first checks what already exists and does only what is missing, so
// a redelivered job has the effect of running once.
//
// Watermill's message and middleware types form the handler chain (panic
// recovery, correlation ID, logging). Watermill's router and its NATS
// subscriber are not used: the subscriber buffers pulled messages, gives up
// on a message after its own timer without renewing the lock, and has no
// InProgress, so fetching, heartbeats, ack, nak with delay and term go
// through nats.go's jetstream package directly.
//
// It must never ack a job whose effect has not committed.
package consumer
