package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"provisioner/telemetry"
	"provisioner/worker"
)

// The deployment files cannot be run here (no Docker engine, no cluster), so
// this test holds them to the code: every variable they set is one the
// worker reads and docs/configuration.md's table lists, every port and probe path is the
// one the worker serves, and every metric a rule or panel names exists.

const deployDir = "../../deploy"

// configVars are the variables the worker reads: env's envconfig tags and the
// OpenTelemetry ones.
func configVars(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				walk(f.Type)
			} else if tag := f.Tag.Get("envconfig"); tag != "" {
				vars[tag] = true
			}
		}
	}
	walk(reflect.TypeOf(env{}))
	for _, v := range otelVariables() {
		vars[v] = true
	}
	return vars
}

// readmeVars are the variables in docs/configuration.md's table.
func readmeVars(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Variables\n")
	if !ok {
		t.Fatal("docs/configuration.md has no Variables section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\|").FindAllStringSubmatch(section, -1) {
		vars[m[1]] = true
	}
	return vars
}

func checkVar(t *testing.T, where, name string, code, readme map[string]bool) {
	t.Helper()
	if !code[name] {
		t.Errorf("%s sets %s, which the worker does not read", where, name)
	}
	if !readme[name] {
		t.Errorf("%s sets %s, which docs/configuration.md's table does not list", where, name)
	}
}

// defaultHTTPPort is the port of HTTP_ADDR's default.
func defaultHTTPPort(t *testing.T) string {
	t.Helper()
	f, _ := reflect.TypeOf(env{}).FieldByName("HTTPAddr")
	_, port, err := net.SplitHostPort(f.Tag.Get("default"))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestReadmeListsEveryVariable(t *testing.T) {
	code, readme := configVars(t), readmeVars(t)
	for v := range code {
		if !readme[v] {
			t.Errorf("docs/configuration.md's table lacks %s", v)
		}
	}
	for v := range readme {
		if !code[v] {
			t.Errorf("docs/configuration.md's table lists %s, which the worker does not read", v)
		}
	}
}

func TestComposeFileMatchesTheCode(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Build       *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(deployDir, "compose.yaml"), &compose)
	code, readme := configVars(t), readmeVars(t)
	worker, sim := compose.Services["worker"], compose.Services["sim"]
	if compose.Services["nats"].Image == "" || !strings.Contains(strings.Join(compose.Services["nats"].Command, " "), "-js") {
		t.Error("compose: the nats service must run nats-server with JetStream (-js)")
	}
	if b := sim.Build; b == nil || filepath.Join(deployDir, b.Context, b.Dockerfile) != filepath.Join(deployDir, "Dockerfile") {
		t.Errorf("compose: the sim service must build deploy/Dockerfile from the repository root: %+v", b)
	}
	if len(worker.Command) == 0 || worker.Command[0] != "run" || len(sim.Command) == 0 || sim.Command[0] != "sim" {
		t.Errorf("compose: worker runs %v, sim runs %v; want provisioner run and provisioner sim", worker.Command, sim.Command)
	}
	for name := range worker.Environment {
		checkVar(t, "compose.yaml", name, code, readme)
	}
	_, port, err := net.SplitHostPort(worker.Environment["HTTP_ADDR"])
	if err != nil {
		t.Fatalf("compose: HTTP_ADDR %q: %v", worker.Environment["HTTP_ADDR"], err)
	}
	if !slices.Contains(worker.Ports, port+":"+port) {
		t.Errorf("compose: the worker serves HTTP on %s but publishes %v", port, worker.Ports)
	}
	simAddr := flagValue(sim.Command, "-addr")
	_, simPort, _ := net.SplitHostPort(simAddr)
	for _, v := range []string{"DINGTALK_BASE_URL", "DINGTALK_API_BASE_URL"} {
		if want := "http://sim:" + simPort; worker.Environment[v] != want {
			t.Errorf("compose: %s = %q, want %q (the sim listens on %q)", v, worker.Environment[v], want, simAddr)
		}
	}
	if worker.Environment["DINGTALK_APP_KEY"] != flagValue(sim.Command, "-app-key") ||
		worker.Environment["DINGTALK_APP_SECRET"] != flagValue(sim.Command, "-app-secret") {
		t.Error("compose: the worker's app key and secret are not the ones the sim accepts")
	}
}

func TestDockerfileMatchesTheCode(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms int
	var user, expose, entrypoint string
	static := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		rest := strings.Join(fields[1:], " ")
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms++
		case "USER":
			user = rest
		case "EXPOSE":
			expose = rest
		case "ENTRYPOINT":
			entrypoint = rest
		case "RUN":
			static = static || (strings.Contains(rest, "CGO_ENABLED=0") && strings.Contains(rest, "./cmd/provisioner"))
		}
	}
	if froms < 2 {
		t.Errorf("Dockerfile: %d stages, want a multi-stage build", froms)
	}
	if !static {
		t.Error("Dockerfile: no static build (CGO_ENABLED=0 go build ./cmd/provisioner)")
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		t.Errorf("Dockerfile: USER %q, want a non-root user", user)
	}
	if expose != defaultHTTPPort(t) {
		t.Errorf("Dockerfile: EXPOSE %q, want HTTP_ADDR's default port %s", expose, defaultHTTPPort(t))
	}
	if !strings.Contains(entrypoint, "provisioner") {
		t.Errorf("Dockerfile: ENTRYPOINT %q does not run provisioner", entrypoint)
	}
	if !strings.Contains(string(data), "distroless/static") && !strings.Contains(string(data), "ca-certificates") {
		t.Error("Dockerfile: the final image must carry CA certificates (distroless/static, or ca-certificates copied)")
	}
}

