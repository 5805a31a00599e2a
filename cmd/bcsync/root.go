package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// globalFlags are shared by every subcommand.
type globalFlags struct {
	configPath string
	logLevel   string
	logFormat  string
}

// loadConfig loads the configuration file and builds the logger it asks
// for (the flags win over the file's log settings).
func (g *globalFlags) loadConfig(stderr io.Writer) (*config.Config, zerolog.Logger, error) {
	cfg, err := config.Load(g.configPath, nil)
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	log, err := newLogger(stderr, firstNonEmpty(g.logLevel, cfg.Log.Level), firstNonEmpty(g.logFormat, cfg.Log.Format))
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	return cfg, log, nil
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "bcsync",
		Short:         "Keep iPaaS.com in step with Microsoft Dynamics 365 Business Central",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          subcommandArgs,
		RunE:          showHelp,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", envOr("BCSYNC_CONFIG", "bcsync.yaml"), "configuration file (env BCSYNC_CONFIG)")
	pf.StringVar(&g.logLevel, "log-level", "", "trace, debug, info, warn or error (default: the config's log.level, env BCSYNC_LOG_LEVEL)")
	pf.StringVar(&g.logFormat, "log-format", "", "json or console (default: the config's log.format, env BCSYNC_LOG_FORMAT)")
	root.AddCommand(
		newWorkerCmd(g),
		newEnqueueCmd(g),
		newSimCmd(g),
		newDemoCmd(g),
		newBenchCmd(g),
		newDLQCmd(g),
		newInitCmd(g),
		newWebhookCmd(g),
		newCheckCmd(g),
	)
	return root
}

// subcommandArgs is the Args of a command that only groups subcommands:
// cobra runs such a command for an argument that names no subcommand (a
// typo: "bcsync dlq repaly 42"), and without Args and RunE it prints the
// help and exits 0, so a script believes the typo did its work. This fails
// instead, naming the unknown command and the valid ones.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // as cobra does for the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 && !cmd.DisableSuggestions {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return fmt.Errorf("%s: use one of %s (see %s --help)", msg, strings.Join(names, ", "), cmd.CommandPath())
}

// showHelp is the RunE of a command that only groups subcommands: given
// none (subcommandArgs refuses anything else), it prints its help.
func showHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// natsConn is the NATS connection of the commands that talk to a running
// NATS server (enqueue, init, dlq): --nats-url and --creds.
type natsConn struct{ url, creds, ca, cert, key string }

func (c *natsConn) flags(f *pflag.FlagSet) {
	f.StringVar(&c.url, "nats-url", envOr("NATS_URL", defaultNATSURL), "NATS server(s), comma-separated (env NATS_URL; default: a worker's embedded server)")
	// --help shows the default, which NATS_URL may give with a password.
	f.Lookup("nats-url").DefValue = broker.RedactURL(f.Lookup("nats-url").DefValue)
	f.StringVar(&c.creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file (env NATS_CREDS)")
	// The nats CLI's variables, and the worker's nats.tls settings.
	f.StringVar(&c.ca, "tls-ca", os.Getenv("NATS_CA"), "CA file that signed the NATS server's certificate (env NATS_CA)")
	f.StringVar(&c.cert, "tls-cert", os.Getenv("NATS_CERT"), "client certificate file, for a server that verifies clients (env NATS_CERT; with --tls-key)")
	f.StringVar(&c.key, "tls-key", os.Getenv("NATS_KEY"), "client certificate's key file (env NATS_KEY; with --tls-cert)")
}

// defaultNATSURL is where a worker without nats.url serves its embedded
// NATS server.
const defaultNATSURL = "nats://127.0.0.1:4222"

// check refuses an empty --nats-url. The flag's default is never empty (an
// empty NATS_URL counts as unset), so it was given empty, e.g. as
// --nats-url "$NATS_SERVER" with the variable unset; broker.Connect would
// start a throwaway embedded server for it, and the command would report
// jobs queued on a server gone when it exits.
func (c *natsConn) check() error {
	if strings.TrimSpace(c.url) == "" {
		return fmt.Errorf("--nats-url is empty: pass the NATS server's URL (e.g. --nats-url %s), or leave the flag out to use NATS_URL or %s", defaultNATSURL, defaultNATSURL)
	}
	return nil
}

// connect checks the URL and connects; name is the connection's name shown
// by the server.
func (c *natsConn) connect(ctx context.Context, name string) (*broker.Broker, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return broker.Connect(ctx, broker.Options{URL: c.url, CredsFile: c.creds, CAFile: c.ca, CertFile: c.cert, KeyFile: c.key, Name: name, Log: zerolog.Nop()})
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// newLogger builds the process logger. Flags win over the configuration.
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("log level %q: use trace, debug, info, warn or error", level)
	}
	switch format {
	case "", "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: use json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
