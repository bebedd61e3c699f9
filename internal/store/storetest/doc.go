// Package storetest checks that a store.Store keeps its contract, and gives
// other packages' tests the same set of real backends to run against: a
// directory, an in-process S3 fake and a real MinIO server on 127.0.0.1.
package storetest
