package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// BenchmarkBatch10000Rows measures provisioner batch from start to the last
// event stored, for a 10,000-row CSV, with no worker (so -wait ends it once
// everything is published): reading and checking the file, reading the
// results and events streams, publishing, writing the CSV. Each iteration is
// a new season, published into the same streams.
//
//	go test ./cmd/provisioner -run '^$' -bench Batch10000 -benchtime 3x
func BenchmarkBatch10000Rows(b *testing.B) {
	ns := natstest.Server(b)
	js, _ := jetstream.New(natstest.Connect(b, ns))
	ctx := context.Background()
	for name, subjects := range map[string][]string{"EVENTS": {"project.created", "event.scheduled"}, "RESULTS": {"group.provisioned", "group.failed"}} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv("NATS_URL", ns.ClientURL())
	const rows = 10000
	dir := b.TempDir()
	var published int
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		var text strings.Builder
		text.WriteString("id,name,owner,members,project_id\n")
		for r := range rows {
			fmt.Fprintf(&text, "s%d-%d,Project %d,u1,u2;u3;u%d,P-%d\n", i, r, r, 4+r%40, r)
		}
		file := filepath.Join(dir, fmt.Sprintf("season-%d.csv", i))
		if err := os.WriteFile(file, []byte(text.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		err := (&Main{Stdout: &natstest.LogBuffer{}, Stderr: &natstest.LogBuffer{}}).Run(ctx, []string{"batch", "-f", file, "-wait", "1ms"})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d of %d rows have no result yet", rows, rows)) {
			b.Fatalf("batch: %v", err)
		}
		published += rows
	}
	b.StopTimer()
	st, _ := js.Stream(ctx, "EVENTS")
	if info, _ := st.Info(ctx); info.State.Msgs != uint64(published) {
		b.Fatalf("%d events stored, want %d", info.State.Msgs, published)
	}
	b.ReportMetric(float64(published)/b.Elapsed().Seconds(), "rows/s")
}
