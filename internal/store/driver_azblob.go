//go:build tether_azblob

package store

// azblob:// (Azure Blob Storage). Opt-in: see optionalDrivers for why.
import _ "gocloud.dev/blob/azureblob"
