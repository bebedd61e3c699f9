package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tether-dev/tether/internal/cliutil"
	"github.com/tether-dev/tether/internal/operator"
)

func newRootCmd() *cobra.Command {
	var (
		metricsAddr, probeAddr  string
		leaderElect             bool
		leaderElectionNamespace string
		kubeconfig              string
		watchNamespaces         []string
		concurrency             int
		observeInterval         time.Duration
		qps                     float32
		burst                   int
		pullPolicy              string
		operatorLabels          string
		clientPods, clientNSs   string
		cfg                     = operator.DefaultPodConfig()
		zapOpts                 = zap.Options{}
	)
	// The image the pods' tether containers run defaults to this binary's
	// own version, so operator and pods match.
	cfg.TetherImage = "ghcr.io/tether-dev/tether:" + version
	if version == "dev" {
		cfg.TetherImage = "ghcr.io/tether-dev/tether:latest"
	}

	c := &cobra.Command{
		Use:   "tether-operator",
		Short: "Run the Kubernetes operator that keeps AgenticSessions alive",
		Long: `tether-operator reconciles AgenticSession objects (tether.dev/v1alpha1) into
one pod per session: hydrate restores the workspace, a native sidecar snapshots
it, and the runner drives the agent. It watches every container of the pod in
every phase; when the runner dies (OOM kill, crash, eviction, node loss, pod
deleted) it lets the final snapshot finish, then starts a new pod that resumes
the session, with more memory after an OOM kill, up to spec.recovery.maxRestarts.

Install the CRD and RBAC first (make deploy renders config/). ` + "`tether operator`" + `
runs this binary, found next to tether or on $PATH.`,
		Args:          noArgs,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.TetherImage == "" {
				return cliutil.Usagef("--tether-image must not be empty")
			}
			switch corev1.PullPolicy(pullPolicy) {
			case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
				cfg.TetherImagePullPolicy = corev1.PullPolicy(pullPolicy)
			default:
				return cliutil.Usagef("--tether-image-pull-policy %q: use Always, IfNotPresent or Never", pullPolicy)
			}
			if concurrency < 1 {
				return cliutil.Usagef("--max-concurrent-reconciles must be at least 1, got %d", concurrency)
			}
			if cfg.RunnerPort < 1 || cfg.RunnerPort > 65535 || cfg.RunnerPort == operator.SyncMetricsPort {
				return cliutil.Usagef("--runner-port %d: use a port in 1-65535 other than %d (the sync sidecar's)", cfg.RunnerPort, operator.SyncMetricsPort)
			}
			if observeInterval < 0 {
				return cliutil.Usagef("--observe-interval must not be negative (0 turns observing off), got %s", observeInterval)
			}
			if cfg.RunAsUser <= 0 {
				return cliutil.Usagef("--run-as-user %d: session pods never run as root; use a UID above 0", cfg.RunAsUser)
			}
			var nss []string
			for _, ns := range watchNamespaces {
				ns = strings.TrimSpace(ns)
				if ns == "" {
					continue
				}
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					return cliutil.Usagef("--watch-namespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
				}
				nss = append(nss, ns)
			}
			lbls, err := labels.ConvertSelectorToLabelsMap(operatorLabels)
			if err != nil || len(lbls) == 0 {
				return cliutil.Usagef("--operator-pod-labels %q: give the operator pods' labels as key=value[,key=value] (they must match the Deployment's pod template)", operatorLabels)
			}
			cfg.OperatorPodLabels = lbls
			peer, err := operator.RunnerClientPeer(clientPods, clientNSs)
			if err != nil {
				return cliutil.Usagef("--runner-client-pod-selector/--runner-client-namespace-selector: %v", err)
			}
			if peer != nil {
				cfg.RunnerClients = append(cfg.RunnerClients, *peer)
			}
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

			restCfg, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			// After the kubeconfig: a bad --kubeconfig outside a pod is
			// the error to report first.
			if cfg.OperatorNamespace == "" {
				cfg.OperatorNamespace = ownNamespace()
			}
			if cfg.OperatorNamespace == "" {
				return cliutil.Usagef("--operator-namespace: not running in a pod ($POD_NAMESPACE unset, no service account namespace file); pass the namespace the operator's pods run in")
			}
			if errs := validation.IsDNS1123Label(cfg.OperatorNamespace); len(errs) > 0 {
				return cliutil.Usagef("--operator-namespace: %q is not a namespace name: %s", cfg.OperatorNamespace, strings.Join(errs, "; "))
			}
			if qps <= 0 || burst <= 0 {
				return cliutil.Usagef("--kube-api-qps and --kube-api-burst must be positive, got %v and %d", qps, burst)
			}
			restCfg.QPS, restCfg.Burst = qps, burst
			scheme, err := operator.NewScheme()
			if err != nil {
				return err
			}
			cacheOpts, err := operator.CacheOptions(nss)
			if err != nil {
				return err
			}
			mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
				Scheme:                        scheme,
				Cache:                         cacheOpts,
				Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
				HealthProbeBindAddress:        probeAddr,
				LeaderElection:                leaderElect,
				LeaderElectionID:              "tether-operator.tether.dev",
				LeaderElectionNamespace:       leaderElectionNamespace,
				LeaderElectionReleaseOnCancel: true,
			})
			if err != nil {
				return fmt.Errorf("operator: create manager: %w", err)
			}
			r, err := operator.Setup(mgr, cfg, concurrency, ctrlmetrics.Registry)
			if err != nil {
				return err
			}
			if observeInterval > 0 {
				r.Observer = &operator.HTTPObserver{RunnerPort: cfg.RunnerPort, RunnerToken: operator.SecretTokens(mgr.GetClient())}
				r.ObserveInterval = observeInterval
			}
			if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
				return err
			}
			if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
				return err
			}
			ctrl.Log.WithName("operator").Info("starting", "tetherImage", cfg.TetherImage, "watchNamespaces", nss,
				"leaderElection", leaderElect, "concurrency", concurrency, "version", version)
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return mgr.Start(ctx)
		},
	}
	f := c.Flags()
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint (\"0\": off)")
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (\"0\": off)")
	f.BoolVar(&leaderElect, "leader-elect", false, "elect a leader so only one of several replicas reconciles")
	f.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's own namespace)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config)")
	f.StringSliceVar(&watchNamespaces, "watch-namespaces", nil, "comma-separated namespaces to watch (default: all)")
	f.IntVar(&concurrency, "max-concurrent-reconciles", 8, "sessions reconciled in parallel (reconciles wait on the API server, not the CPU)")
	f.DurationVar(&observeInterval, "observe-interval", 30*time.Second,
		"how often running pods are asked (runner GET /status, sync GET /healthz at the pod IP) for the agent session id, resume outcome, last snapshot and activity; 0: never (then spec.inactivityTimeout has no effect)")
	f.Float32Var(&qps, "kube-api-qps", operator.DefaultKubeAPIQPS, "sustained requests per second to the Kubernetes API")
	f.IntVar(&burst, "kube-api-burst", operator.DefaultKubeAPIBurst, "burst of requests to the Kubernetes API")
	f.StringVar(&cfg.TetherImage, "tether-image", cfg.TetherImage, "image with the tether binary as ENTRYPOINT, for the install, hydrate and sync containers")
	f.StringVar(&pullPolicy, "tether-image-pull-policy", string(cfg.TetherImagePullPolicy), "pull policy of --tether-image")
	f.Int32Var(&cfg.RunnerPort, "runner-port", cfg.RunnerPort, "port of the runner's AG-UI HTTP server, exposed by each session's Service")
	f.Int64Var(&cfg.RunAsUser, "run-as-user", cfg.RunAsUser, "UID (and GID) of every container of a session pod")
	f.StringVar(&cfg.OperatorNamespace, "operator-namespace", "",
		"namespace of the operator's own pods, admitted to the runner and sync ports by each session's NetworkPolicy (default: $POD_NAMESPACE, else the pod's service account namespace)")
	f.StringVar(&operatorLabels, "operator-pod-labels", "app.kubernetes.io/name=tether-operator",
		"labels of the operator's own pods (key=value,...), admitted to the runners by each session's NetworkPolicy; must match the Deployment's pod template")
	f.StringVar(&clientPods, "runner-client-pod-selector", "",
		"label selector of further pods admitted to the runner port and the sync sidecar's metrics port, e.g. a UI, backend or Prometheus (\"app=tether-ui\"); the runner still wants the session's token")
	f.StringVar(&clientNSs, "runner-client-namespace-selector", "",
		"label selector of the namespaces of --runner-client-pod-selector (\"kubernetes.io/metadata.name=tether-ui\"; default: the session's own namespace)")
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)

	// Cobra reports unknown flags through this hook; mark them as usage
	// errors so they exit 2.
	return c
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cliutil.Usagef("%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

// ownNamespace is the namespace this process runs in, from the downward API
// variable the manifests set, else the service account mount; "" outside a pod.
func ownNamespace() string {
	if ns := strings.TrimSpace(os.Getenv("POD_NAMESPACE")); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil || len(b) > 253 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadKubeconfig uses --kubeconfig when given, else controller-runtime's
// lookup (in-cluster, $KUBECONFIG, ~/.kube/config).
func loadKubeconfig(path string) (*rest.Config, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, cliutil.Usagef("--kubeconfig: %v", err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("operator: load kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("operator: no Kubernetes API to talk to (not in a cluster, no $KUBECONFIG, no ~/.kube/config); pass --kubeconfig: %w", err)
	}
	return cfg, nil
}
