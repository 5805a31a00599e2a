package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bcsync/bcsync/config"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
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
