// Package faults is the fault campaign: the real `tether sync` binary next
// to the data-loss harness's writer (test/agentwriter) while faults come and
// go: store outages (a file:// store unwritable for the sync's unprivileged
// user, its file system full, MinIO killed and restarted), latency, 5xx
// bursts and lost acknowledgements from a reverse proxy in front of MinIO, a
// full workspace disk, SIGSTOP of the sync. After each fault clears it
// checks that a snapshot started within the backoff cap plus one save, that
// after an outage it holds every write made before the clear, and that the
// newest snapshot lacks no write older than the data-loss window; at the end
// of a session the final snapshot must hold every write.
//
// `make test` runs TestOutageRecovery and TestFaultMix (a few minutes);
// `make faults` runs TestCampaign, FAULTS_DURATION of random faults, and
// writes docs/faults.md. FAULTS_CASES=name,... runs only those sessions of
// TestOutageRecovery and TestFaultMix, FAULTS_PARALLEL how many run at once
// (default 5), FAULTS_KEEP_LOGS=dir keeps each session's sync and writer
// logs there. It runs as root: the sync and the writer run as uid
// 65534 (root ignores file permissions) and the store and workspace are
// small tmpfs mounts, always unmounted at the end.
package faults
