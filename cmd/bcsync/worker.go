package main

import (
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/worker"
	"github.com/spf13/cobra"
)

func newWorkerCmd(g *globalFlags) *cobra.Command {
	var (
		subs   []string
		grace  time.Duration
		listen string
		id     string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Pull sync jobs and sync them from Business Central to iPaaS.com",
		Long: `Runs one consume loop per subscription of the configuration file. Without
nats.url (or NATS_URL) it starts an embedded NATS server, for development only.
On SIGTERM or Ctrl-C it stops pulling, lets in-flight jobs finish within
--grace, returns the rest to the queue, and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath, nil)
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), firstNonEmpty(g.logLevel, cfg.Log.Level), firstNonEmpty(g.logFormat, cfg.Log.Format))
			if err != nil {
				return err
			}
			b, err := broker.Connect(cmd.Context(), broker.Options{
				URL:       cfg.NATS.URL,
				CredsFile: cfg.NATS.CredsFile,
				CAFile:    cfg.NATS.TLS.CAFile,
				CertFile:  cfg.NATS.TLS.CertFile,
				KeyFile:   cfg.NATS.TLS.KeyFile,
				DataDir:   cfg.NATS.DataDir,
				Listen:    listen,
				Name:      "bcsync-worker",
				Log:       log,
			})
			if err != nil {
				return err
			}
			defer b.Close()
			return worker.Run(cmd.Context(), cfg, worker.Options{
				Broker:        b,
				Subscriptions: subs,
				ID:            id,
				Grace:         grace,
				Log:           log,
				// Credentials refused? The subscription pauses and its
				// probes re-read the file and the secrets.
				Reload: func() (*config.Config, error) { return config.Load(g.configPath, nil) },
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&subs, "subscription", nil, "serve only these subscriptions (default: all in the file)")
	f.DurationVar(&grace, "grace", 25*time.Second, "how long in-flight jobs may finish after SIGTERM")
	f.StringVar(&listen, "embedded-listen", "127.0.0.1:4222", "address of the embedded NATS server (used only without a NATS URL)")
	f.StringVar(&id, "id", "", "worker id in logs and dead letters (default hostname-pid)")
	return cmd
}
