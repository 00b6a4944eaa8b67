package lab

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTcpdump(t *testing.T) {
	ts := time.Unix(1700000000, 123456000)
	tests := []struct {
		line string
		want Announcement
		ok   bool
	}{
		{
			line: "1700000000.123456 02:00:00:00:00:12 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.18.0.100 tell 198.18.0.100, length 28",
			want: Announcement{Time: ts, SrcMAC: "02:00:00:00:00:12", Op: "garp", Addr: netip.MustParseAddr("198.18.0.100")}, ok: true,
		},
		{
			line: "1700000000.123456 02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.18.0.100 tell 198.18.0.2, length 28",
			want: Announcement{Time: ts, SrcMAC: "02:00:00:00:00:02", Op: "arp-request", Addr: netip.MustParseAddr("198.18.0.100")}, ok: true,
		},
		{
			line: "1700000000.123456 02:00:00:00:00:12 > 02:00:00:00:00:02, ethertype ARP (0x0806), length 42: Reply 198.18.0.100 is-at 02:00:00:00:00:12, length 28",
			want: Announcement{Time: ts, SrcMAC: "02:00:00:00:00:12", Op: "arp-reply", Addr: netip.MustParseAddr("198.18.0.100")}, ok: true,
		},
		{
			line: "1700000000.123456 02:00:00:00:00:13 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fe80::ff:fe00:13 > ff02::1: ICMP6, neighbor advertisement, tgt is fd00:1ab::100, length 32",
			want: Announcement{Time: ts, SrcMAC: "02:00:00:00:00:13", Op: "na", Addr: netip.MustParseAddr("fd00:1ab::100")}, ok: true,
		},
		{
			line: "1700000000.123456 02:00:00:00:00:02 > 33:33:ff:00:01:00, ethertype IPv6 (0x86dd), length 86: fd00:1ab::2 > ff02::1:ff00:100: ICMP6, neighbor solicitation, who has fd00:1ab::100, length 32",
			want: Announcement{Time: ts, SrcMAC: "02:00:00:00:00:02", Op: "ns", Addr: netip.MustParseAddr("fd00:1ab::100")}, ok: true,
		},
		{line: "tcpdump: verbose output suppressed", ok: false},
	}
	for _, tt := range tests {
		got, ok := parseTcpdump(tt.line)
		if ok != tt.ok {
			t.Errorf("parseTcpdump(%q) ok = %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("parseTcpdump(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func TestOwnerPID(t *testing.T) {
	tests := []struct {
		ns   string
		pid  int
		want bool
	}{
		{"vgl-1234-ab12-node1", 1234, true},
		{"vgl-x-node1", 0, false},
		{"other-1234-node1", 0, false},
	}
	for _, tt := range tests {
		pid, ok := ownerPID(tt.ns)
		if ok != tt.want || (ok && pid != tt.pid) {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tt.ns, pid, ok, tt.pid, tt.want)
		}
	}
}
