package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgenticSessionSpec is what the user asks for: an agent, its work, and how hard
// tether should try to keep it alive.
type AgenticSessionSpec struct {
	// Agent is the container that runs the agent CLI. tether's runner drives it;
	// the image does not need to contain tether.
	// +required
	Agent AgentSpec `json:"agent"`

	// InitialPrompt is sent to the agent once in the life of the session. The
	// runner keeps a durable marker, so restarts and resumes never send it twice.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	InitialPrompt string `json:"initialPrompt,omitempty"`

	// Repos are cloned into the workspace (repos/<name>) when the session starts
	// fresh; on a restart their captured state is restored instead.
	// +optional
	// +listType=map
	// +listMapKey=url
	// +kubebuilder:validation:MaxItems=32
	Repos []RepoSpec `json:"repos,omitempty"`

	// Suspend stops the session gracefully and keeps everything (the Job
	// convention): true deletes the pod after a final snapshot, false brings the
	// session back, resumed.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Recovery says what to do when the runner dies.
	// +optional
	Recovery RecoverySpec `json:"recovery,omitempty"`

	// Storage is where the workspace snapshots live.
	// +required
	Storage StorageSpec `json:"storage"`

	// Sync tunes the snapshot sidecar.
	// +optional
	Sync SyncSpec `json:"sync,omitempty"`

	// InactivityTimeout suspends the session when the runner reports no
	// activity for this long. Unset or zero: never.
	// +optional
	InactivityTimeout *metav1.Duration `json:"inactivityTimeout,omitempty"`

	// RuntimeClassName is copied to the pod (for example a gVisor or Kata class).
	// +optional
	RuntimeClassName *string `json:"runtimeClassName,omitempty"`

	// ServiceAccountName is the pod's service account. Empty: the namespace's
	// default. tether's containers do not need Kubernetes API access.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// WorkspaceSize caps the workspace emptyDir. Default 10Gi.
	// +optional
	WorkspaceSize *resource.Quantity `json:"workspaceSize,omitempty"`
}

