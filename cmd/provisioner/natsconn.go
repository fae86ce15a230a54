package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/streams"
)

// NATSEnv says how to reach and authenticate to NATS, and how many copies
// JetStream keeps of what the provisioner creates. The worker and every
// operator's command read it alike. (Exported so that envconfig fills it
// when embedded.)
type NATSEnv struct {
	NATSURL      string `envconfig:"NATS_URL"`
	NATSListen   string `envconfig:"NATS_LISTEN" default:"127.0.0.1:4222"`
	NATSCreds    string `envconfig:"NATS_CREDS"`
	NATSCA       string `envconfig:"NATS_CA"`
	NATSCert     string `envconfig:"NATS_CERT"`
	NATSKey      string `envconfig:"NATS_KEY"`
	NATSUser     string `envconfig:"NATS_USER"`
	NATSPassword string `envconfig:"NATS_PASSWORD"`
	NATSReplicas int    `envconfig:"NATS_REPLICAS" default:"1"`
}

// check names the first variable that is wrong, as one line: files must be
// readable now, not at the first reconnect.
func (n *NATSEnv) check() error {
	bad := func(name, problem string) error { return usageError("provisioner: " + name + " " + problem) }
	switch {
	case n.NATSReplicas < 1 || n.NATSReplicas > streams.MaxReplicas:
		return bad("NATS_REPLICAS", fmt.Sprintf("must be 1 to %d (3 on a three-node cluster), got %d", streams.MaxReplicas, n.NATSReplicas))
	case (n.NATSCert == "") != (n.NATSKey == ""):
		return bad("NATS_CERT", "and NATS_KEY go together: a client certificate and its key, both or neither")
	case (n.NATSUser == "") != (n.NATSPassword == ""):
		return bad("NATS_USER", "and NATS_PASSWORD go together, both or neither")
	case n.NATSUser != "" && n.NATSCreds != "":
		return bad("NATS_USER", "and NATS_CREDS are two ways to authenticate: set one")
	}
	if n.NATSURL != "" {
		for _, u := range strings.Split(n.NATSURL, ",") {
			if p, err := url.Parse(strings.TrimSpace(u)); err != nil || p.Host == "" {
				return bad("NATS_URL", fmt.Sprintf("must be one or more URLs such as nats://host:4222 or tls://host:4222, separated by commas; %q is not", redactURL(u)))
			}
		}
	}
	for _, f := range []struct{ name, path string }{
		{"NATS_CREDS", n.NATSCreds}, {"NATS_CA", n.NATSCA}, {"NATS_CERT", n.NATSCert}, {"NATS_KEY", n.NATSKey},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return bad(f.name, fmt.Sprintf("names a file that cannot be read: %v", pathError(err)))
		}
		fh.Close()
	}
	if _, err := n.tlsConfig(); err != nil {
		return err
	}
	return nil
}

// pathError is err without the operating system's wrapping, naming the path.
func pathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", pe.Path, pe.Err)
	}
	return err.Error()
}

// tlsConfig is the TLS the variables ask for; nil when they ask for none
// (a tls:// URL alone still turns TLS on, with the system's CAs).
func (n *NATSEnv) tlsConfig() (*tls.Config, error) {
	if n.NATSCA == "" && n.NATSCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.NATSCA != "" {
		pem, err := os.ReadFile(n.NATSCA)
		if err != nil {
			return nil, usageError("provisioner: NATS_CA names a file that cannot be read: " + pathError(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError(fmt.Sprintf("provisioner: NATS_CA %s holds no PEM certificate", n.NATSCA))
		}
		cfg.RootCAs = pool
	}
	if n.NATSCert != "" {
		cert, err := tls.LoadX509KeyPair(n.NATSCert, n.NATSKey)
		if err != nil {
			// The error names the files and what is wrong, never the key's bytes.
			return nil, usageError(fmt.Sprintf("provisioner: NATS_CERT and NATS_KEY are not a certificate and its key: %v", err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// options are the connection options the variables ask for.
func (n *NATSEnv) options() ([]nats.Option, error) {
	var opts []nats.Option
	if n.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(n.NATSCreds))
	}
	if n.NATSUser != "" {
		opts = append(opts, nats.UserInfo(n.NATSUser, n.NATSPassword))
	}
	cfg, err := n.tlsConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// jetStream connects (see connect) and opens JetStream on the connection:
// what every command that talks to the workers' NATS starts with.
func (n *NATSEnv) jetStream(natsURL string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := n.connect(natsURL, extra...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("provisioner: %w", err)
	}
	return nc, js, nil
}

// connect connects as a long-running service: reconnecting for ever, unless
// extra options say otherwise (a one-shot command's).
func (n *NATSEnv) connect(natsURL string, extra ...nats.Option) (*nats.Conn, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	auth, err := n.options()
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name("provisioner"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	opts = append(append(opts, extra...), auth...)
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("provisioner: connecting to NATS at %s: %w", redactURLs(natsURL), scrubPassword(err, n.NATSPassword))
	}
	return nc, nil
}

// scrubPassword keeps the password out of an error text that might echo it.
func scrubPassword(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "xxxxx"))
}

// embeddedNATS starts a NATS server with JetStream whose data is kept in dir,
// listening on listen (host:port; port 0 picks a free one).
func embeddedNATS(dir, listen string) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, usageError(fmt.Sprintf("provisioner: NATS_LISTEN must be host:port, got %q", listen))
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, usageError(fmt.Sprintf("provisioner: NATS_LISTEN port must be a number, got %q", portText))
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "provisioner-embedded", JetStream: true, StoreDir: dir,
		Host: host, Port: port, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("provisioner: embedded NATS server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("provisioner: embedded NATS server did not start on %s (is the port taken?)", listen)
	}
	return ns, nil
}

// redactURLs hides passwords in a comma-separated list of NATS URLs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL hides a password in a NATS URL (nats://user:pass@host).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
