// Command provisioner turns business events on NATS into DingTalk group chats.
//
//	provisioner run    the worker (configured from the environment)
//	provisioner sim    the DingTalk simulator as a server
//	provisioner demo   NATS, the simulator and the worker in one process, with sample events
//	provisioner load   publish synthetic events and measure how fast results arrive
//	provisioner pause  stop every worker taking events; resume starts them again
//	provisioner budget the month's DingTalk calls against the quota, and any pause
//	provisioner dlq    list dead letters, or replay them
//	provisioner inspect an event's step record, in words
//	provisioner batch  publish a file of rows as events and write a CSV of their results
//	provisioner reconcile  find what people changed in DingTalk unreported, and follow it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		log := zerolog.New(os.Stderr).With().Timestamp().Str("service", "provisioner").Logger()
		sig := <-signals
		log.Info().Str("signal", sig.String()).Msg("shutting down gracefully; a second signal stops at once")
		cancel()
		sig = <-signals
		log.Warn().Str("signal", sig.String()).Msg("second signal: stopping at once; a worker's unfinished events are redelivered after ACK_WAIT, a batch writes no results file")
		os.Exit(1)
	}()

	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr}
	if err := m.Run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// Main dispatches to the subcommands. Its fields are the process's outside
// world, so tests can run it in-process.
type Main struct {
	Stdout, Stderr io.Writer
}

// Run runs the subcommand named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	var cmd string
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return (&RunCommand{main: m}).Run(ctx, args)
	case "sim":
		return (&SimCommand{main: m}).Run(ctx, args)
	case "demo":
		return (&DemoCommand{main: m}).Run(ctx, args)
	case "load":
		return (&LoadCommand{main: m}).Run(ctx, args)
	case "pause":
		return (&PauseCommand{main: m}).Run(ctx, args)
	case "resume":
		return (&ResumeCommand{main: m}).Run(ctx, args)
	case "budget":
		return (&BudgetCommand{main: m}).Run(ctx, args)
	case "dlq":
		return (&DLQCommand{main: m}).Run(ctx, args)
	case "reconcile":
		return (&ReconcileCommand{main: m}).Run(ctx, args)
	case "inspect":
		return (&InspectCommand{main: m}).Run(ctx, args)
	case "batch":
		return (&BatchCommand{main: m}).Run(ctx, args)
	case "", "help", "-h", "-help", "--help":
		m.usage()
		if cmd == "" {
			return flag.ErrHelp
		}
		return nil
	default:
		return usageError(fmt.Sprintf("provisioner: unknown command %q (try: provisioner help)", cmd))
	}
}

func (m *Main) usage() {
	fmt.Fprint(m.Stdout, `provisioner turns business events on NATS into DingTalk group chats.

Usage:

	provisioner <command> [arguments]

The commands are:

	run     work events: the provisioning worker, configured from the environment
	sim     serve the DingTalk simulator, with fault injection
	demo    run NATS, the simulator and the worker in one process and provision sample groups
	load    publish synthetic events to NATS_URL and report how fast their results arrive
	pause   stop every worker taking events, until a time or until resume
	resume  end a pause (an operator's or the monthly quota's)
	budget  show the month's DingTalk calls against the quota, and whether work is paused
	dlq     list the dead letters, or replay them (dlq list, dlq replay)
	inspect print an event's step record in words
	batch   publish a CSV or JSONL file of rows as events, and write a CSV of invite links
	reconcile  read the open groups, report what people changed in DingTalk unreported, and follow it

Use "provisioner <command> -h" for more about a command.
`)
}

// usageError is a mistake in how the command was called or configured: exit 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
