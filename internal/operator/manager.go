package operator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// Client-side limits of the operator's API requests. client-go's defaults
// (QPS 5-20) would make a burst of recoveries in a large cluster wait on the
// client, not on the API server; these stay well inside the API server's
// default priority-and-fairness share for a controller.
const (
	DefaultKubeAPIQPS   = 100
	DefaultKubeAPIBurst = 200
)

// NewScheme returns a scheme with the core Kubernetes types and AgenticSession.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := tetherv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// CacheOptions restricts the manager's cache to the operator's own pods,
// Services, runner-token Secrets and NetworkPolicies (by label) and, when namespaces is not empty, to those namespaces.
// Without the label filter the operator would hold every pod of the cluster in
// memory.
func CacheOptions(namespaces []string) (cache.Options, error) {
	sel, err := labels.Parse(ManagedBySelector)
	if err != nil {
		return cache.Options{}, err
	}
	opts := cache.Options{
		// managedFields are a large share of every cached object and the
		// operator never reads them (it writes with merge patches only).
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Label: sel},
			&corev1.Service{}:             {Label: sel},
			&corev1.Secret{}:              {Label: sel},
			&networkingv1.NetworkPolicy{}: {Label: sel},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts, nil
}

// Setup registers the AgenticSession reconciler and its metrics (with reg,
// when not nil) on mgr.
func Setup(mgr ctrl.Manager, cfg PodConfig, concurrency int, reg prometheus.Registerer) (*Reconciler, error) {
	if cfg.TetherImage == "" {
		return nil, fmt.Errorf("operator: no tether image configured; pass --tether-image")
	}
	if cfg.OperatorNamespace == "" || len(cfg.OperatorPodLabels) == 0 {
		return nil, fmt.Errorf("operator: the operator's namespace and pod labels are needed for the sessions' NetworkPolicies; pass --operator-namespace and --operator-pod-labels")
	}
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  mgr.GetEventRecorder("tether-operator"),
		Config:    cfg,
	}
	if reg != nil {
		m, err := NewMetrics(reg, mgr.GetClient())
		if err != nil {
			return nil, fmt.Errorf("operator: register metrics: %w", err)
		}
		r.Metrics = m
	}
	if err := r.SetupWithManager(mgr, concurrency); err != nil {
		return nil, err
	}
	return r, nil
}
