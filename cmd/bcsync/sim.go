package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"text/template"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/spf13/cobra"
)

// simSizes are the record counts of the simulated BC company.
type simSizes struct {
	locations, shipmentMethods, priceGroups, customers int
}

func (s *simSizes) flags(cmd *cobra.Command, def simSizes) {
	f := cmd.Flags()
	f.IntVar(&s.locations, "locations", def.locations, "locations in the simulated BC company")
	f.IntVar(&s.shipmentMethods, "shipment-methods", def.shipmentMethods, "shipment methods in the simulated BC company")
	f.IntVar(&s.priceGroups, "price-groups", def.priceGroups, "customer price groups (customer categories) in the simulated BC company")
	f.IntVar(&s.customers, "customers", def.customers, "customers in the simulated BC company")
}

func (s simSizes) total() int {
	return s.locations + s.shipmentMethods + s.priceGroups + s.customers
}

func (s simSizes) validate() error {
	for name, n := range map[string]int{"locations": s.locations, "shipment-methods": s.shipmentMethods, "price-groups": s.priceGroups, "customers": s.customers} {
		if n < 0 || n > 1_000_000 {
			return fmt.Errorf("--%s %d: use 0..1000000", name, n)
		}
	}
	return nil
}

// negZero maps a wanted count of 0 to the fakes' "none" (a negative count).
func negZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func bcOptions(s simSizes) bctest.Options {
	return bctest.Options{
		Locations: negZero(s.locations), ShipmentMethods: negZero(s.shipmentMethods),
		PriceGroups: negZero(s.priceGroups), Customers: negZero(s.customers),
		// The simulator keeps BC's 5 concurrent requests but not its request
		// budget, so that large demos run at full speed.
		Budget: -1,
	}
}

// simConfig is what the configuration printed for the simulators needs.
type simConfig struct {
	Subscription          string
	BCURL, IPaaSURL       string
	Company, Tenant       string
	ClientID, Environment string
	SecretEnv, KeyEnv     string
	SystemID              int
	NATSURL               string
	// BC throttling: requests per window and concurrency. The simulator is
	// not BC: by default allow more than BC's 6,000 requests per 5 minutes.
	Requests    int
	Window      string
	Concurrency int
	// IPaaSRequests and IPaaSConcurrency are the iPaaS.com calls per minute
	// and in flight across the fleet.
	IPaaSRequests, IPaaSConcurrency int
	// PollInterval is the poller's interval ("0s": off).
	PollInterval string
	// JobConcurrency is the jobs one worker runs at once.
	JobConcurrency int
}

var simConfigTmpl = template.Must(template.New("cfg").Parse(`# bcsync configuration for the built-in simulators (bcsync sim).
# The secrets are read from the environment variables named below.
nats:
  url: "{{.NATSURL}}"
log:
  level: info
  format: console
subscriptions:
  - name: {{.Subscription}}
    company_name: "{{.Company}}"
    tenant_id: {{.Tenant}}
    client_id: {{.ClientID}}
    client_secret_env: {{.SecretEnv}}
    environment: {{.Environment}}
    api_url: {{.BCURL}}
    authority_url: {{.BCURL}}
    throttling: {requests_per_window: {{.Requests}}, window: {{.Window}}, max_concurrency: {{.Concurrency}}}
    ipaas:
      base_url: {{.IPaaSURL}}
      api_key_env: {{.KeyEnv}}
      system_id: {{.SystemID}}
      throttling: {requests_per_window: {{.IPaaSRequests}}, window: 1m, max_concurrency: {{.IPaaSConcurrency}}}
    worker:
      concurrency: {{.JobConcurrency}}
      backoff_initial: 200ms
      backoff_max: 5s
    # Ask BC for changed records every interval (locations send no
    # webhooks); off here, as the simulators change nothing by themselves.
    poll: {interval: {{.PollInterval}}, types: [location]}
`))

func renderSimConfig(c simConfig) string {
	var b strings.Builder
	if err := simConfigTmpl.Execute(&b, c); err != nil {
		panic(err) // the template and its data are ours
	}
	return b.String()
}

func newSimConfig(name string, bc *bctest.Server, bcURL string, ip *ipaastest.Server, ipURL string) simConfig {
	return simConfig{
		Subscription: name,
		BCURL:        bcURL, IPaaSURL: ipURL,
		Company: bc.CompanyName(), Tenant: bc.TenantID(), ClientID: bc.ClientID(), Environment: bc.Environment(),
		SecretEnv: config.EnvPrefix(name) + "CLIENT_SECRET", KeyEnv: config.EnvPrefix(name) + "IPAAS_API_KEY",
		SystemID: ip.SystemID(),
		// The simulator is not BC: allow more than BC's 6,000 requests per 5 minutes.
		Requests: 100000, Window: "1m", Concurrency: 5, IPaaSRequests: 100000, IPaaSConcurrency: 10,
		PollInterval: "0s", JobConcurrency: 16,
	}
}

func newSimCmd(g *globalFlags) *cobra.Command {
	var (
		sizes             simSizes
		bcAddr, ipaasAddr string
		name              string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the Business Central and iPaaS.com simulators and print a configuration that uses them",
		Long: `Serves the strict fakes of Business Central (with its Entra token endpoint) and
of iPaaS.com on local ports until interrupted, and prints a bcsync
configuration and the environment variables that point a worker at them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sizes.validate(); err != nil {
				return err
			}
			bc := bctest.New(bcOptions(sizes))
			ip := ipaastest.New(ipaastest.Options{})
			bcL, err := net.Listen("tcp", bcAddr)
			if err != nil {
				return fmt.Errorf("BC simulator: %w", err)
			}
			ipL, err := net.Listen("tcp", ipaasAddr)
			if err != nil {
				bcL.Close()
				return fmt.Errorf("iPaaS.com simulator: %w", err)
			}
			bcSrv := &http.Server{Handler: bc.Handler(), ReadHeaderTimeout: 10 * time.Second}
			ipSrv := &http.Server{Handler: ip.Handler(), ReadHeaderTimeout: 10 * time.Second}
			errc := make(chan error, 2)
			go func() { errc <- bcSrv.Serve(bcL) }()
			go func() { errc <- ipSrv.Serve(ipL) }()
			sc := newSimConfig(name, bc, "http://"+bcL.Addr().String(), ip, "http://"+ipL.Addr().String())
			out := cmd.OutOrStdout()
			fmt.Fprint(out, renderSimConfig(sc))
			fmt.Fprintf(out, "\n# export %s='%s'\n# export %s='%s'\n", sc.SecretEnv, bc.ClientSecret(), sc.KeyEnv, ip.APIKey())
			fmt.Fprintf(cmd.ErrOrStderr(), "BC simulator on http://%s, iPaaS.com simulator on http://%s; Ctrl-C stops them\n", bcL.Addr(), ipL.Addr())
			select {
			case <-cmd.Context().Done():
			case err := <-errc:
				if !errors.Is(err, http.ErrServerClosed) {
					return err
				}
			}
			_ = bcSrv.Close()
			_ = ipSrv.Close()
			return nil
		},
	}
	sizes.flags(cmd, simSizes{locations: 50, shipmentMethods: 20, priceGroups: 10, customers: 200})
	f := cmd.Flags()
	f.StringVar(&bcAddr, "bc-listen", "127.0.0.1:8081", "address of the BC simulator")
	f.StringVar(&ipaasAddr, "ipaas-listen", "127.0.0.1:8082", "address of the iPaaS.com simulator")
	f.StringVar(&name, "name", "sim", "subscription name in the printed configuration")
	return cmd
}