// AgentSpec is the user's agent container.
type AgentSpec struct {
	// Image is the agent image, with the agent CLI in it.
	// +required
	// +kubebuilder:validation:XValidation:rule="self.trim() != ''",message="agent.image must name a container image, e.g. ghcr.io/acme/claude-agent:1.0"
	Image string `json:"image"`

	// ImagePullPolicy of the agent image.
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Command is the agent CLI the runner starts (default: the runner's own
	// default, claude). Args are appended to it.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Command []string `json:"command,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Args []string `json:"args,omitempty"`

	// Env for the agent. Values come only from Secrets or ConfigMaps: a literal
	// value here would put credentials into the AgenticSession object.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Env []EnvVar `json:"env,omitempty"`

	// EnvFrom imports every key of a Secret as environment variables.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	EnvFrom []SecretEnvSource `json:"envFrom,omitempty"`

	// Resources of the runner container. Its memory limit is the starting point
	// that recovery raises after an OOM kill.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// EnvVar is one environment variable whose value comes from a Secret or a ConfigMap.
// +kubebuilder:validation:XValidation:rule="has(self.secretKeyRef) != has(self.configMapKeyRef)",message="env entries take their value from exactly one of secretKeyRef or configMapKeyRef; literal values are not allowed, put them in a Secret or ConfigMap"
type EnvVar struct {
	// Name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	Name string `json:"name"`
	// +optional
	SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef,omitempty"`
	// +optional
	ConfigMapKeyRef *corev1.ConfigMapKeySelector `json:"configMapKeyRef,omitempty"`
}

// SecretEnvSource imports all keys of one Secret.
type SecretEnvSource struct {
	// SecretName in the session's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName"`
	// Prefix prepended to every key.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Prefix string `json:"prefix,omitempty"`
}

// RepoSpec is one git repository the agent works in.
type RepoSpec struct {
	// URL to clone (https://, ssh:// or git@host:path).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// Never credentials: the URL is in the pod spec and on command lines,
	// readable by anyone who can get pods or run ps. An ssh user name
	// (git@host:path, ssh://git@host/path) is not a credential and is fine.
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?://|ssh://|git://|git@)[^ #]+$')",message="repos[].url must be a git URL such as https://github.com/org/repo.git or git@github.com:org/repo.git (no spaces, no '#')"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(https?|git)://[^/?#]*@')",message="repos[].url must not contain credentials (user@ or user:token@ before the host): the URL is visible in the pod spec and process list. Use https://host/org/repo.git and put the token under the key TETHER_GIT_TOKEN in the Secret named by spec.storage.credentialsSecret; hydrate gives it to git as an http.extraHeader through the environment, never on a command line"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^ssh://[^/?#@]*:[^/?#@]*@')",message="repos[].url must not contain a password (ssh://user:password@host): use https://host/org/repo.git with the token under the key TETHER_GIT_TOKEN in the Secret named by spec.storage.credentialsSecret; ssh://git@host/org/repo.git and git@host:org/repo.git name a user, not a password, and are fine"
	URL string `json:"url"`
	// Branch to check out on a fresh start. Empty: the remote's default.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ') && !self.contains('#')",message="repos[].branch must not contain spaces or '#'"
	Branch string `json:"branch,omitempty"`
}

// RecoverySpec is the policy for a dead runner.
type RecoverySpec struct {
	// MaxRestarts is how many times the session is brought back after the
	// runner dies (OOM kill, crash, eviction, node loss, pod deleted) before it
	// is marked Failed. Default 5. 0: never restart.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="recovery.maxRestarts must be 0 or more (0 means: never restart)"
	// +kubebuilder:validation:XValidation:rule="self <= 1000",message="recovery.maxRestarts must be at most 1000"
	MaxRestarts *int32 `json:"maxRestarts,omitempty"`

	// InitialBackoff is the wait before the first restart; it doubles on each
	// further restart up to MaxBackoff. Default 10s.
	// +optional
	InitialBackoff *metav1.Duration `json:"initialBackoff,omitempty"`

	// MaxBackoff caps the wait between restarts. Default 5m.
	// +optional
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`

	// OOMMemoryFactor multiplies the runner's memory limit after each OOM kill,
	// because a restart with the same limit tends to die the same way. Default 1.5.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self > 1.0",message="recovery.oomMemoryFactor must be greater than 1 (e.g. 1.5): restarting with the same memory limit after an OOM kill usually dies again"
	// +kubebuilder:validation:XValidation:rule="self <= 10.0",message="recovery.oomMemoryFactor must be at most 10"
	OOMMemoryFactor *float64 `json:"oomMemoryFactor,omitempty"`

	// MemoryCeiling is the largest memory limit recovery raises to. Unset: four
	// times the initial limit.
	// +optional
	MemoryCeiling *resource.Quantity `json:"memoryCeiling,omitempty"`
}

// StorageSpec is the object store holding the session's snapshots.
type StorageSpec struct {
	// URL of the bucket and prefix, e.g. s3://my-bucket/tether. Snapshots go to
	// <prefix>/<namespace>/<session>/.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(s3|gs|azblob)://[a-z0-9][-a-z0-9._]*(/[^?#]*)?([?][^#]*)?$') || self.matches('^file:///[^?#]*$')",message="storage.url must be an object-store URL such as s3://bucket/prefix, gs://bucket/prefix or azblob://container/prefix (file:///path for a mounted volume); credentials go in credentialsSecret, not in the URL"
	URL string `json:"url"`

	// CredentialsSecret holds the store credentials (for S3: AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY, optionally AWS_REGION and AWS_ENDPOINT_URL). Its
	// keys become environment variables of hydrate and sync only.
	// +optional
	CredentialsSecret *corev1.LocalObjectReference `json:"credentialsSecret,omitempty"`
}

// SyncSpec tunes the snapshot sidecar.
type SyncSpec struct {
	// FinalBudget is how long the sidecar may spend on its final snapshot after
	// SIGTERM. The pod's termination grace period is derived from it. Default 60s.
	// +optional
	FinalBudget *metav1.Duration `json:"finalBudget,omitempty"`

	// NativeSidecar runs sync as a native sidecar (an init container with
	// restartPolicy Always, Kubernetes >= 1.29), which gets SIGTERM only after
	// the runner has exited. false runs it as a regular container, for older
	// clusters. Default true.
	// +optional
	NativeSidecar *bool `json:"nativeSidecar,omitempty"`

	// Resources of the sync sidecar. Default: 50m CPU, 128Mi request, 512Mi limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// SessionPhase is the coarse state of a session.
// +kubebuilder:validation:Enum=Pending;Creating;Running;Recovering;Suspending;Suspended;Completed;Failed
type SessionPhase string

const (
	PhasePending    SessionPhase = "Pending"
	PhaseCreating   SessionPhase = "Creating"
	PhaseRunning    SessionPhase = "Running"
	PhaseRecovering SessionPhase = "Recovering"
	PhaseSuspending SessionPhase = "Suspending"
	PhaseSuspended  SessionPhase = "Suspended"
	PhaseCompleted  SessionPhase = "Completed"
	PhaseFailed     SessionPhase = "Failed"
)

// Condition types.
const (
	// ConditionReady is True while the runner is running.
	ConditionReady = "Ready"
	// ConditionRecovering is True while a restart is pending.
	ConditionRecovering = "Recovering"
	// ConditionFailed is True when the session will not be retried; its message
	// says why and what to do.
	ConditionFailed = "Failed"
	// ConditionRestoredOlderSnapshot is True when the current pod's hydrate
	// restored a snapshot older than the newest, because the newer ones are
	// damaged or stale; its message names each skipped snapshot and why.
	ConditionRestoredOlderSnapshot = "RestoredOlderSnapshot"
	// ConditionFenced is True when the current pod's sync stopped saving
	// because another writer took the session over; its message says who
	// and when.
	ConditionFenced = "Fenced"
)

// AgenticSessionStatus is what the operator observed.
type AgenticSessionStatus struct {
	// Phase of the session.
	// +optional
	Phase SessionPhase `json:"phase,omitempty"`

	// Conditions with reasons a person can act on.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the spec generation this status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// RestartCount is how many times the session was brought back.
	// +optional
	RestartCount int32 `json:"restartCount,omitempty"`

	// OOMCount is how many of those restarts followed an OOM kill.
	// +optional
	OOMCount int32 `json:"oomCount,omitempty"`

	// RunnerMemoryLimit is the memory limit the current (or next) runner gets,
	// after any OOM bumps.
	// +optional
	RunnerMemoryLimit *resource.Quantity `json:"runnerMemoryLimit,omitempty"`

	// LastTermination is the last time a runner pod ended other than by request.
	// +optional
	LastTermination *Termination `json:"lastTermination,omitempty"`

	// NextRestartTime is when the pending restart will happen (backoff).
	// +optional
	NextRestartTime *metav1.Time `json:"nextRestartTime,omitempty"`

	// AgentSessionID is the agent CLI's session id, which --resume uses.
	// +optional
	AgentSessionID string `json:"agentSessionID,omitempty"`

	// LastResumeOutcome is what the runner reported on its last start:
	// resumed, failed or fresh.
	// +optional
	LastResumeOutcome string `json:"lastResumeOutcome,omitempty"`

	// LastSnapshot is the newest complete snapshot the sidecar reported.
	// +optional
	LastSnapshot *SnapshotRef `json:"lastSnapshot,omitempty"`

	// LastRestore is what the hydrate of the current (or last) pod restored,
	// as it reported in its termination message.
	// +optional
	LastRestore *RestoreReport `json:"lastRestore,omitempty"`

	// PodName of the current pod.
	// +optional
	PodName string `json:"podName,omitempty"`

	// StartTime is when the session first started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// CompletionTime is when the session reached Completed or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// LastActivityTime is the runner's last reported activity, for the
	// inactivity timeout.
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`
}

// Termination records how a runner pod ended.
type Termination struct {
	// Pod that ended.
	Pod string `json:"pod"`
	// Container that ended (runner, sync, hydrate...). Empty when the whole pod
	// went away (deleted, evicted, node lost).
	// +optional
	Container string `json:"container,omitempty"`
	// Reason: OOMKilled, Error, Evicted, Preempted, NodeLost, PodDeleted,
	// ImagePullFailed, ConfigError, Completed.
	Reason string `json:"reason"`
	// Message from the kubelet or the operator.
	// +optional
	Message string `json:"message,omitempty"`
	// ExitCode of the container, when it exited.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// Time the container finished, or the operator noticed.
	Time metav1.Time `json:"time"`
	// MemoryLimit the runner had at the time.
	// +optional
	MemoryLimit *resource.Quantity `json:"memoryLimit,omitempty"`
}

// SnapshotRef names one snapshot.
type SnapshotRef struct {
	ID   string      `json:"id"`
	Time metav1.Time `json:"time"`
	// LeftOut counts the entries this snapshot's save could not keep
	// (unreadable, special files, paths too long, over the size cap); the
	// sync's log and `tether snapshot ls` name them.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LeftOut int32 `json:"leftOut,omitempty"`
	// ReposAsFiles counts the repositories this snapshot holds file by file
	// (.git included) because git could not capture them.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ReposAsFiles int32 `json:"reposAsFiles,omitempty"`
}

// RestoreReport is what one pod's hydrate did.
type RestoreReport struct {
	// Pod whose hydrate this is.
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// Outcome: restored (the newest snapshot), restored-older (newer ones
	// were skipped, see skipped), fresh (the session had no snapshot), kept
	// (the workspace was already hydrated in this pod), or unreported
	// (hydrate left no readable report).
	// +kubebuilder:validation:Enum=restored;restored-older;fresh;kept;unreported
	Outcome string `json:"outcome"`
	// Snapshot restored.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]{10}$`
	Snapshot string `json:"snapshot,omitempty"`
	// Epoch is the writer epoch the pod took for the session.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`
	// Skipped are the newest of the snapshots newer than snapshot that were
	// not restored, newest first, with why.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	Skipped []SkippedSnapshot `json:"skipped,omitempty"`
	// SkippedCount is how many were skipped in all (skipped lists at most 10).
	// +optional
	SkippedCount int32 `json:"skippedCount,omitempty"`
	// LeftOut counts the entries the restored snapshot lacks because its
	// save could not keep them.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LeftOut int32 `json:"leftOut,omitempty"`
	// ReposAsFiles counts the repositories that came back file by file
	// (.git included) rather than rebuilt by git.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ReposAsFiles int32 `json:"reposAsFiles,omitempty"`
	// Time the hydrate finished.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// SkippedSnapshot is a snapshot hydrate did not restore.
type SkippedSnapshot struct {
	// ID of the snapshot.
	// +kubebuilder:validation:Pattern=`^[0-9]{10}$`
	ID string `json:"id"`
	// Reason it was skipped: the damaged object, or the stale writer.
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason"`
}

// AgenticSession is one long-running agent session, kept alive across OOM kills,
// node loss and restarts.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 50 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label (lowercase letters, digits, '-') of at most 50 characters: it names the session's pods and Service"
// +kubebuilder:resource:shortName=as,categories=tether
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Restarts",type=integer,JSONPath=`.status.restartCount`
// +kubebuilder:printcolumn:name="Last-Termination",type=string,JSONPath=`.status.lastTermination.reason`
// +kubebuilder:printcolumn:name="Snapshot",type=date,JSONPath=`.status.lastSnapshot.time`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgenticSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AgenticSessionSpec   `json:"spec"`
	Status AgenticSessionStatus `json:"status,omitempty"`
}

// AgenticSessionList is a list of AgenticSessions.
//
// +kubebuilder:object:root=true
type AgenticSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgenticSession `json:"items"`
}
