package cli

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// setting maps one flag to the environment variables that may also set it
// (kube-vip's names first). A flag given on the command line wins over the
// environment; the environment wins over the default.
type setting struct {
	flag  string
	env   []string
	usage string
	bind  func(fs *pflag.FlagSet, name, usage string)
}

func str(p *string, def string) func(*pflag.FlagSet, string, string) {
	return func(fs *pflag.FlagSet, n, u string) { fs.StringVar(p, n, def, u) }
}

func boolean(p *bool, def bool) func(*pflag.FlagSet, string, string) {
	return func(fs *pflag.FlagSet, n, u string) { fs.BoolVar(p, n, def, u) }
}

func integer(p *int, def int) func(*pflag.FlagSet, string, string) {
	return func(fs *pflag.FlagSet, n, u string) { fs.IntVar(p, n, def, u) }
}

// parsedValue is a flag whose text is parsed into a typed value as it is
// set, so a bad value stops start-up naming its variable.
type parsedValue[T ~string] struct {
	p     *T
	parse func(string) (T, error)
}

func (v parsedValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return string(*v.p)
}

func (v parsedValue[T]) Set(s string) error {
	t, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = t
	return nil
}

func (parsedValue[T]) Type() string { return "string" }

func parsed[T ~string](p *T, def T, parse func(string) (T, error)) func(*pflag.FlagSet, string, string) {
	return func(fs *pflag.FlagSet, n, u string) {
		*p = def
		fs.Var(parsedValue[T]{p, parse}, n, u)
	}
}

// register adds every setting's flag to fs, naming its variables in the
// help text.
func register(fs *pflag.FlagSet, table []setting) {
	for _, s := range table {
		usage := s.usage
		if len(s.env) > 0 {
			usage += " (env " + strings.Join(s.env, ", ") + ")"
		}
		s.bind(fs, s.flag, usage)
	}
}

// applyEnv sets every flag not given on the command line from the first of
// its environment variables that is set and not empty. A bad value stops with a message
// naming the variable.
func applyEnv(fs *pflag.FlagSet, table []setting, lookup func(string) (string, bool)) error {
	for _, s := range table {
		f := fs.Lookup(s.flag)
		if f == nil || f.Changed {
			continue
		}
		for _, name := range s.env {
			v, ok := lookup(name)
			if !ok || strings.TrimSpace(v) == "" {
				continue // set but empty counts as unset, as in kube-vip
			}
			if err := f.Value.Set(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("invalid value %q in environment variable %s (flag --%s): %w", v, name, s.flag, err)
			}
			break
		}
	}
	return nil
}

// envNames lists every environment variable of a table, sorted.
func envNames(table []setting) []string {
	var out []string
	for _, s := range table {
		out = append(out, s.env...)
	}
	sort.Strings(out)
	return out
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
