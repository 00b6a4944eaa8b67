package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// Host is one network namespace attached to the lab LAN (or, for the WAN
// host, to the gateway's external side).
type Host struct {
	Name string // node1, client, gw, wan …
	NS   string // network namespace name
	MAC  net.HardwareAddr
	IPv4 netip.Addr
	IPv6 netip.Addr // zero for the WAN host
}

// Options shapes a lab network.
type Options struct {
	Nodes int // node namespaces (default 3)
	// APIPort, when set, starts a forwarder in every node namespace that
	// listens on 127.0.0.1:6443 and relays to 127.0.0.1:APIPort on the root
	// loopback (the lab control plane).
	APIPort int
}

// Network is one lab topology: a LAN namespace with bridge br0, nodes, a
// client, a gateway (LAN 198.18.0.1, WAN 198.19.0.1) and a WAN host.
type Network struct {
	ID  string
	Dir string // run directory for logs, leases and configs
	// StateDir holds the agents' journals (vigil_state_file): on tmpfs
	// (/dev/shm) when there is one, as /run/vigil is on a node, for a
	// journal on a disk costs each new VIP milliseconds of open and rename
	// that no node pays; otherwise Dir.
	StateDir string
	LAN      string // namespace holding the bridge
	Nodes    []*Host
	Client   *Host
	Gateway  *Host
	WAN      *Host

	mu         sync.Mutex
	namespaces []string
	procs      []*Proc
	closers    []func()
	upnpConf   string // miniupnpd's configuration once StartUPnP ran
}

// Lab addressing.
var (
	LANPrefix4 = netip.MustParsePrefix("198.18.0.0/24")
	LANPrefix6 = netip.MustParsePrefix("fd00:1ab::/64")
	WANPrefix4 = netip.MustParsePrefix("198.19.0.0/24")
)

// NewNetwork builds the topology. Close removes every namespace and process
// it made, also when NewNetwork itself fails half-way.
func NewNetwork(ctx context.Context, dir string, opts Options) (n *Network, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes > 12 {
		return nil, errors.New("lab: at most 12 nodes")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab needs iproute2: %w", err)
	}
	if _, err := SweepStale(ctx); err != nil {
		return nil, fmt.Errorf("sweep stale lab namespaces: %w", err)
	}
	rnd := make([]byte, 2)
	_, _ = rand.Read(rnd)
	id := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(rnd))
	if dir, err = os.MkdirTemp(dir, "net-"); err != nil {
		return nil, err
	}
	n = &Network{ID: id, Dir: dir, StateDir: dir}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := n.tmpfsState(); err != nil {
		return nil, err
	}
	ns := func(role string) string { return nsPrefix + id + "-" + role }

	n.LAN = ns("lan")
	if err := n.addNamespace(ctx, n.LAN); err != nil {
		return nil, err
	}
	if err := writeSysctls(n.LAN, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, n.LAN,
		"link set lo up",
		"link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
		"link set br0 up",
	); err != nil {
		return nil, err
	}

	n.Gateway = &Host{Name: "gw", NS: ns("gw"), MAC: mac(0, 1),
		IPv4: netip.MustParseAddr("198.18.0.1"), IPv6: netip.MustParseAddr("fd00:1ab::1")}
	n.Client = &Host{Name: "client", NS: ns("client"), MAC: mac(0, 2),
		IPv4: netip.MustParseAddr("198.18.0.2"), IPv6: netip.MustParseAddr("fd00:1ab::2")}
	hosts := []*Host{n.Gateway, n.Client}
	for i := 1; i <= opts.Nodes; i++ {
		h := &Host{
			Name: fmt.Sprintf("node%d", i), NS: ns(fmt.Sprintf("node%d", i)), MAC: mac(0, byte(0x10+i)),
			IPv4: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
			IPv6: netip.MustParseAddr(fmt.Sprintf("fd00:1ab::%d", 10+i)),
		}
		n.Nodes = append(n.Nodes, h)
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if err := n.attach(ctx, h); err != nil {
			return nil, fmt.Errorf("attach %s: %w", h.Name, err)
		}
	}
	// Client: accept every gratuitous update at once, so failover tests see
	// the new MAC as soon as it is announced.
	if err := writeSysctls(n.Client.NS, map[string]string{"net/ipv4/neigh/eth0/locktime": "0"}); err != nil {
		return nil, err
	}
	// Nodes: only the interface that owns an address answers ARP for it
	// (a DHCP macvlan's address must not be claimed by the parent eth0).
	for _, h := range n.Nodes {
		if err := writeSysctls(h.NS, map[string]string{
			"net/ipv4/conf/all/arp_ignore":   "1",
			"net/ipv4/conf/all/arp_announce": "2",
		}); err != nil {
			return nil, err
		}
	}
	if err := n.addWAN(ctx, ns("wan")); err != nil {
		return nil, err
	}
	if opts.APIPort != 0 {
		for _, h := range n.Nodes {
			f, err := startForwarder(h.NS, "127.0.0.1:6443", fmt.Sprintf("127.0.0.1:%d", opts.APIPort))
			if err != nil {
				return nil, fmt.Errorf("API forwarder in %s: %w", h.Name, err)
			}
			n.onClose(f.Close)
		}
	}
	return n, nil
}

