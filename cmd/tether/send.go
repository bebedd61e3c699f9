package main

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/runner"
)

func newSendCmd() *cobra.Command {
	var url, tokenFile, tokenFlag, thread string
	c := &cobra.Command{
		Use:   "send [flags] MESSAGE...",
		Short: "Send a message to a runner and print the agent's reply as it streams",
		Long: `send posts MESSAGE (the arguments joined by spaces, or standard input when
MESSAGE is "-") as a new AG-UI run to a runner's POST /agui and prints the run's
events readably: text, tool calls (→), tool results (←), tether notices. It exits
0 when the run finishes, 1 when it fails.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if where := redact.Credential(url); where != "" {
				return usagef("--url %s carries a credential (%s); give the runner's token in TETHER_RUNNER_TOKEN instead", redact.URL(url), where)
			}
			msg := strings.Join(args, " ")
			if msg == "-" {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				msg = string(b)
			}
			if strings.TrimSpace(msg) == "" {
				return usagef("the message is empty")
			}
			if tokenFlag != "" {
				return usagef("--token is gone: a token on the command line is visible to every user of the machine (ps); put it in TETHER_RUNNER_TOKEN or a file named by --token-file")
			}
			token, err := runnerToken(tokenFile)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return runner.SendMessage(ctx, url, token, thread, msg, c.OutOrStdout())
		},
	}
	c.Flags().StringVar(&url, "url", envOr("TETHER_URL", "http://127.0.0.1:8080"), "base URL of the runner's HTTP API (env TETHER_URL)")
	c.Flags().StringVar(&tokenFile, "token-file", envOr("TETHER_RUNNER_TOKEN_FILE", ""), "file holding the runner's bearer token (env TETHER_RUNNER_TOKEN_FILE; or the token itself in env TETHER_RUNNER_TOKEN)")
	c.Flags().StringVar(&tokenFlag, "token", "", "refused: use TETHER_RUNNER_TOKEN or --token-file")
	c.Flags().MarkHidden("token")
	c.Flags().StringVar(&thread, "thread", "main", "thread id sent in the run input")
	return c
}
