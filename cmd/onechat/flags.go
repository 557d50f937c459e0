package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "ONECHAT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set. Flags win over the environment.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// usage prints a flag set's flags with their environment variables.
func usage(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: %s\n\n", synopsis)
		if fs.Lookup("config") != nil {
			fmt.Fprintln(out, "flags (each also read from the environment variable shown, then from the\n"+
				"--config file; the command line wins over both):")
		} else {
			fmt.Fprintln(out, "flags (each also read from the environment variable shown):")
		}
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(out, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
}

// applyConfigFile sets every flag given neither on the command line nor in
// the environment from the YAML file at path, whose keys are flag names:
//
//	http: ":8080"
//	routes: [nats://onechat-0:6222, nats://onechat-1:6222]
//	retention: 168h
//
// A list becomes a comma-separated value. An unknown key is an error, so
// a typo does not pass silently.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("config file %s: unknown setting %q (see onechat --help)", path, name)
		}
		if set[name] {
			continue
		}
		if _, inEnv := os.LookupEnv(envName(name)); inEnv {
			continue
		}
		v, err := settingString(settings[name])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, name, err)
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, name, err)
		}
	}
	return nil
}

func settingString(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := settingString(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", fmt.Errorf("want a value or a list, not a map")
	}
	return fmt.Sprint(v), nil
}
