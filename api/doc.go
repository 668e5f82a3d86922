// Package api serves a store over gRPC: the public read API that every store
// serves (service Store) and the primary's internal write path (service
// Internal), which is only ever registered on a separate listener.
//
// The wire types are generated from proto/ into storev1 by `make proto`.
// Every request is bounded (ids per call, tags, page size, message size)
// and a malformed one gets InvalidArgument with a message naming the field.
// Answers are taken from one store snapshot, so the proofs in a response all
// belong to the tip it names.
package api
