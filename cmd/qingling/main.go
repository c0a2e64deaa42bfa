// Command qingling runs the Qingling server and its client verbs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `qingling — hidden-hazard tracker, cleared to zero (清零)

usage: qingling <command> [flags]

  serve       run the server (embedded NATS by default)
  user        add, list, disable, enable, rotate users (the users file)
  version     print the version

Run "qingling <command> -h" for a command's flags.
`

// Exit codes that say what happened.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInvalid     = 3 // the input was refused (400, 413)
	exitNotFound    = 4
	exitConflict    = 5 // version or id conflict (409)
	exitRefused     = 6 // a lifecycle rule refused it (422)
	exitDenied      = 7 // not permitted (401, 403)
	exitUnreachable = 8 // the server could not be reached (queued in the outbox when --outbox is set)
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stdout, stderr)
	case "user":
		return userCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "qingling 0.1")
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "qingling: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
