package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/spf13/cobra"
)

func newEnqueueCmd(g *globalFlags) *cobra.Command {
	var (
		conn          natsConn
		job           messages.Job
		typ, op, data string
		keys          []string
		fromStdin     bool
	)
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Publish sync jobs, from flags or as JSON on stdin",
		Example: `  bcsync enqueue --subscription contoso --type location --key EAST --key WEST
  echo '{"v":1,"id":"j1","subscription":"contoso","type":"customer","op":"upsert","key":"C000001"}' | bcsync enqueue --stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := conn.check(); err != nil {
				return err
			}
			var jobs []messages.Job
			if fromStdin {
				var set []string
				for _, name := range []string{"subscription", "type", "op", "key", "data", "id", "source"} {
					if cmd.Flags().Changed(name) {
						set = append(set, "--"+name)
					}
				}
				if len(set) > 0 {
					return fmt.Errorf("--stdin reads whole jobs, which carry their own fields: drop %s (or put them in the JSON)", strings.Join(set, ", "))
				}
				var err error
				if jobs, err = readJobs(cmd.InOrStdin()); err != nil {
					return err
				}
			} else {
				job.Type, job.Op = messages.Type(typ), messages.Op(op)
				if data != "" {
					raw, err := readData(data)
					if err != nil {
						return err
					}
					job.Data = raw
				}
				if len(keys) == 0 {
					keys = []string{""}
				}
				if job.ID != "" && len(keys) > 1 {
					return errors.New("--id names one job: give one --key with it")
				}
				for _, k := range keys {
					j := job
					j.Key = k
					jobs = append(jobs, j)
				}
			}
			// Every job is checked (and given its id) before anything is sent.
			var errs []error
			for i := range jobs {
				_, filled, err := messages.NewMsg(jobs[i])
				if err != nil {
					errs = append(errs, err)
				}
				jobs[i] = filled
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			b, err := conn.connect(cmd.Context(), "bcsync-enqueue")
			if err != nil {
				return err
			}
			defer b.Close()
			if err := broker.EnsureStreams(cmd.Context(), b.JS, broker.StreamOptions{CreateOnly: true}); err != nil {
				return err
			}
			for _, j := range jobs {
				ack, pub, err := messages.Publish(cmd.Context(), b.JS, j)
				if err != nil {
					return err
				}
				state := "published"
				if ack.Duplicate {
					state = "duplicate (already queued)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s job %s on %s (stream seq %d)\n", state, pub.ID, pub.Subject(), ack.Sequence)
			}
			return nil
		},
	}
	f := cmd.Flags()
	conn.flags(f)
	f.StringVar(&job.Subscription, "subscription", "", "bcsync subscription name")
	f.StringVar(&typ, "type", "", "customer_category, location, shipping_method, customer or product")
	f.StringVar(&op, "op", string(messages.OpUpsert), "upsert, delete, initialize or delta")
	// StringArray, not StringSlice: a BC code may hold a comma (MAIN,ST),
	// and each --key is one job.
	f.StringArrayVar(&keys, "key", nil, "BC id (GUID) or code, taken whole (commas included); repeat for several jobs")
	f.StringVar(&data, "data", "", "BC record snapshot: JSON, or @file")
	f.StringVar(&job.ID, "id", "", "job id (default: random); reuse it when retrying so the retry is deduplicated")
	f.StringVar(&job.Source, "source", "cli", "who publishes the job")
	f.BoolVar(&fromStdin, "stdin", false, "read jobs as JSON (one or more objects) from stdin")
	return cmd
}

func readData(arg string) (json.RawMessage, error) {
	b := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
	}
	if !json.Valid(b) {
		return nil, errors.New("--data: not valid JSON")
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes(), nil
}

// readJobs reads one or more JSON job objects, each validated like a worker
// would; every problem is reported with the job's position.
func readJobs(r io.Reader) ([]messages.Job, error) {
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	var jobs []messages.Job
	var errs []error
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("stdin job #%d: not JSON: %w", n, err)
		}
		j, err := messages.Decode(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("stdin job #%d: %w", n, err))
			continue
		}
		jobs = append(jobs, *j)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(jobs) == 0 {
		return nil, errors.New("stdin held no job")
	}
	return jobs, nil
}
