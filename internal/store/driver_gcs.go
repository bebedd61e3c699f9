//go:build tether_gcs

package store

// gs:// (Google Cloud Storage). Opt-in: see optionalDrivers for why.
import _ "gocloud.dev/blob/gcsblob"
