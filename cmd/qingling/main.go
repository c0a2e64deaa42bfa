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
  bench       measure every path against raw JetStream (--events N --clients 1,16,64,128 --json --store DIR)
  version     print the version

client verbs (--server URL or --nats URL, --actor NAME or --token, --json, --outbox DIR):
  report      report a finding 上报隐患 (--photo FILE uploads evidence first)
  amend grade list plan progress extend complete reject clear reopen withdraw <id>
              one verb per action (list <id> --level … is 挂牌督办)
  show <id>   a hazard's state and details
  history <id>  its events, occurred_at and recorded_at apart
  list        hazards by filter (--sector --region --status --overdue … --all)
  sync        send the offline outbox (--outbox DIR) in order
  status      the zero-out status table 清零状态 (prefecture × sector; --sector, --region, --as-of, --from/--to)
  watch       live status changes 实时变化 (--sector, --region), resuming after a break
  rebuild     rebuild the read model from the log (server stopped, or --nats), with progress

audit (--nats URL --user AUDITOR --nkey FILE, or --data DIR of a stopped server):
  verify      prove the log untampered 校验: chains, gaps, hashes, signatures, checkpoints,
              lifecycle (--checkpoints FILE --keys FILE --sector --region --from --to); exit 9 on a problem
  replay      events as JSON lines 回放 (--sector --region --hazard --from --to --out FILE)
  checkpoint export  the signed checkpoints for auditors to keep (--out FILE --keys FILE)
  export ledger|quarterly  隐患台账 / 季度统计表 as CSV or XLSX (--quarter 2025Q1 | --from --to, --out FILE)

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
	case "report", "amend", "grade", "list", "plan", "progress", "extend", "complete", "reject", "clear", "reopen", "withdraw", "show", "history", "sync":
		return clientCmd(ctx, args[0], args[1:], stdout, stderr)
	case "status":
		return statusCmd(ctx, args[1:], stdout, stderr)
	case "watch":
		return watchCmd(ctx, args[1:], stdout, stderr)
	case "rebuild":
		return rebuildCmd(ctx, args[1:], stdout, stderr)
	case "verify":
		return verifyCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		return replayCmd(ctx, args[1:], stdout, stderr)
	case "checkpoint":
		return checkpointCmd(ctx, args[1:], stdout, stderr)
	case "export":
		return exportCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], stdout, stderr)
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
