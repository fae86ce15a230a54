package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is three nats-servers with JetStream, clustered on loopback, each
// with a store of its own. Any one can be stopped; the others keep the
// cluster's quorum.
type Cluster struct {
	tb      testing.TB
	mu      sync.Mutex
	servers []*server.Server // nil once stopped
}

// NewCluster starts three clustered servers and waits until JetStream has a
// meta leader that every server follows. They shut down when tb ends.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	Long(tb)
	const size = 3
	ports := freePorts(tb, size)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &Cluster{tb: tb}
	for i := range size {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), JetStream: true, StoreDir: tb.TempDir(),
			Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			tb.Fatalf("natstest: server %d: %v", i+1, err)
		}
		go ns.Start()
		c.servers = append(c.servers, ns)
	}
	tb.Cleanup(func() {
		for i := range size {
			c.Stop(i)
		}
	})
	for _, ns := range c.servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			tb.Fatal("natstest: a cluster node was not ready after 10s")
		}
	}
	c.waitForMetaLeader()
	return c
}

// waitForMetaLeader waits until one live server leads JetStream's meta group
// and every live server is current with it.
func (c *Cluster) waitForMetaLeader() {
	c.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		leader, current := false, true
		for _, ns := range c.live() {
			leader = leader || ns.JetStreamIsLeader()
			current = current && ns.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.tb.Fatal("natstest: the cluster elected no JetStream meta leader within 30s")
}

func (c *Cluster) live() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, ns := range c.servers {
		if ns != nil {
			out = append(out, ns)
		}
	}
	return out
}

// URLs is every node's client URL, comma-separated, as NATS_URL takes them.
func (c *Cluster) URLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var urls []string
	for _, ns := range c.servers {
		if ns != nil {
			urls = append(urls, ns.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// Server is node i (0 to 2), nil once stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Index is the node whose server name is name, or -1.
func (c *Cluster) Index(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ns := range c.servers {
		if ns != nil && ns.Name() == name {
			return i
		}
	}
	return -1
}

// Stop shuts node i down for good, as a lost machine would be.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	ns := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// Connect opens a connection to every live node, reconnecting for ever,
// closed when tb ends.
func (c *Cluster) Connect(tb testing.TB, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(c.URLs(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// freePorts finds n free loopback ports for the cluster's routes.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("natstest: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
