// Package replicas holds what a store knows of the stores below it: the
// followers that fetch from it, directly or through other followers.
//
// A follower tells every upstream it fetches from, in the metadata of the
// calls it already makes (its block fetches and its health polls), who it
// is, its durable committed and proven tips, and a summary of the stores
// that report to it in turn. So each store, the primary included, learns
// the whole tree below it without a new method or a changed message, and
// can say which blocks are held by at least k other stores: the replicated
// watermark, the backup confirmation a store cannot give about itself.
//
// Table is the pure state (reports in, rows and watermarks out, stepped
// with the time); Registry is its thread-safe shell on a gRPC server and
// client; Stall decides when a watermark that stopped moving is worth a
// log line.
package replicas
