// Package jobs is the queue between the bridge and the consumers: the job
// message (a pointer to one Admin API request, never an authority), the
// JetStream subjects it travels on, the stream and the durable consumer
// that carry it, the dead-letter stream where a job ends when it cannot be
// done, and replay, which puts a dead job back. The bridge publishes
// through it, the consumers read through it, and the jobs and reconcile
// commands inspect it; nothing else defines a subject or a stream.
//
// A job names the work (operation, tenant, instance) and carries what the
// consumer needs to find it; it never carries a secret or a connection
// string.
package jobs
