// Package storetest checks that a store.Store keeps its contract, and gives
// other packages' tests the same set of real backends to run against: a
// directory, an in-process S3 fake and a real MinIO server on 127.0.0.1.
//
// In another package's tests:
//
//	func TestMain(m *testing.M) { storetest.Main(m) } // stops MinIO at the end
//
//	func TestSomething(t *testing.T) {
//		for _, b := range storetest.Backends(t) { // fresh, empty each call
//			t.Run(b.Name, func(t *testing.T) {
//				s, err := store.Open(ctx, b.URL)
//				...
//			})
//		}
//	}
//
// S3 credentials reach store.Open through the environment: Backends sets
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION for the whole test
// process once (see UseTestCredentials), because t.Setenv rules out
// t.Parallel. MinIO is built by hack/install-minio.sh; without it the minio
// backend is skipped with a loud log line, and with CI=true the test fails.
package storetest
