package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

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

// connectNATS connects as a long-running service: reconnecting for ever,
// unless extra options say otherwise (a one-shot command's).
func connectNATS(natsURL, creds string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("provisioner"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	opts = append(opts, extra...)
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("provisioner: connecting to NATS at %s: %w", redactURL(natsURL), err)
	}
	return nc, nil
}

// redactURL hides a password in a NATS URL (nats://user:pass@host).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
