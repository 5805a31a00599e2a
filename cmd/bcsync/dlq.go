package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type dlqFilterFlags struct {
	sub, typ, class, since, until, text string
}

func (ff *dlqFilterFlags) flags(f *pflag.FlagSet) {
	f.StringVar(&ff.sub, "subscription", "", "only letters of this subscription")
	f.StringVar(&ff.typ, "type", "", "only letters of this job type (_unknown: the types this version does not know)")
	f.StringVar(&ff.class, "class", "", "only letters of this error class (permanent, transient, ...)")
	f.StringVar(&ff.since, "since", "", "only letters stored at or after: RFC 3339 time, or a duration ago (24h)")
	f.StringVar(&ff.until, "until", "", "only letters stored at or before: RFC 3339 time, or a duration ago (1h)")
	f.StringVar(&ff.text, "text", "", "only letters whose reason, key, job id or subject contains this (any case)")
}

func (ff *dlqFilterFlags) set() bool {
	return ff.sub != "" || ff.typ != "" || ff.class != "" || ff.since != "" || ff.until != "" || ff.text != ""
}

func (ff *dlqFilterFlags) filter(now time.Time) (dlq.Filter, error) {
	f := dlq.Filter{Subscription: ff.sub, Type: messages.Type(ff.typ), Class: ff.class, Text: ff.text}
	var err error
	if f.Since, err = parseWhen("--since", ff.since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen("--until", ff.until, now); err != nil {
		return f, err
	}
	return f, nil
}

// parseWhen reads an RFC 3339 time or a duration meaning "that long ago".
func parseWhen(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: use an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h)", flag, v)
}

func newDLQCmd(_ *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters (stream " + messages.StreamDLQ + ")",
		Args:  subcommandArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(newDLQListCmd(), newDLQShowCmd(), newDLQActCmd("replay"), newDLQActCmd("purge"))
	return cmd
}

// letterJSON is what list --json prints per letter.
type letterJSON struct {
	Seq    uint64               `json:"seq"`
	Stored time.Time            `json:"stored"`
	Letter *messages.DeadLetter `json:"letter"`
}

func newDLQListCmd() *cobra.Command {
	var (
		conn   natsConn
		ff     dlqFilterFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List dead letters, without consuming them",
		Example: "  bcsync dlq list --subscription contoso --class permanent --since 24h\n  bcsync dlq list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			b, err := conn.connect(cmd.Context(), "bcsync-dlq")
			if err != nil {
				return err
			}
			defer b.Close()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "SEQ\tSTORED\tSUBSCRIPTION\tTYPE\tKEY\tCLASS\tATTEMPTS\tREASON")
			}
			n := 0
			err = dlq.List(cmd.Context(), b.JS, f, func(l dlq.Letter) error {
				n++
				if asJSON {
					return enc.Encode(letterJSON{Seq: l.Seq, Stored: l.Stored.UTC(), Letter: l.DL})
				}
				d := l.DL
				_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Seq, l.Stored.UTC().Format(time.RFC3339), d.Subscription, d.Type, truncateText(d.Key, 40), d.ErrorClass, d.Attempts, truncateText(d.Reason, 80))
				return err
			})
			if !asJSON {
				_ = tw.Flush()
			}
			var ue *dlq.UndecodableError
			if errors.As(err, &ue) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", ue)
				err = nil
			}
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d dead letter(s)\n", n)
			}
			return nil
		},
	}
	conn.flags(cmd.Flags())
	ff.flags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per letter, with the whole record")
	return cmd
}

func truncateText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func newDLQShowCmd() *cobra.Command {
	var conn natsConn
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one dead letter whole: record, original headers and body",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			b, err := conn.connect(cmd.Context(), "bcsync-dlq")
			if err != nil {
				return err
			}
			defer b.Close()
			l, err := dlq.Get(cmd.Context(), b.JS, seq)
			if err != nil {
				return err
			}
			printLetter(cmd.OutOrStdout(), l)
			return nil
		},
	}
	conn.flags(cmd.Flags())
	return cmd
}

func printLetter(w io.Writer, l dlq.Letter) {
	d := l.DL
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("seq", l.Seq)
	row("stored", l.Stored.UTC().Format(time.RFC3339Nano))
	row("subscription", d.Subscription)
	row("type", d.Type)
	row("key", d.Key)
	row("job id", d.JobID)
	row("error class", d.ErrorClass)
	row("reason", d.Reason)
	row("attempts", d.Attempts)
	row("first failure", d.FirstFailure.UTC().Format(time.RFC3339Nano))
	row("last failure", d.LastFailure.UTC().Format(time.RFC3339Nano))
	row("worker", d.WorkerID)
	row("subject", d.Subject)
	row("original", fmt.Sprintf("%s seq %d", d.Stream, d.StreamSeq))
	_ = tw.Flush()
	fmt.Fprintln(w, "headers:")
	names := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range d.Headers[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
	fmt.Fprintln(w, "body:")
	var buf bytes.Buffer
	if json.Indent(&buf, d.Body, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", buf.String())
	} else {
		fmt.Fprintf(w, "  %q\n", d.Body)
	}
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("sequence %q: want a positive number (see bcsync dlq list)", s)
	}
	return seq, nil
}

