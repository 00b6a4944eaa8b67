//go:build linux

package checker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// Prober asks, from the client namespace, who answers for every target
// address: one ARP request (IPv4) or neighbour solicitation (IPv6) per
// address per round, sent and read on raw sockets. The replies that come
// back during a round are that round's answers.
type Prober struct {
	arp  *arp.Client
	ndp  *ndp.Conn
	ifi  *net.Interface
	who  func(net.HardwareAddr) string
	done chan struct{} // closed by Close: readers stop on their next error
	once sync.Once

	mu    sync.Mutex
	round map[netip.Addr][]string
}

// NewProber opens the sockets on ifName inside namespace ns. who names the
// node a MAC belongs to ("" for none: the MAC itself is used).
func NewProber(ns, ifName string, who func(net.HardwareAddr) string) (*Prober, error) {
	p := &Prober{who: who, round: map[netip.Addr][]string{}, done: make(chan struct{})}
	err := netnstest.InNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		p.ifi = ifi
		if p.arp, err = arp.Dial(ifi); err != nil {
			return fmt.Errorf("ARP socket: %w", err)
		}
		// The NDP socket names the interface by index: writes happen on
		// threads outside ns, where Go would resolve the name "eth0" to
		// another namespace's interface.
		byIndex := *ifi
		byIndex.Name = strconv.Itoa(ifi.Index)
		if p.ndp, _, err = ndp.Listen(&byIndex, ndp.LinkLocal); err != nil {
			return fmt.Errorf("NDP socket: %w", err)
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
		return p.ndp.SetICMPFilter(&f)
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("prober in %s: %w", ns, err)
	}
	return p, nil
}

// Close closes the sockets.
func (p *Prober) Close() {
	p.once.Do(func() { close(p.done) })
	if p.arp != nil {
		p.arp.Close()
	}
	if p.ndp != nil {
		p.ndp.Close()
	}
}

// Run probes targets() every interval until ctx ends, feeding c.Answers
// with each finished round.
func (p *Prober) Run(ctx context.Context, c *Checker, interval time.Duration, targets func() []netip.Addr) error {
	go p.readARP()
	go p.readNDP()
	defer p.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	for {
		p.send(targets())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p.mu.Lock()
		round := p.round
		p.round = map[netip.Addr][]string{}
		p.mu.Unlock()
		c.Answers(start, answerers(round, p.who))
		start = time.Now()
	}
}

func (p *Prober) send(targets []netip.Addr) {
	for _, a := range targets {
		if a.Is4() {
			_ = p.arp.Request(a)
			continue
		}
		p.solicit(a)
	}
}

func (p *Prober) solicit(a netip.Addr) {
	group, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	m := &ndp.NeighborSolicitation{TargetAddress: a, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: p.ifi.HardwareAddr},
	}}
	_ = p.ndp.WriteTo(m, nil, group)
}

// note records that mac answered for a in this round. The MAC is named
// only at the end of the round (answerers), once per distinct MAC: a DHCP
// Service's macvlan has the same MAC on whichever node holds it, so naming
// each reply as it came could give one MAC two names in a round when the
// MAC map moved from the previous holder to the new one in between.
func (p *Prober) note(a netip.Addr, mac net.HardwareAddr) {
	p.mu.Lock()
	p.round[a] = append(p.round[a], mac.String())
	p.mu.Unlock()
}

// answerers names the distinct MACs that answered for each address (a MAC
// no node has is named by itself).
func answerers(round map[netip.Addr][]string, who func(net.HardwareAddr) string) map[netip.Addr][]string {
	out := make(map[netip.Addr][]string, len(round))
	for a, macs := range round {
		slices.Sort(macs)
		for _, m := range slices.Compact(macs) {
			name := m
			if hw, err := net.ParseMAC(m); err == nil && who(hw) != "" {
				name = who(hw)
			}
			out[a] = append(out[a], name)
		}
	}
	return out
}

func (p *Prober) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readARP records ARP replies addressed to the client (gratuitous ARPs are
// not answers).
func (p *Prober) readARP() {
	self := p.arp.HardwareAddr().String()
	for {
		pkt, _, err := p.arp.Read()
		if err != nil && p.closed() {
			return
		}
		if err != nil || pkt.Operation != arp.OperationReply || pkt.TargetHardwareAddr.String() != self {
			continue
		}
		p.note(pkt.SenderIP, pkt.SenderHardwareAddr)
	}
}

// readNDP records solicited neighbour advertisements.
func (p *Prober) readNDP() {
	for {
		m, _, _, err := p.ndp.ReadFrom()
		if err != nil && p.closed() {
			return
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if err != nil || !ok || !na.Solicited {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				p.note(na.TargetAddress, lla.Addr)
			}
		}
	}
}
