package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// The lease settings take kube-vip's whole seconds and Go durations; a bad
// value stops start-up naming the variable.
func TestLeaseDurationSettings(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    [3]time.Duration
		wantErr string
	}{
		{name: "defaults", want: [3]time.Duration{5 * time.Second, 3 * time.Second, time.Second}},
		{name: "kube-vip whole seconds", env: map[string]string{"vip_leaseduration": "15", "vip_renewdeadline": "10", "vip_retryperiod": "2"},
			want: [3]time.Duration{15 * time.Second, 10 * time.Second, 2 * time.Second}},
		{name: "Go durations", env: map[string]string{"vip_leaseduration": "1s", "vip_renewdeadline": "700ms", "vip_retryperiod": "300ms"},
			want: [3]time.Duration{time.Second, 700 * time.Millisecond, 300 * time.Millisecond}},
		{name: "flag as a duration", args: []string{"--lease-duration=1500ms"}, want: [3]time.Duration{1500 * time.Millisecond, 3 * time.Second, time.Second}},
		{name: "fractional seconds without a unit", env: map[string]string{"vip_leaseduration": "1.5"}, wantErr: "vip_leaseduration"},
		{name: "words", env: map[string]string{"vip_retryperiod": "soon"}, wantErr: "vip_retryperiod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &managerOptions{}
			table := managerSettings(o)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			register(fs, table)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := applyEnv(fs, table, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, [3]time.Duration{o.leaseDuration, o.renewDeadline, o.retryPeriod}); diff != "" {
				t.Errorf("durations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecondsString(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Second: "5", 700 * time.Millisecond: "700ms", 1500 * time.Millisecond: "1.5s"} {
		if got := (seconds{&d}).String(); got != want {
			t.Errorf("seconds(%v) = %q, want %q", d, got, want)
		}
	}
}

// The lease the node-mode error suggests is accepted, and 100 ms less is
// not (the message once said 5.6s where 4.7s was the floor).
func TestMinNodeLeaseIsTheFloor(t *testing.T) {
	for _, retry := range []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second} {
		o := &electionOptions{mode: "node"}
		floor := minNodeLease(retry)
		renew := max(floor/2, retry+time.Millisecond)
		if err := o.validate(true, floor, renew, retry); err != nil {
			t.Errorf("retry %v: the suggested %v is refused: %v", retry, floor, err)
		}
		if err := o.validate(true, floor-100*time.Millisecond, renew, retry); err == nil {
			t.Errorf("retry %v: %v (below the suggested %v) is accepted", retry, floor-100*time.Millisecond, floor)
		}
	}
}

// Node mode beats every LeaseDuration/3 where the kernel-lifetime switch
// and a retry before the renew deadline allow it, and never less often
// than min(LeaseDuration/3, RetryPeriod).
func TestBeatInterval(t *testing.T) {
	for _, tc := range []struct {
		lease, renew, retry, want time.Duration
	}{
		{15 * time.Second, 10 * time.Second, 2 * time.Second, 5 * time.Second}, // kube-vip's defaults: LeaseDuration/3
		{6 * time.Second, 4 * time.Second, time.Second, 2 * time.Second},
		{5 * time.Second, 3 * time.Second, time.Second, 1300 * time.Millisecond}, // the lab's: lease − 3.7 s
		{4700 * time.Millisecond, 3 * time.Second, time.Second, time.Second},     // the shortest lease: the retry period
		{10 * time.Second, 2 * time.Second, time.Second, time.Second},            // a retry before the renew deadline
		{30 * time.Second, 20 * time.Second, 5 * time.Second, 10 * time.Second},
	} {
		if got := beatInterval(tc.lease, tc.renew, tc.retry); got != tc.want {
			t.Errorf("beatInterval(%v, %v, %v) = %v, want %v", tc.lease, tc.renew, tc.retry, got, tc.want)
		}
		o := &electionOptions{mode: "node"}
		if err := o.validate(true, tc.lease, tc.renew, tc.retry); err != nil {
			t.Errorf("%v/%v/%v refused: %v", tc.lease, tc.renew, tc.retry, err)
		}
	}
	// Whatever validate accepts beats in time for the kernel lifetime,
	// before the renew deadline, and at least every LeaseDuration/3.
	step := 100 * time.Millisecond
	for lease := step; lease <= 12*time.Second; lease += step {
		for renew := step; renew < lease; renew += step {
			for retry := step; retry < renew; retry += step {
				if (&electionOptions{mode: "node"}).validate(true, lease, renew, retry) != nil {
					continue
				}
				if got := beatInterval(lease, renew, retry); got > lease-deadMansSwitch || got >= renew || got > lease/3 {
					t.Fatalf("beatInterval(%v, %v, %v) = %v", lease, renew, retry, got)
				}
			}
		}
	}
}

// A node holds what four fifths of the Lease client's budget renews once
// per retry period, and always at least one.
func TestMaxHeld(t *testing.T) {
	for _, tc := range []struct {
		retry time.Duration
		want  int
	}{
		{time.Second, 120},
		{100 * time.Millisecond, 12},
		{2 * time.Second, 240},
		{time.Millisecond, 1},
	} {
		if got := maxHeld(tc.retry); got != tc.want {
			t.Errorf("maxHeld(%v) = %d, want %d", tc.retry, got, tc.want)
		}
	}
}
