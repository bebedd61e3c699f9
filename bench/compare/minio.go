package main

import "github.com/tether-dev/tether/internal/store/storetest"

// The store tests' MinIO (storetest.StartMinio: the pinned binary that
// hack/install-minio.sh builds, on 127.0.0.1, dying with this process), with
// what rclone and tether need to reach it.
const (
	accessKey = storetest.MinioAccessKey
	secretKey = storetest.MinioSecretKey
	region    = storetest.MinioRegion
)

type minioServer struct{ *storetest.MinioServer }

// startMinio runs MinIO with its data in dataDir.
func startMinio(dataDir string) (*minioServer, error) {
	m, err := storetest.StartMinio(dataDir)
	if err != nil {
		return nil, err
	}
	return &minioServer{m}, nil
}

func (m *minioServer) stop() { m.Stop() }

// rcloneEnv configures the rclone remote "bench" on the server, with no
// config file.
func (m *minioServer) rcloneEnv() []string {
	return []string{
		"RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Minio",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=" + accessKey,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=" + secretKey,
		"RCLONE_CONFIG_BENCH_ENDPOINT=" + m.Endpoint,
		"RCLONE_CONFIG_BENCH_REGION=" + region,
	}
}

// tetherEnv gives tether the S3 credentials (it reads them from the
// environment only).
func (m *minioServer) tetherEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=" + secretKey, "AWS_REGION=" + region, "AWS_EC2_METADATA_DISABLED=true"}
}

func (m *minioServer) tetherURL(bucket string) string { return storetest.S3URL(m.Endpoint, bucket) }
