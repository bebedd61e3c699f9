package operator

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// The scale bench is not part of `go test`: it needs minutes and most of two
// cores. Run it with
//
//	TETHER_SCALE_SESSIONS=2000 go test -run TestScale -v -timeout 60m ./internal/operator/
//
// The operator runs in its own process (this test binary re-executed), so its
// RSS is the operator's alone; the test plays users and kubelets.
const envScaleSessions = "TETHER_SCALE_SESSIONS"

// envOperatorProcess, when set to a kubeconfig path, turns this test binary
// into a bare operator process (see TestMain).
const envOperatorProcess = "TETHER_TEST_OPERATOR_KUBECONFIG"

// runOperatorProcess is the re-executed operator: the same wiring as `tether
// operator`, without the observer (no pods answer HTTP here).
func runOperatorProcess(kubeconfig string) int {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The same client limits as `tether operator`'s defaults.
	cfg.QPS, cfg.Burst = DefaultKubeAPIQPS, DefaultKubeAPIBurst
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	scheme, _ := NewScheme()
	cacheOpts, _ := CacheOptions(nil)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Cache: cacheOpts,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := Setup(mgr, DefaultPodConfig(), 8, prometheus.NewRegistry()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("operator-ready")
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(envScaleSessions))
	if n <= 0 {
		t.Skipf("scale bench: set %s=2000 to run it (minutes, not part of make test)", envScaleSessions)
	}
	needEnvtest(t)
	ctx := context.Background()

	// A second operator would fight the suite's for the same objects: give
	// the bench its own namespaces and its own operator, and pause nothing.
	// The suite's manager ignores them only if it cannot see them, so the
	// bench runs against a fresh envtest.
	env := &envtest.Environment{
		BinaryAssetsDirectory: envtestAssets(),
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cfg.QPS, cfg.Burst = 500, 1000
	scheme, _ := NewScheme()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.AddUser(envtest.User{Name: "bench-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	self, _ := os.Executable()
	op := exec.Command(self)
	op.Env = append(os.Environ(), envOperatorProcess+"="+kcPath)
	op.Stderr = os.Stderr
	stdout, _ := op.StdoutPipe()
	if err := op.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		op.Process.Signal(syscall.SIGTERM)
		op.Wait()
	}()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); !strings.Contains(line, "operator-ready") {
		t.Fatalf("operator process: %q", line)
	}
	rss := func() (cur, peak int64) {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", op.Process.Pid))
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				cur, _ = strconv.ParseInt(f[1], 10, 64)
			}
			if len(f) >= 2 && f[0] == "VmHWM:" {
				peak, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
		return cur << 10, peak << 10
	}
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	cur, _ := rss()
	t.Logf("operator idle RSS %s", mib(cur))

	// 100 sessions per namespace, like teams.
	const perNS = 100
	nsOf := func(i int) string { return fmt.Sprintf("bench-%d", i/perNS) }
	for i := 0; i < n; i += perNS {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOf(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	parallel := func(what string, fn func(i int) error) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		work := make(chan int)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if err := fn(i); err != nil {
						errs <- fmt.Errorf("%s %d: %w", what, i, err)
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("%s x%d: %s", what, n, time.Since(start).Round(time.Millisecond))
	}
	name := func(i int) string { return fmt.Sprintf("s%d", i) }

	parallel("create session", func(i int) error {
		s := newSession(nsOf(i), name(i))
		s.Spec.Recovery.InitialBackoff = &metav1.Duration{Duration: time.Second}
		return c.Create(ctx, s)
	})
	waitAll := func(what string, timeout time.Duration, ok func(*tetherv1.AgenticSession) bool) {
		start := time.Now()
		for {
			var list tetherv1.AgenticSessionList
			if err := c.List(ctx, &list); err != nil {
				t.Fatal(err)
			}
			done := 0
			for i := range list.Items {
				if ok(&list.Items[i]) {
					done++
				}
			}
			if done == n {
				t.Logf("all %d sessions %s after %s", n, what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > timeout {
				t.Fatalf("%d of %d sessions %s after %s", done, n, what, timeout)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitAll("Creating", 10*time.Minute, func(s *tetherv1.AgenticSession) bool { return s.Status.Phase == tetherv1.PhaseCreating })

	parallel("kubelet: runner running", func(i int) error {
		return kubeletErr(c, nsOf(i), name(i)+"-0", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"),
				exited(ContainerHydrate, 0, "Completed"), running(ContainerSync, true)}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(ContainerRunner, true)}
		})
	})
	waitAll("Running", 10*time.Minute, func(s *tetherv1.AgenticSession) bool { return s.Status.Phase == tetherv1.PhaseRunning })
	time.Sleep(2 * time.Second)
	cur, peak := rss()
	t.Logf("operator RSS with %d Running sessions (%d pods, %d Services cached): %s (peak %s)", n, n, n, mib(cur), mib(peak))

	// Time, per session, container termination -> status change, first for a
	// trickle (what a cluster sees day to day: a few OOM kills a second among
	// 2,000 healthy sessions), then for a burst (every runner at once, a
	// node pool lost).
	w, err := c.Watch(ctx, &tetherv1.AgenticSessionList{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	killed := map[string]time.Time{}
	var lat []time.Duration
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified {
				continue
			}
			s := ev.Object.(*tetherv1.AgenticSession)
			if s.Status.RestartCount < 1 {
				continue
			}
			mu.Lock()
			if at, ok := killed[s.Namespace+"/"+s.Name]; ok {
				lat = append(lat, time.Since(at))
				delete(killed, s.Namespace+"/"+s.Name)
			}
			mu.Unlock()
		}
	}()
	kill := func(i int) error {
		return kubeletErr(c, nsOf(i), name(i)+"-0", func(p *corev1.Pod) {
			now := time.Now()
			mu.Lock()
			killed[nsOf(i)+"/"+name(i)] = now
			mu.Unlock()
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerRunner, State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: metav1.NewTime(now)}}}}
		})
	}
	report := func(what string, want int) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			mu.Lock()
			got := len(lat)
			mu.Unlock()
			if got >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: only %d of %d terminations reached the status", what, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		mu.Lock()
		l := slices.Clone(lat)
		lat = lat[:0]
		mu.Unlock()
		slices.Sort(l)
		pct := func(p float64) time.Duration { return l[int(float64(len(l)-1)*p)].Round(time.Millisecond) }
		cur, peak := rss()
		t.Logf("%s: termination -> status change over %d sessions: p50 %s p90 %s p99 %s max %s; operator RSS %s (peak %s)",
			what, len(l), pct(0.5), pct(0.9), pct(0.99), pct(1), mib(cur), mib(peak))
	}

	trickle := min(n/10, 200)
	tick := time.NewTicker(100 * time.Millisecond) // 10 kills a second
	for i := 0; i < trickle; i++ {
		<-tick.C
		if err := kill(i); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	report(fmt.Sprintf("trickle (10/s, %d of %d sessions)", trickle, n), trickle)

	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := kill(i); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := trickle; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("burst: %d kills written in %s", n-trickle, time.Since(start).Round(time.Millisecond))
	report(fmt.Sprintf("burst (%d at once)", n-trickle), n-trickle)

	waitAll("recreated (pod -1)", 10*time.Minute, func(s *tetherv1.AgenticSession) bool { return s.Status.PodName == s.Name+"-1" })
	cur, peak = rss()
	t.Logf("operator RSS at the end: %s (peak %s)", mib(cur), mib(peak))
}

func kubeletErr(c client.Client, ns, pod string, mutate func(*corev1.Pod)) error {
	for attempt := 0; ; attempt++ {
		var p corev1.Pod
		err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: pod}, &p)
		if err == nil {
			mutate(&p)
			err = c.Status().Update(context.Background(), &p)
		}
		if err == nil || attempt > 20 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