// newDLQActCmd builds replay or purge: both act on explicit sequences or on
// every letter matching the filters.
func newDLQActCmd(verb string) *cobra.Command {
	var (
		conn     natsConn
		ff       dlqFilterFlags
		dryRun   bool
		progress bool
		yes      bool
	)
	past := map[string]string{"replay": "replayed", "purge": "purged"}[verb]
	short := "Republish dead letters' original jobs to " + messages.StreamJobs + ", then delete the letters"
	if verb == "purge" {
		short = "Delete dead letters for good"
	}
	cmd := &cobra.Command{
		Use:     verb + " [SEQ...]",
		Short:   short,
		Example: fmt.Sprintf("  bcsync dlq %s 12 13\n  bcsync dlq %s --subscription contoso --class transient --since 2h --dry-run", verb, verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && ff.set() {
				return errors.New("give either sequences or filters, not both")
			}
			var seqs []uint64
			for _, a := range args {
				s, err := parseSeq(a)
				if err != nil {
					return err
				}
				if !slices.Contains(seqs, s) { // once each: "12 12" is one letter
					seqs = append(seqs, s)
				}
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			b, err := conn.connect(cmd.Context(), "bcsync-dlq")
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, out, errw := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()

			var letters []dlq.Letter
			failed := 0
			if len(seqs) > 0 {
				for _, s := range seqs {
					l, err := dlq.Get(ctx, b.JS, s)
					var ue *dlq.UndecodableError
					if verb == "purge" && errors.As(err, &ue) {
						// Not a dead letter (another publisher's record):
						// nothing to show, but it can go by its sequence.
						l, err = dlq.Letter{Seq: s, DL: &messages.DeadLetter{Reason: "not a dead letter record"}}, nil
					}
					if err != nil {
						fmt.Fprintf(errw, "seq %d: %v\n", s, err)
						failed++
						continue
					}
					letters = append(letters, l)
				}
			} else {
				err := dlq.List(ctx, b.JS, f, func(l dlq.Letter) error {
					letters = append(letters, l)
					return nil
				})
				var ue *dlq.UndecodableError
				if errors.As(err, &ue) {
					fmt.Fprintf(errw, "warning: %v\n", ue)
				} else if err != nil {
					return err
				}
			}
			if dryRun {
				for _, l := range letters {
					if verb == "replay" {
						fmt.Fprintf(out, "would replay seq %d to %s (%s %s %s)\n", l.Seq, l.DL.Subject, l.DL.Subscription, l.DL.Type, l.DL.Key)
					} else {
						fmt.Fprintf(out, "would purge seq %d (%s %s %s: %s)\n", l.Seq, l.DL.Subscription, l.DL.Type, l.DL.Key, truncateText(l.DL.Reason, 60))
					}
				}
				fmt.Fprintf(out, "dry run: would have %s %d, %d not found; nothing changed\n", past, len(letters), failed)
				if failed > 0 {
					return fmt.Errorf("%d letter(s) not found", failed)
				}
				return nil
			}
			if verb == "purge" && len(letters) > 0 && !yes {
				fmt.Fprintf(errw, "purge %d dead letter(s) for good? type yes: ", len(letters))
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					return errors.New("not confirmed: nothing purged (use --yes to skip the question)")
				}
			}
			act := dlq.Replay
			if verb == "purge" {
				act = dlq.Purge
			}
			var bar *progressbar.ProgressBar
			if progress && len(letters) > 1 {
				bar = progressbar.NewOptions(len(letters), progressbar.OptionSetWriter(errw), progressbar.OptionSetDescription(verb),
					progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			done, processed := 0, 0
			for _, l := range letters {
				if err := ctx.Err(); err != nil {
					break
				}
				processed++
				if err := act(ctx, b.JS, l); err != nil {
					if bar != nil {
						_ = bar.Clear()
					}
					fmt.Fprintf(errw, "seq %d: %v\n", l.Seq, err)
					failed++
				} else {
					done++
				}
				if bar != nil {
					_ = bar.Add(1)
				}
			}
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintf(out, "%s %d, failed %d\n", past, done, failed)
			if rest := len(letters) - processed; rest > 0 {
				fmt.Fprintf(out, "interrupted: %d letter(s) left untouched\n", rest)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d letter(s) not %s", failed, past)
			}
			return nil
		},
	}
	conn.flags(cmd.Flags())
	ff.flags(cmd.Flags())
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be done and change nothing")
	cmd.Flags().BoolVar(&progress, "progress", true, "show a progress bar on stderr when acting on more than one letter")
	if verb == "purge" {
		cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	}
	return cmd
}
