// Package helm_test renders the chart with Helm (go tool helm, pinned in
// go.mod) and checks every document as the API server would decode it,
// plus rules of our own that no schema can express.
package helm_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const chart = "onechat"

// helm runs the Helm binary pinned in go.mod.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// release is one rendering of the chart, decoded.
type release struct {
	sts        *appsv1.StatefulSet
	services   map[string]*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	ingress    *networkingv1.Ingress
	monitor    *serviceMonitor
	testPods   []*corev1.Pod
}

// serviceMonitor is the part of the Prometheus operator's type the chart
// renders; decoding into it strictly catches misspelt fields.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func render(t *testing.T, args ...string) *release {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chart, "--namespace", "chat"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &release{services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := reader.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		// Duplicate keys are an error here; sigs.k8s.io/yaml keeps the last.
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			t.Fatalf("document is not valid YAML: %v\n%s", err, doc)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(js, &tm); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/StatefulSet":
			r.sts = &appsv1.StatefulSet{}
			obj = r.sts
		case "v1/Service":
			s := &corev1.Service{}
			obj, r.services[name(t, js)] = s, s
		case "v1/ConfigMap":
			c := &corev1.ConfigMap{}
			obj, r.configMaps[name(t, js)] = c, c
		case "v1/Secret":
			s := &corev1.Secret{}
			obj, r.secrets[name(t, js)] = s, s
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1/Pod":
			p := &corev1.Pod{}
			obj, r.testPods = p, append(r.testPods, p)
		case "policy/v1/PodDisruptionBudget":
			r.pdb = &policyv1.PodDisruptionBudget{}
			obj = r.pdb
		case "networking.k8s.io/v1/Ingress":
			r.ingress = &networkingv1.Ingress{}
			obj = r.ingress
		case "monitoring.coreos.com/v1/ServiceMonitor":
			r.monitor = &serviceMonitor{}
			obj = r.monitor
		default:
			t.Fatalf("unexpected kind %s/%s", tm.APIVersion, tm.Kind)
		}
		// The API server's decoder: case-sensitive, unknown fields and
		// wrong types are errors, quantities are parsed.
		strict, err := kjson.UnmarshalStrict(js, obj)
		if err != nil {
			t.Fatalf("%s %s: %v", tm.Kind, name(t, js), err)
		}
		if len(strict) > 0 {
			t.Fatalf("%s %s: %v", tm.Kind, name(t, js), strict)
		}
	}
	if r.sts == nil {
		t.Fatal("no StatefulSet rendered")
	}
	return r
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range strings.SplitSeq(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

func name(t *testing.T, js []byte) string {
	var m struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := yaml.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m.Metadata.Name
}

// nodeConfig is the onechat.yaml the chart renders, as onechat reads it.
type nodeConfig struct {
	Routes       []string `json:"routes"`
	Cluster      string   `json:"cluster"`
	Admin        string   `json:"admin"`
	DrainTimeout string   `json:"drain-timeout"`
	HTTP         string   `json:"http"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// check applies our own rules to a rendering with the given node count.
func (r *release) check(t *testing.T, replicas int) {
	t.Helper()
	sts := r.sts
	pod := sts.Spec.Template
	c := pod.Spec.Containers[0]

	if *sts.Spec.Replicas != int32(replicas) {
		t.Errorf("replicas %d, want %d", *sts.Spec.Replicas, replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel", sts.Spec.PodManagementPolicy)
	}
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("selector %v does not match pod labels %v", sts.Spec.Selector, pod.Labels)
	}

	headless := r.services[sts.Spec.ServiceName]
	if headless == nil || headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q is not a headless service publishing not-ready addresses", sts.Spec.ServiceName)
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		if len(p.Name) > 15 || !dnsLabel.MatchString(p.Name) {
			t.Errorf("port name %q is not an IANA service name", p.Name)
		}
		ports[p.Name] = p.ContainerPort
	}
	for probeName, p := range map[string]*corev1.Probe{
		"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe,
	} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", probeName)
			continue
		}
		if _, ok := ports[p.HTTPGet.Port.StrVal]; !ok {
			t.Errorf("%s probe port %q is not a container port", probeName, p.HTTPGet.Port.String())
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe on %s, want /readyz", c.ReadinessProbe.HTTPGet.Path)
	}
	for _, svc := range r.services {
		if !subset(pod.Labels, svc.Spec.Selector) {
			t.Errorf("service %s selects %v, not the pods", svc.Name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := ports[p.TargetPort.StrVal]; !ok {
				t.Errorf("service %s port %s targets %q, not a container port", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}

	var cfg nodeConfig
	cm := r.configMaps[sts.Name]
	if cm == nil {
		t.Fatal("no ConfigMap named after the StatefulSet")
	}
	if err := yaml.Unmarshal([]byte(cm.Data["onechat.yaml"]), &cfg); err != nil {
		t.Fatalf("onechat.yaml: %v", err)
	}
	if replicas == 1 {
		if cfg.Cluster != "" || len(cfg.Routes) != 0 {
			t.Errorf("a single node with cluster %q and routes %v", cfg.Cluster, cfg.Routes)
		}
	} else {
		if len(cfg.Routes) != replicas {
			t.Errorf("%d routes for %d nodes: %v", len(cfg.Routes), replicas, cfg.Routes)
		}
		for i, route := range cfg.Routes {
			want := fmt.Sprintf("nats://%s-%d.%s.chat.svc.cluster.local:%d",
				sts.Name, i, headless.Name, ports["routes"])
			if route != want {
				t.Errorf("route %d is %s, want %s", i, route, want)
			}
		}
	}

	drain, err := time.ParseDuration(cfg.DrainTimeout)
	if err != nil {
		t.Fatalf("drain-timeout %q: %v", cfg.DrainTimeout, err)
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= drain+10*time.Second {
		t.Errorf("termination grace %v is not longer than drain %v plus 10 s", grace, drain)
	}
	pre := c.Lifecycle.PreStop
	if pre == nil || pre.Exec == nil || !slices.Contains(pre.Exec.Command, "drain") ||
		!slices.Contains(pre.Exec.Command, cfg.Admin) {
		t.Errorf("preStop %+v does not drain through the admin address %s", pre, cfg.Admin)
	}

	if replicas > 1 {
		if r.pdb == nil || r.pdb.Spec.MaxUnavailable == nil || r.pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget %+v, want maxUnavailable 1", r.pdb)
		} else if !subset(pod.Labels, r.pdb.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selects %v, not the pods", r.pdb.Spec.Selector.MatchLabels)
		}
	} else if r.pdb != nil {
		t.Error("a PodDisruptionBudget for a single node blocks every drain of its host")
	}

	// Nothing sensitive in values: secrets reach the pod by reference.
	for _, e := range c.Env {
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "PASSWORD") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("%s is not taken from a Secret", e.Name)
			}
		}
	}
	var keys map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["onechat.yaml"]), &keys); err != nil {
		t.Fatal(err)
	}
	flags := onechatFlags(t)
	for k := range keys {
		if !flags[k] {
			t.Errorf("onechat.yaml sets %q, which is not an onechat flag", k)
		}
	}
	if len(r.testPods) != 1 {
		t.Errorf("%d helm test pods, want 1", len(r.testPods))
	}
}

var (
	flagsOnce sync.Once
	flagSet   map[string]bool
	flagsErr  error
)

// onechatFlags lists the flags in onechat --help, which the config file
// must stick to: onechat refuses unknown settings at start.
func onechatFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		out, _ := exec.Command("go", "run", "../cmd/onechat", "--help").CombinedOutput()
		flagSet = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+) \(`).FindAllStringSubmatch(string(out), -1) {
			flagSet[m[1]] = true
		}
		if len(flagSet) < 10 {
			flagsErr = fmt.Errorf("onechat --help listed %d flags:\n%s", len(flagSet), out)
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagSet
}

// subset reports whether l contains every pair of a non-empty sub.
func subset(l, sub map[string]string) bool {
	for k, v := range sub {
		if l[k] != v {
			return false
		}
	}
	return len(sub) > 0
}

// Every setting the schema lets users put in config is an onechat flag,
// and long release names stay within Kubernetes' limits without two
// objects sharing a name.
func TestChartConfigKeysAndNames(t *testing.T) {
	raw, err := os.ReadFile("onechat/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	flags := onechatFlags(t)
	if len(schema.Properties.Config.Properties) == 0 {
		t.Fatal("the schema lists no config settings")
	}
	for k := range schema.Properties.Config.Properties {
		if !flags[k] {
			t.Errorf("values.schema.json allows config.%s, which is not an onechat flag", k)
		}
	}
	long := "a-very-long-release-name-for-onechat-chat-service-prod-eu-west-1"
	r := render(t, "--set", "fullnameOverride="+long)
	if len(r.sts.Name) > 52 {
		t.Errorf("StatefulSet name %q is longer than 52", r.sts.Name)
	}
	if len(r.services) != 2 {
		t.Errorf("services %v: two share a name", maps.Keys(r.services))
	}
	for name := range r.services {
		if len(name) > 63 {
			t.Errorf("service name %q is longer than 63", name)
		}
	}
}

func TestChartRenders(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		replicas int
		more     func(*testing.T, *release)
	}{
		{"defaults", nil, 3, func(t *testing.T, r *release) {
			if len(r.secrets) != 1 || r.monitor != nil || r.ingress != nil {
				t.Errorf("secrets %d, monitor %v, ingress %v", len(r.secrets), r.monitor, r.ingress)
			}
			if r.sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "10Gi" {
				t.Error("no 10Gi volume per pod")
			}
		}},
		{"single node", []string{"-f", "onechat/ci/single-node-values.yaml"}, 1, func(t *testing.T, r *release) {
			if len(r.sts.Spec.VolumeClaimTemplates) != 0 {
				t.Error("persistence off but a volume claim template rendered")
			}
		}},
		{"three nodes with TLS", []string{"-f", "onechat/ci/tls-values.yaml"}, 3, func(t *testing.T, r *release) {
			if len(r.secrets) != 0 {
				t.Error("a Secret rendered although every secret is an existing one")
			}
			cfg := r.configMaps[r.sts.Name].Data["onechat.yaml"]
			for _, want := range []string{
				"cluster-tls-ca: /etc/onechat/tls/routes/ca.crt", "nats-tls-ca:", "nats: \"0.0.0.0:",
			} {
				if !strings.Contains(cfg, want) {
					t.Errorf("onechat.yaml lacks %q:\n%s", want, cfg)
				}
			}
			if _, ok := r.services[r.sts.Name]; !ok {
				t.Fatal("no client service")
			}
		}},
		{"metrics and ingress", []string{"-f", "onechat/ci/metrics-values.yaml"}, 5,
			func(t *testing.T, r *release) {
				if r.monitor == nil || r.monitor.Spec.Endpoints[0].Path != "/metrics" || r.ingress == nil {
					t.Fatalf("monitor %+v ingress %v", r.monitor, r.ingress)
				}
				if q := r.sts.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(); q != "2Gi" {
					t.Errorf("memory limit %s", q)
				}
			}},
		{"seven nodes, own service account",
			[]string{"--set", "replicas=7", "--set", "serviceAccount.create=true"}, 7,
			func(t *testing.T, r *release) {
				if r.sts.Spec.Template.Spec.ServiceAccountName != r.sts.Name {
					t.Errorf("service account %q", r.sts.Spec.Template.Spec.ServiceAccountName)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			r.check(t, tc.replicas)
			if tc.more != nil {
				tc.more(t, r)
			}
		})
	}
}

// Values that would make a broken or unsafe release are refused at
// render time with a message saying why.
func TestChartRefuses(t *testing.T) {
	for args, want := range map[string]string{ // a comma separates settings, as in --set
		"replicas=2":                  "not a safe cluster",
		"replicas=three":              "replicas",
		"drainTimeout=60s":            "terminationGracePeriodSeconds",
		"persistence.size=10GB":       "persistence/size",
		"tls.routes.enabled=true":     "secretName",
		"config.routes=nats://x:6222": "config",
		"replica=3":                   "additional properties",
		"config.retenton=1h":          "additional properties",
		"streamReplicas=2":            "streamReplicas",
		"replicas=1,streamReplicas=3": "streamReplicas above 1",
		"streamReplicas=5":            "cannot exceed",
		"metrics.enabled=false,metrics.serviceMonitor.enabled=true": "needs metrics.enabled",
	} {
		_, err := helm(t, "template", "rel", chart, "--set", args)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want an error mentioning %q", args, err, want)
		}
	}
}

// helm lint --strict passes for the defaults and every file in ci/.
func TestChartLints(t *testing.T) {
	files := []string{""}
	for _, f := range []string{"single-node", "tls", "metrics"} {
		files = append(files, "onechat/ci/"+f+"-values.yaml")
	}
	for _, f := range files {
		args := []string{"lint", "--strict", chart}
		if f != "" {
			args = append(args, "-f", f)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}
