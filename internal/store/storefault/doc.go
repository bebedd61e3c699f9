// Package storefault wraps a store.Store to inject failures in tests: failed,
// stalled, dropped, torn and acknowledged-but-lost calls, by call number, by
// operation and key, or at random from a seeded source.
package storefault
