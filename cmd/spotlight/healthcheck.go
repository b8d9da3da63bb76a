package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/api"
)

// HealthcheckCommand probes a running server's /healthz: the Docker HEALTHCHECK, since the
// runtime image has no shell, curl or wget.
type HealthcheckCommand struct {
	Addr string
}

func newHealthcheckCmd() *cobra.Command {
	c := &HealthcheckCommand{}
	cmd := &cobra.Command{
		Use:     "healthcheck",
		Short:   "Exit 0 if the server at --addr answers GET /healthz with 200",
		Example: `  spotlight healthcheck --addr 127.0.0.1:8080`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	cmd.Flags().StringVar(&c.Addr, "addr", api.DefaultAddr, "server address")
	return cmd
}

// Run asks /healthz once, giving up after five seconds.
func (c *HealthcheckCommand) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}
