package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/wakeline/wakeline/config"
)

const configFlagUsage = "config file (default $" + config.EnvConfigFile + "; with neither, the embedded defaults)"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wakeline",
		Short: "A connectionless push gateway: SSE for sleeping devices, woken by Web Push",
		Long: `wakeline holds Server-Sent Events connections to your origins on behalf of
devices that are asleep, buffers every event, wakes the device with one
encrypted, VAPID-signed Web Push message, and replays what it missed when it
reconnects with Last-Event-ID.

Every config key can be set from the environment: WAKELINE_ + the key path
in upper case with _ for . (WAKELINE_LISTEN, WAKELINE_STORE_DRIVER).`,
		Version: versionString(),
		// run prints errors itself, without cobra's usage dump.
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("wakeline {{.Version}}\n")
	root.AddCommand(newServeCmd(), newDemoCmd(), newVapidCmd(), newConfigCmd(), newVersionCmd(), newHealthcheckCmd())
	return root
}

// loadConfig is Load then Validate; any problem is a usage error (exit 2).
func loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return config.Config{}, usageError(err)
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, usageError(err)
	}
	return cfg, nil
}

func newServeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			fromFile := cfg.Source != ""
			if fromFile {
				logger.Info("config loaded", "config", cfg)
			} else {
				logger.Info("no config file, running on embedded defaults", "config", cfg)
			}
			if err := runServe(cmd.Context(), cfg, fromFile, logger); err != nil {
				return runtimeError(fmt.Errorf("serve: %w", err))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", configFlagUsage)
	return cmd
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration",
		// Runnable so that a misspelt subcommand is an error, not help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var path string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate a config (file and WAKELINE_* environment); exit 2 if it is bad",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if cfg.Source == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "config OK (no config file: embedded defaults and WAKELINE_* environment)")
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "config OK")
			return nil
		},
	}
	check.Flags().StringVar(&path, "config", "", configFlagUsage)
	cmd.AddCommand(check)
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "wakeline %s\n", versionString())
			return err
		},
	}
}

func newDemoCmd() *cobra.Command {
	var opts demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show the whole loop on loopback, no config needed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runDemo(cmd.Context(), cmd.OutOrStdout(), opts); err != nil {
				return runtimeError(fmt.Errorf("demo: %w", err))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.serve, "serve", false, "after the story, keep running and serve the example web page at /demo/")
	cmd.Flags().StringVar(&opts.listen, "listen", "127.0.0.1:0", "the demo gateway's address")
	return cmd
}

func newVapidCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "vapid",
		Short: "Print a fresh VAPID key pair (YAML snippet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runVapid(cmd.OutOrStdout()); err != nil {
				return runtimeError(fmt.Errorf("vapid: %w", err))
			}
			return nil
		},
	}
}