func mac(a, b byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, a, b} }

func (n *Network) addNamespace(ctx context.Context, name string) error {
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.namespaces = append(n.namespaces, name)
	n.mu.Unlock()
	return nil
}

// attach creates h's namespace and plugs its eth0 into the bridge.
func (n *Network) attach(ctx context.Context, h *Host) error {
	if err := n.addNamespace(ctx, h.NS); err != nil {
		return err
	}
	// Lab addresses never wait for DAD.
	if err := writeSysctls(h.NS, map[string]string{
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
	}); err != nil {
		return err
	}
	port := "p-" + h.Name
	if err := ipBatch(ctx, n.LAN,
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", port, h.NS),
		fmt.Sprintf("link set %s master br0 up", port),
	); err != nil {
		return err
	}
	cmds := []string{
		"link set lo up",
		"link set eth0 address " + h.MAC.String(),
		fmt.Sprintf("addr add %s/24 dev eth0", h.IPv4),
		fmt.Sprintf("addr add %s/64 dev eth0 nodad", h.IPv6),
		"link set eth0 up",
	}
	if h != n.Gateway {
		cmds = append(cmds, "route add default via "+n.Gateway.IPv4.String())
	}
	return ipBatch(ctx, h.NS, cmds...)
}

// addWAN links the gateway's eth1 to a WAN host and turns on forwarding.
func (n *Network) addWAN(ctx context.Context, name string) error {
	n.WAN = &Host{Name: "wan", NS: name, MAC: mac(1, 1), IPv4: netip.MustParseAddr("198.19.0.2")}
	if err := n.addNamespace(ctx, name); err != nil {
		return err
	}
	if err := ipBatch(ctx, n.Gateway.NS,
		"link add eth1 type veth peer name eth0 netns "+name,
		"addr add 198.19.0.1/24 dev eth1",
		"link set eth1 up",
	); err != nil {
		return err
	}
	if err := writeSysctls(n.Gateway.NS, map[string]string{"net/ipv4/ip_forward": "1"}); err != nil {
		return err
	}
	return ipBatch(ctx, name,
		"link set lo up",
		"link set eth0 address "+n.WAN.MAC.String(),
		"addr add 198.19.0.2/24 dev eth0",
		"link set eth0 up",
	)
}

