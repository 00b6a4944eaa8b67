package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// ResolveMAC asks, from the client, which MAC answers for addr right now:
// one ARP request (arping) for IPv4, one neighbour solicitation (ndisc6) for
// IPv6. It fails when nobody answers.
func (n *Network) ResolveMAC(ctx context.Context, addr netip.Addr) (net.HardwareAddr, error) {
	if addr.Is4() {
		out, err := runIn(ctx, n.Client.NS, "arping", "-c1", "-w1", "-I", "eth0", addr.String())
		if m := arpingMAC.FindStringSubmatch(out); m != nil {
			return net.ParseMAC(m[1])
		}
		return nil, fmt.Errorf("no ARP answer for %s: %v", addr, err)
	}
	out, err := runIn(ctx, n.Client.NS, "ndisc6", "-1", "-r1", "-w500", addr.String(), "eth0")
	if m := ndiscMAC.FindStringSubmatch(out); m != nil {
		return net.ParseMAC(m[1])
	}
	return nil, fmt.Errorf("no NDP answer for %s: %v", addr, err)
}

var (
	arpingMAC = regexp.MustCompile(`reply from \S+ \[([0-9A-Fa-f:]{17})\]`)
	ndiscMAC  = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]{17})`)
)

// NeighborMAC returns the MAC in the client's neighbour table for addr (what
// the client would send to without asking again), or nil when there is none.
func (n *Network) NeighborMAC(ctx context.Context, addr netip.Addr) (net.HardwareAddr, error) {
	out, err := runIn(ctx, n.Client.NS, "ip", "-j", "neigh", "show", "to", addr.String(), "dev", "eth0")
	if err != nil {
		return nil, err
	}
	var entries []struct {
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		return nil, fmt.Errorf("parse neighbours %q: %w", out, err)
	}
	for _, e := range entries {
		if e.LLAddr != "" {
			return net.ParseMAC(e.LLAddr)
		}
	}
	return nil, nil
}

// Dial connects from the client to addr:port and returns the first line the
// server sends (the lab's servers send their host name).
func (n *Network) Dial(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	return dialFrom(ctx, n.Client.NS, netip.AddrPortFrom(addr, port))
}

// DialFromWAN is Dial from the WAN host (through the gateway).
func (n *Network) DialFromWAN(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	return dialFrom(ctx, n.WAN.NS, netip.AddrPortFrom(addr, port))
}

func dialFrom(ctx context.Context, ns string, ap netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dialIn(ctx, ns, "tcp", ap.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", ap, err)
	}
	return strings.TrimSpace(line), nil
}

// Serve runs a TCP server on every address of h (port port) that greets
// each connection with h's name. It stops when the lab closes or the
// returned func is called.
func (n *Network) Serve(h *Host, port uint16) (stop func(), err error) {
	var ln net.Listener
	err = netnstest.InNS(h.NS, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, h.Name+"\n")
			c.Close()
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { ln.Close(); wg.Wait() }) }
	n.onClose(stop)
	return stop, nil
}

// Announcement is one ARP or NDP packet seen on the LAN bridge.
type Announcement struct {
	Time   time.Time
	SrcMAC string
	// Op: "garp" (request with sender = target), "arp-reply",
	// "arp-request", "na" (neighbour advertisement), "ns".
	Op   string
	Addr netip.Addr // the address announced, asked for or advertised
}

// Announces reports whether the packet tells the LAN where Addr lives.
func (a Announcement) Announces() bool {
	return a.Op == "garp" || a.Op == "arp-reply" || a.Op == "na"
}

// Capture records ARP and NDP packets on the LAN bridge with tcpdump.
type Capture struct {
	proc *exec.Cmd
	done chan struct{}

	mu     sync.Mutex
	events []Announcement
}

// StartCapture starts tcpdump on br0 and returns once it is listening.
func (n *Network) StartCapture(ctx context.Context) (*Capture, error) {
	cmd := exec.Command("ip", "netns", "exec", n.LAN, "tcpdump", "-i", "br0", "-U", "-l", "-n", "-e", "-tt",
		"arp or (icmp6 and (ip6[40]==135 or ip6[40]==136))")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	c := &Capture{proc: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
	}()
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := parseTcpdump(sc.Text()); ok {
				c.mu.Lock()
				c.events = append(c.events, a)
				c.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	n.onClose(c.Stop)
	select {
	case <-listening:
		return c, nil
	case <-c.done:
		return nil, errors.New("tcpdump exited before listening")
	case <-time.After(5 * time.Second):
		c.Stop()
		return nil, errors.New("tcpdump did not start listening")
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
}

// Stop ends the capture; Events stays readable.
func (c *Capture) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		_ = c.proc.Process.Kill()
		<-c.done
	}
}

// Events returns what was captured so far, in order.
func (c *Capture) Events() []Announcement {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Announcement(nil), c.events...)
}

// Announcers returns, for each MAC that announced addr, the times it did so.
func (c *Capture) Announcers(addr netip.Addr) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, e := range c.Events() {
		if e.Addr == addr && e.Announces() {
			out[e.SrcMAC] = append(out[e.SrcMAC], e.Time)
		}
	}
	return out
}

var (
	tcpdumpHead = regexp.MustCompile(`^(\d+)\.(\d+) ([0-9a-f:]{17}) > [0-9a-f:]{17}, .*?: (.*)$`)
	arpRequest  = regexp.MustCompile(`^Request who-has (\S+) (?:\(\S+\) )?tell (\S+),`)
	arpReply    = regexp.MustCompile(`^Reply (\S+) is-at ([0-9a-f:]{17}),`)
	ndpAdvert   = regexp.MustCompile(`ICMP6, neighbor advertisement, tgt is (\S+),`)
	ndpSolicit  = regexp.MustCompile(`ICMP6, neighbor solicitation, who has (\S+),`)
)

// parseTcpdump reads one line of `tcpdump -n -e -tt` output.
func parseTcpdump(line string) (Announcement, bool) {
	m := tcpdumpHead.FindStringSubmatch(line)
	if m == nil {
		return Announcement{}, false
	}
	sec, _ := strconv.ParseInt(m[1], 10, 64)
	frac := m[2]
	for len(frac) < 9 {
		frac += "0"
	}
	nsec, _ := strconv.ParseInt(frac[:9], 10, 64)
	a := Announcement{Time: time.Unix(sec, nsec), SrcMAC: m[3]}
	body := m[4]
	var addr string
	switch {
	case arpRequest.MatchString(body):
		s := arpRequest.FindStringSubmatch(body)
		addr, a.Op = s[1], "arp-request"
		if s[1] == s[2] {
			a.Op = "garp"
		}
	case arpReply.MatchString(body):
		s := arpReply.FindStringSubmatch(body)
		addr, a.Op = s[1], "arp-reply"
	case ndpAdvert.MatchString(body):
		addr, a.Op = ndpAdvert.FindStringSubmatch(body)[1], "na"
	case ndpSolicit.MatchString(body):
		addr, a.Op = ndpSolicit.FindStringSubmatch(body)[1], "ns"
	default:
		return Announcement{}, false
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return Announcement{}, false
	}
	a.Addr = ip
	return a, true
}

// HTTPGet fetches url from inside h's namespace and returns the status code
// and body.
func (n *Network) HTTPGet(ctx context.Context, h *Host, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, h.NS, network, addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// dialIn dials from inside namespace ns (the socket stays there).
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netnstest.InNS(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
