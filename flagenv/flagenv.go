// Package flagenv lets every command-line flag also be set from the
// environment, so the same binary runs under a shell, systemd or Kubernetes
// without a wrapper script. A flag given on the command line wins over the
// environment; the environment wins over the default.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Name returns the environment variable for a flag: PREFIX_FLAG_NAME.
func Name(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets each flag of fs that was not given on the command line from its
// environment variable, if set. Call it after fs.Parse. Repeatable flags
// take a comma-separated list.
func Apply(fs *flag.FlagSet, prefix string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := Name(prefix, f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		for _, part := range splitList(f, v) {
			if e := fs.Set(f.Name, part); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", name, v, e)
				return
			}
		}
	})
	return err
}

// Lister is implemented by repeatable flag values.
type Lister interface{ IsList() bool }

func splitList(f *flag.Flag, v string) []string {
	if l, ok := f.Value.(Lister); ok && l.IsList() {
		return strings.Split(v, ",")
	}
	return []string{v}
}

// Usage prints the flags of fs with their environment variables.
func Usage(fs *flag.FlagSet, prefix, synopsis string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintln(out, synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (env %s, default %q)\n      %s\n", f.Name, Name(prefix, f.Name), f.DefValue, f.Usage)
		})
	}
}