// k8sObject is the part of a Kubernetes object the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`
}

func TestKubernetesManifestsMatchTheCode(t *testing.T) {
	objects := map[string]*k8sObject{}
	paths, _ := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			o := &k8sObject{}
			if err := dec.Decode(o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			objects[o.Kind] = o
		}
		f.Close()
	}
	for _, kind := range []string{"Deployment", "ConfigMap", "Secret", "PodDisruptionBudget", "ScaledObject"} {
		if _, ok := objects[kind]; !ok {
			t.Fatalf("deploy/kubernetes has no %s", kind)
		}
	}
	code, readme := configVars(t), readmeVars(t)
	cm, secret := objects["ConfigMap"], objects["Secret"]
	for name := range cm.Data {
		checkVar(t, "the ConfigMap", name, code, readme)
	}
	for name := range secret.StringData {
		checkVar(t, "the Secret", name, code, readme)
	}
	if _, ok := secret.StringData["DINGTALK_APP_SECRET"]; !ok {
		t.Error("the Secret does not hold DINGTALK_APP_SECRET")
	}
	if _, ok := cm.Data["DINGTALK_APP_SECRET"]; ok {
		t.Error("the ConfigMap holds the app secret")
	}
	_, port, err := net.SplitHostPort(cm.Data["HTTP_ADDR"])
	if err != nil {
		t.Fatalf("the ConfigMap's HTTP_ADDR %q: %v", cm.Data["HTTP_ADDR"], err)
	}

	var dep struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []struct {
					Args    []string `yaml:"args"`
					EnvFrom []struct {
						ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
						SecretRef    *struct{ Name string } `yaml:"secretRef"`
					} `yaml:"envFrom"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Liveness  probe `yaml:"livenessProbe"`
					Readiness probe `yaml:"readinessProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	if err := objects["Deployment"].Spec.Decode(&dep); err != nil {
		t.Fatal(err)
	}
	if len(dep.Template.Spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(dep.Template.Spec.Containers))
	}
	c := dep.Template.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Errorf("the container runs %v, want provisioner run", c.Args)
	}
	refs := map[string]bool{}
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			refs["ConfigMap "+e.ConfigMapRef.Name] = true
		}
		if e.SecretRef != nil {
			refs["Secret "+e.SecretRef.Name] = true
		}
	}
	if !refs["ConfigMap "+cm.Metadata.Name] || !refs["Secret "+secret.Metadata.Name] {
		t.Errorf("the container's envFrom %v does not take the ConfigMap %q and the Secret %q", refs, cm.Metadata.Name, secret.Metadata.Name)
	}
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(p.ContainerPort)
		if strconv.Itoa(p.ContainerPort) != port {
			t.Errorf("containerPort %d, but HTTP_ADDR listens on %s", p.ContainerPort, port)
		}
	}
	for _, pr := range []struct {
		what string
		p    probe
		path string
	}{{"liveness", c.Liveness, HealthPath}, {"readiness", c.Readiness, ReadyPath}} {
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe path %q, want %q", pr.what, pr.p.HTTPGet.Path, pr.path)
		}
		if got := portNames[pr.p.HTTPGet.Port]; got != port && pr.p.HTTPGet.Port != port {
			t.Errorf("%s probe port %q, want %s", pr.what, pr.p.HTTPGet.Port, port)
		}
	}
	if a := dep.Template.Metadata.Annotations; a["prometheus.io/path"] != MetricsPath || a["prometheus.io/port"] != port {
		t.Errorf("scrape annotations %v, want path %s on port %s", a, MetricsPath, port)
	}

	var pdb struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}
	if err := objects["PodDisruptionBudget"].Spec.Decode(&pdb); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pdb.Selector.MatchLabels, dep.Selector.MatchLabels) {
		t.Errorf("the PodDisruptionBudget selects %v, the Deployment's pods are %v", pdb.Selector.MatchLabels, dep.Selector.MatchLabels)
	}

	var so struct {
		ScaleTargetRef  struct{ Name string } `yaml:"scaleTargetRef"`
		MaxReplicaCount int                   `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `yaml:"type"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	}
	if err := objects["ScaledObject"].Spec.Decode(&so); err != nil {
		t.Fatal(err)
	}
	if so.ScaleTargetRef.Name != objects["Deployment"].Metadata.Name {
		t.Errorf("the ScaledObject scales %q, not the Deployment %q", so.ScaleTargetRef.Name, objects["Deployment"].Metadata.Name)
	}
	if so.MaxReplicaCount < 1 || so.MaxReplicaCount > 10 {
		t.Errorf("maxReplicaCount %d: cap it (the budget, not the replicas, sets throughput)", so.MaxReplicaCount)
	}
	d := worker.DefaultConfig()
	consumer, stream := d.Consumer, d.EventsStream
	if v, ok := cm.Data["CONSUMER"]; ok {
		consumer = v
	}
	if len(so.Triggers) != 1 || so.Triggers[0].Type != "nats-jetstream" ||
		so.Triggers[0].Metadata["consumer"] != consumer || so.Triggers[0].Metadata["stream"] != stream {
		t.Errorf("the ScaledObject's trigger %+v, want nats-jetstream on consumer %q of stream %q", so.Triggers, consumer, stream)
	}
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// knownMetrics are the series names the worker exposes (histograms by their
// _bucket, _sum and _count series).
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	tel, err := telemetry.New(telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.WatchStatus(telemetry.Sources{}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range tel.MetricNames() {
		names[n] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[n+s] = true
		}
	}
	return names
}

