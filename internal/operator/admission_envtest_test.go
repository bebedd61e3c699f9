package operator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// The admission policy the README shows (config/samples/admission-policy.yaml)
// is accepted by a real API server and does what it says: in a labelled
// namespace a session with a foreign image, a service account or its own
// command is denied, a conforming one is admitted, and unlabelled namespaces
// are left alone.
func TestAdmissionPolicySample(t *testing.T) {
	needEnvtest(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "admission-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The README shows the same YAML, without the file's leading comment.
	body := regexp.MustCompile(`(?s)^(#[^\n]*\n)*`).ReplaceAllString(string(data), "")
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+body+"```") {
		t.Errorf("README.md's admission policy example differs from config/samples/admission-policy.yaml")
	}
	docs := regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want the policy and its binding", len(docs))
	}
	var pol admissionv1.ValidatingAdmissionPolicy
	var bind admissionv1.ValidatingAdmissionPolicyBinding
	for i, obj := range []client.Object{&pol, &bind} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), obj); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
	restricted := newNamespace(t)
	var nsObj corev1.Namespace
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: restricted}, &nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["tether.dev/session-policy"] = "restricted"
	if err := k8s.Update(context.Background(), &nsObj); err != nil {
		t.Fatal(err)
	}
	open := newNamespace(t)

	n := 0
	try := func(ns string, mutate func(*tetherv1.AgenticSession)) error {
		n++
		s := newSession(ns, fmt.Sprintf("vap%d", n))
		s.Spec.Suspend = true
		mutate(s)
		return k8s.Create(context.Background(), s)
	}
	allowed := func(s *tetherv1.AgenticSession) { s.Spec.Agent.Image = "registry.example.com/agents/claude:1" }
	// The API server loads a new policy asynchronously.
	eventually(t, 20*time.Second, "policy in force", func() string {
		if err := try(restricted, func(*tetherv1.AgenticSession) {}); err == nil {
			return "a foreign image was admitted"
		} else if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.agent.image must come from registry.example.com/agents/") {
			return err.Error()
		}
		return ""
	})
	for name, mutate := range map[string]func(*tetherv1.AgenticSession){
		"service account": func(s *tetherv1.AgenticSession) { allowed(s); s.Spec.ServiceAccountName = "deployer" },
		"command":         func(s *tetherv1.AgenticSession) { allowed(s); s.Spec.Agent.Command = []string{"sh", "-c", "id"} },
	} {
		if err := try(restricted, mutate); err == nil || !strings.Contains(err.Error(), "is not allowed here") {
			t.Errorf("%s in a restricted namespace: %v; want denied", name, err)
		}
	}
	if err := try(restricted, allowed); err != nil {
		t.Errorf("a conforming session was denied: %v", err)
	}
	if err := try(open, func(s *tetherv1.AgenticSession) { s.Spec.ServiceAccountName = "deployer" }); err != nil {
		t.Errorf("the policy reached an unlabelled namespace: %v", err)
	}
}