// Node returns the node with the given name (node1 …), or nil.
func (n *Network) Node(name string) *Host {
	for _, h := range n.Nodes {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// HostByMAC names the lab host with that MAC ("" when none).
func (n *Network) HostByMAC(m net.HardwareAddr) string {
	for _, h := range append([]*Host{n.Gateway, n.Client, n.WAN}, n.Nodes...) {
		if h.MAC.String() == m.String() {
			return h.Name
		}
	}
	return ""
}

// Start runs a process inside h's namespace with its output in the run
// directory (name.log). The lab kills it on Close if it is still running.
func (n *Network) Start(h *Host, name string, env []string, argv ...string) (*Proc, error) {
	p, err := startProc(name, h.NS, filepath.Join(n.Dir, name+".log"), env, argv...)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p, nil
}

// Exec runs a command to completion inside h's namespace.
func (n *Network) Exec(ctx context.Context, h *Host, argv ...string) (string, error) {
	return runIn(ctx, h.NS, argv...)
}

// CutAPI drops all traffic between node h and its API forwarder (an
// nftables rule in h's namespace): the node's agent sees the API hang, as in
// a partition, while its LAN keeps working.
func (n *Network) CutAPI(ctx context.Context, h *Host) error {
	return nft(ctx, h.NS, `table inet vigil_lab_cut {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "lo" tcp dport 6443 drop
		oifname "lo" tcp sport 6443 drop
	}
}`)
}

// RestoreAPI undoes CutAPI.
func (n *Network) RestoreAPI(ctx context.Context, h *Host) error {
	_, err := runIn(ctx, h.NS, "nft", "delete", "table", "inet", "vigil_lab_cut")
	return err
}

// CutLAN pulls h's cable: its bridge port goes down, so h's eth0 loses
// carrier (its addresses and routes stay, as on a real node).
func (n *Network) CutLAN(ctx context.Context, h *Host) error {
	return ipBatch(ctx, n.LAN, "link set p-"+h.Name+" down")
}

// RestoreLAN plugs h back in.
func (n *Network) RestoreLAN(ctx context.Context, h *Host) error {
	return ipBatch(ctx, n.LAN, "link set p-"+h.Name+" up")
}

func (n *Network) onClose(f func()) {
	n.mu.Lock()
	n.closers = append(n.closers, f)
	n.mu.Unlock()
}

// Close stops every process and listener of the lab and deletes its
// namespaces. It is safe to call more than once.
func (n *Network) Close() {
	n.mu.Lock()
	procs, closers, namespaces := n.procs, n.closers, n.namespaces
	n.procs, n.closers, n.namespaces = nil, nil, nil
	n.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	for _, p := range procs {
		p.Kill()
	}
	if n.StateDir != n.Dir {
		os.RemoveAll(n.StateDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := deleteNamespace(ctx, namespaces[i]); err != nil {
			fmt.Fprintf(os.Stderr, "lab: delete namespace %s: %v\n", namespaces[i], err)
		}
	}
}

// tmpfsState moves StateDir to a directory of its own on /dev/shm, if the
// machine has it, removed with the network.
func (n *Network) tmpfsState() error {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		return nil // no tmpfs to mirror /run/vigil with: the run directory
	}
	dir, err := os.MkdirTemp("/dev/shm", "vigil-lab-state-")
	if err != nil {
		return fmt.Errorf("lab: state directory on /dev/shm: %w", err)
	}
	n.StateDir = dir // removed by Close, once the agents are gone
	return nil
}

// ipBatch runs ip commands inside namespace ns in one process.
func ipBatch(ctx context.Context, ns string, cmds ...string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nft loads an nftables script inside namespace ns.
func nft(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeSysctls sets /proc/sys values as seen from inside namespace ns.
func writeSysctls(ns string, kv map[string]string) error {
	return netnstest.InNS(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", k, v, ns, err)
			}
		}
		return nil
	})
}

// HostByMACString is HostByMAC for a MAC in text form.
func (n *Network) HostByMACString(mac string) string {
	m, err := net.ParseMAC(mac)
	if err != nil {
		return ""
	}
	return n.HostByMAC(m)
}
