package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/vigil-lb/vigil/pkg/kube"
)

// envValues is what the applyEnv tests bind their small table to.
type envValues struct {
	Name  string
	On    bool
	Count int
}

func envTable(v *envValues) []setting {
	return []setting{
		{"name", []string{"first_name", "SECOND_NAME"}, "a string", str(&v.Name, "default")},
		{"on", []string{"on_env"}, "a bool", boolean(&v.On, false)},
		{"count", []string{"count_env"}, "an int", integer(&v.Count, 7)},
	}
}

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    envValues
		wantErr string // substring; "" means no error
	}{
		{
			name: "defaults without environment",
			want: envValues{Name: "default", Count: 7},
		},
		{
			name: "environment sets unset flags",
			env:  map[string]string{"first_name": "x", "on_env": "true", "count_env": "3"},
			want: envValues{Name: "x", On: true, Count: 3},
		},
		{
			name: "command line wins over environment",
			args: []string{"--name=flag", "--on=false", "--count=9"},
			env:  map[string]string{"first_name": "env", "on_env": "true", "count_env": "3"},
			want: envValues{Name: "flag", Count: 9},
		},
		{
			name: "first environment name wins",
			env:  map[string]string{"first_name": "first", "SECOND_NAME": "second"},
			want: envValues{Name: "first", Count: 7},
		},
		{
			name: "later environment name when the first is unset",
			env:  map[string]string{"SECOND_NAME": "second"},
			want: envValues{Name: "second", Count: 7},
		},
		{
			name: "set but empty counts as unset",
			env:  map[string]string{"first_name": "", "SECOND_NAME": "second"},
			want: envValues{Name: "second", Count: 7},
		},
		{
			name: "values are trimmed",
			env:  map[string]string{"on_env": " true\n", "count_env": " 4 "},
			want: envValues{Name: "default", On: true, Count: 4},
		},
		{
			name:    "bad bool names the variable",
			env:     map[string]string{"on_env": "yes please"},
			wantErr: "environment variable on_env (flag --on)",
		},
		{
			name:    "bad int names the variable",
			env:     map[string]string{"count_env": "many"},
			wantErr: "environment variable count_env (flag --count)",
		},
		{
			name: "bad value ignored when the flag is given",
			args: []string{"--count=2"},
			env:  map[string]string{"count_env": "many"},
			want: envValues{Name: "default", Count: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got envValues
			table := envTable(&got)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			register(fs, table)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			err := applyEnv(fs, table, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("applyEnv error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("applyEnv: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

// dhcp_mode is parsed as it is read: each value kube-vip documents, and a
// bad one stops start-up naming the variable.
func TestDHCPModeSetting(t *testing.T) {
	for _, tt := range []struct {
		env     string
		want    kube.DHCPMode
		wantErr string
	}{
		{env: "", want: kube.DHCPModeIPv4},
		{env: "ipv4", want: kube.DHCPModeIPv4},
		{env: "ipv6", want: kube.DHCPModeIPv6},
		{env: "dual", want: kube.DHCPModeDual},
		{env: "both", wantErr: `invalid value "both" in environment variable dhcp_mode (flag --dhcp-mode)`},
	} {
		o := &managerOptions{}
		table := managerSettings(o)
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		register(fs, table)
		err := applyEnv(fs, table, func(k string) (string, bool) { return tt.env, k == "dhcp_mode" })
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("dhcp_mode=%q: error %v, want %q", tt.env, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("dhcp_mode=%q: %v", tt.env, err)
		case tt.wantErr == "" && o.dhcpMode != tt.want:
			t.Errorf("dhcp_mode=%q gives %q, want %q", tt.env, o.dhcpMode, tt.want)
		}
	}
}

func TestRegisterNamesEnvInUsage(t *testing.T) {
	var v envValues
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	register(fs, envTable(&v))
	if diff := cmp.Diff("a string (env first_name, SECOND_NAME)", fs.Lookup("name").Usage); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

// noEnvFlags lists manager flags that on purpose have no environment
// variable.
const noEnvFlags = ""

func TestManagerSettingsTable(t *testing.T) {
	envRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	flags := map[string]bool{}
	envs := map[string]string{}
	for _, s := range managerSettings(&managerOptions{}) {
		if flags[s.flag] {
			t.Errorf("flag --%s appears twice", s.flag)
		}
		flags[s.flag] = true
		if len(s.env) == 0 && !strings.Contains(","+noEnvFlags+",", ","+s.flag+",") {
			t.Errorf("flag --%s has no environment variable", s.flag)
		}
		if s.usage == "" {
			t.Errorf("flag --%s has no usage", s.flag)
		}
		for _, e := range s.env {
			if other, ok := envs[e]; ok {
				t.Errorf("environment variable %s is used by --%s and --%s", e, other, s.flag)
			}
			envs[e] = s.flag
			if !envRE.MatchString(e) {
				t.Errorf("environment variable %q of --%s is not a valid name", e, s.flag)
			}
		}
	}
}

// validManager is a manager configuration that passes validate.
func validManager() *managerOptions {
	o := managerDefaults()
	o.nodeName = "node-a"
	return o
}

func TestManagerValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*managerOptions)
		wantErr string // substring; "" means valid
	}{
		{name: "defaults", change: func(*managerOptions) {}},
		{name: "services mode off", change: func(o *managerOptions) { o.services = false }, wantErr: "svc_enable=false"},
		{name: "no node name", change: func(o *managerOptions) { o.nodeName = "" }, wantErr: "no node name"},
		{name: "zero lease duration", change: func(o *managerOptions) { o.leaseDuration = 0 }, wantErr: "must be positive"},
		{name: "negative retry period", change: func(o *managerOptions) { o.retryPeriod = -1 }, wantErr: "must be positive"},
		{name: "renew deadline equal to lease duration", change: func(o *managerOptions) { o.leaseDuration, o.renewDeadline = 3*time.Second, 3*time.Second }, wantErr: "vip_renewdeadline (3s) must be shorter than vip_leaseduration (3s)"},
		{name: "renew deadline above lease duration", change: func(o *managerOptions) { o.renewDeadline = 10 * time.Second }, wantErr: "vip_renewdeadline (10s) must be shorter than vip_leaseduration (5s)"},
		{name: "retry period equal to renew deadline", change: func(o *managerOptions) { o.retryPeriod = 3 * time.Second }, wantErr: "vip_retryperiod (3s) must be shorter than vip_renewdeadline (3s)"},
		{name: "longer timings", change: func(o *managerOptions) {
			o.leaseDuration, o.renewDeadline, o.retryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
		}},
		{name: "node mode with a lease too short for the dead man's switch", change: func(o *managerOptions) {
			o.perService, o.election.mode = true, "node"
			o.leaseDuration, o.renewDeadline, o.retryPeriod = time.Second, 700*time.Millisecond, 300*time.Millisecond
		}, wantErr: "vip_leaseduration=1s is too short for node mode"},
		{name: "node mode with sub-second durations", change: func(o *managerOptions) {
			o.perService, o.election.mode = true, "node"
			o.leaseDuration, o.renewDeadline, o.retryPeriod = 4500*time.Millisecond, 2500*time.Millisecond, 700*time.Millisecond
		}},
		{name: "sub-second timings in service mode", change: func(o *managerOptions) {
			o.leaseDuration, o.renewDeadline, o.retryPeriod = time.Second, 700*time.Millisecond, 300*time.Millisecond
		}},
		{name: "lease rounding down to the renew deadline in service mode", change: func(o *managerOptions) {
			o.leaseDuration, o.renewDeadline, o.retryPeriod = 1500*time.Millisecond, 1200*time.Millisecond, 300*time.Millisecond
		}, wantErr: "vip_leaseduration=1.5s is written to the Lease as 1s"},
		{name: "node election mode", change: func(o *managerOptions) { o.perService, o.election.mode = true, "node" }},
		{name: "node election mode with one shared lease", change: func(o *managerOptions) { o.election.mode = "node" }, wantErr: "vigil_election_mode=node needs svc_election=true"},
		{name: "unknown election mode", change: func(o *managerOptions) { o.perService, o.election.mode = true, "gossip" }, wantErr: `vigil_election_mode="gossip"`},
		{name: "rebalance", change: func(o *managerOptions) { o.perService, o.election.rebalance = true, true }},
		{name: "rebalance in node mode", change: func(o *managerOptions) { o.perService, o.election.rebalance, o.election.mode = true, true, "node" }},
		{name: "rebalance with one shared lease", change: func(o *managerOptions) { o.election.rebalance = true }, wantErr: "vigil_rebalance=true needs svc_election=true"},
		{name: "rebalance without the ranking", change: func(o *managerOptions) { o.perService, o.election.rebalance, o.election.spread = true, true, false },
			wantErr: "vigil_rebalance=true needs vigil_election_spread=true"},
		{name: "rebalance every 0s", change: func(o *managerOptions) { o.perService, o.election.rebalance, o.election.every = true, true, 0 },
			wantErr: "vigil_rebalance_interval=0s"},
		{name: "zero arp rate", change: func(o *managerOptions) { o.arpRate = 0 }, wantErr: "vip_arpRate must be positive"},
		{name: "subnet 32", change: func(o *managerOptions) { o.subnet = "32" }},
		{name: "subnets 32 and 128", change: func(o *managerOptions) { o.subnet = "32, 128" }},
		{name: "subnet 24", change: func(o *managerOptions) { o.subnet = "24" }, wantErr: `vip_subnet="24"`},
		{name: "subnet 32 and 64", change: func(o *managerOptions) { o.subnet = "32,64" }, wantErr: `vip_subnet="32,64"`},
		{name: "log level debug", change: func(o *managerOptions) { o.logLevel = "debug" }},
		{name: "bad log level", change: func(o *managerOptions) { o.logLevel = "chatty" }, wantErr: `vigil_log_level="chatty"`},
		{name: "upnp is only a warning", change: func(o *managerOptions) { o.upnp = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validManager()
			tt.change(o)
			err := o.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestManagerDefaults(t *testing.T) {
	o := managerDefaults()
	got := []any{o.services, o.perService, o.leaseName, o.leaseNamespace, o.leaseDuration, o.renewDeadline, o.retryPeriod, o.arp, o.arpRate, o.prometheus, o.stateFile}
	want := []any{true, false, "plndr-svcs-lock", "kube-system", 5 * time.Second, 3 * time.Second, time.Second, true, 3000, ":2112", "/run/vigil/vips.json"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}
