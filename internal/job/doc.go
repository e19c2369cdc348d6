// Package job defines the message that the bridge publishes and the consumer
// reads, the JetStream subjects it travels on, and the stream and durable
// consumer that carry it. It is the one definition both sides import.
//
// A job names the work (operation, tenant, instance) and carries what the
// consumer needs to do it; it never carries a secret or a connection string.
package job