// metricsIn returns the metric names an expression selects.
func metricsIn(t *testing.T, p parser.Parser, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%q does not parse: %v", expr, err)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

func TestAlertRulesParseAndNameRealMetrics(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile(filepath.Join(deployDir, "prometheus", "alerts.yaml"), false, model.UTF8Validation, p, nil)
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil {
		t.FailNow()
	}
	known := knownMetrics(t)
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			for _, name := range metricsIn(t, p, r.Expr) {
				if !known[name] {
					t.Errorf("alert %s: %s is not a metric the worker exposes", r.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"ProvisionerQuotaAt80Percent", "ProvisionerPaused", "ProvisionerDeadLettersGrowing", "ProvisionerRateLimited", "ProvisionerLagRising"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestGrafanaDashboardNamesRealMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "provisioner-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	p := parser.NewParser(parser.Options{})
	known, used := knownMetrics(t), map[string]bool{}
	for _, panel := range dash.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, target := range panel.Targets {
			for _, name := range metricsIn(t, p, target.Expr) {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
				if !known[name] {
					t.Errorf("panel %q: %s is not a metric the worker exposes", panel.Title, name)
				}
			}
		}
	}
	for _, n := range []string{"provisioner_events_total", "provisioner_dingtalk_calls_total", "provisioner_quota_used_calls", "provisioner_consumer_pending_messages"} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
