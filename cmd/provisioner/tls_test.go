package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"provisioner/internal/natstest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The worker runs the end-to-end flow against a server that requires TLS
// from a test CA and a user whose permissions are exactly docs/operations.md's worker
// list; its plain producer can publish events and read neither the
// step records nor the results. The password is in no log line.
func TestTLSAndLeastPrivilege(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	const workerPW, producerPW = "w-0ne-l0ng-passw0rd", "p-an0ther-passw0rd"
	conf := filepath.Join(dir, "nats.conf")
	block := readmePermissions(t)
	text := "WORKER_PASSWORD: \"" + workerPW + "\"\nPRODUCER_PASSWORD: \"" + producerPW + "\"\n" +
		"tls {\n  cert_file: \"" + certFile + "\"\n  key_file: \"" + keyFile + "\"\n}\n" + block
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("docs/operations.md's authorization block does not load: %v", err)
	}
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	opts.JetStream, opts.StoreDir = true, filepath.Join(dir, "js")
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server with TLS not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := "tls://" + ns.Addr().String()

	dt := simFor(t, url, "very-secret-value")
	t.Setenv("NATS_CA", caFile)
	t.Setenv("NATS_USER", "worker")
	t.Setenv("NATS_PASSWORD", workerPW)
	t.Setenv("HTTP_ADDR", "")
	r := startRun(t)
	ctx := context.Background()

	connect := func(user, pw string) jetstream.JetStream {
		nc, err := nats.Connect(url, nats.RootCAs(caFile), nats.UserInfo(user, pw), nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return js
	}
	producer := connect("producer", producerPW)
	publishWhenReady(t, producer, "project.created", []byte(`{"id":"tls-1","project_id":"P","name":"TLS test","owner":"u1","members":["u2"]}`))
	deadline := time.Now().Add(30 * time.Second)
	watcher := connect("worker", workerPW)
	natstest.Eventually(t, time.Until(deadline), "a result stored over TLS", func() bool {
		s, err := watcher.Stream(ctx, "PROVISIONER_RESULTS")
		return err == nil && s.CachedInfo().State.Msgs > 0
	}, r.stderr.String)
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if _, err := producer.KeyValue(rctx, "provisioner_state"); err == nil {
		t.Error("the producer could open the step records")
	}
	if _, err := producer.Stream(rctx, "PROVISIONER_RESULTS"); err == nil {
		t.Error("the producer could read the results' stream")
	}
	r.stop(t)
	logs := r.stderr.String()
	if !strings.Contains(logs, `"message":"group provisioned"`) {
		t.Errorf("no group provisioned:\n%s", logs)
	}

	// Started again, the worker reads the step records the first run left
	// (the migration pass): the documented permissions let it pull them.
	// It follows DingTalk's events too: a member who quits by hand gives a
	// group.changed under the same permissions.
	t.Setenv("DINGTALK_EVENTS", "stream")
	r2 := startRun(t)
	natstest.Eventually(t, 30*time.Second, "the second run's migration pass", func() bool {
		return strings.Contains(r2.stderr.String(), "step records of releases before project records") // done, or failed
	}, r2.stderr.String)
	natstest.Eventually(t, 30*time.Second, "a Stream-mode connection", func() bool { return dt.StreamStats().Connections == 1 }, r2.stderr.String)
	if g := dt.Groups(); len(g) != 1 || !dt.QuitByHand(g[0].ChatID, "u2") {
		t.Fatalf("groups %+v: want one, that u2 can quit", g)
	}
	natstest.Eventually(t, 30*time.Second, "a group.changed stored over TLS", func() bool {
		s, err := watcher.Stream(ctx, "PROVISIONER_RESULTS")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("group.changed"))
		return err == nil && len(info.State.Subjects) == 1
	}, r2.stderr.String)
	r2.stop(t)
	if l := r2.stderr.String(); !strings.Contains(l, `"projects":0,"time"`) || strings.Contains(l, "trying again") {
		t.Errorf("the migration pass did not read the step records under the documented permissions:\n%s", l)
	}
	for _, secret := range []string{workerPW, "very-secret-value"} {
		if strings.Contains(logs, secret) || strings.Contains(r.stdout.String(), secret) {
			t.Errorf("a secret is in the output: %q", secret)
		}
	}
}

// readmePermissions is the nats-server authorization block docs/operations.md gives.
func readmePermissions(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, "<!-- nats-permissions:begin -->"), strings.Index(s, "<!-- nats-permissions:end -->")
	if i < 0 || j < i {
		t.Fatal("docs/operations.md has no nats-permissions block")
	}
	block := s[i:j]
	block = block[strings.Index(block, "```")+3:]
	return block[:strings.LastIndex(block, "```")]
}

// writeTestPKI writes a CA and a server certificate for 127.0.0.1, signed by it.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "provisioner test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	ca, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}
