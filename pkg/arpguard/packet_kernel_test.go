package arpguard_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/arpguard"
)

// dialARP opens an ARP packet socket on eth0 of namespace ns.
func dialARP(t *testing.T, ns string) *arp.Client {
	t.Helper()
	var c *arp.Client
	err := netnstest.InNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		t.Fatalf("ARP socket on eth0 in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestKernelPacketSocketARPUnaffected checks that the guard leaves alone
// the ARP packets a program writes to a packet socket, as package announce
// does for gratuitous ARP: they do not pass the kernel's ARP output hook.
func TestKernelPacketSocketARPUnaffected(t *testing.T) {
	node, client := lab(t)
	g := arpguard.New(conn(t, node))
	set(t, g, vip)
	defer func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	}()
	tx, rx := dialARP(t, node), dialARP(t, client)
	a := netip.MustParseAddr(vip)
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, tx.HardwareAddr(), a, ethernet.Broadcast, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.WriteTo(p, ethernet.Broadcast); err != nil {
			t.Fatalf("send gratuitous ARP %v: %v", op, err)
		}
		if err := receive(rx, op, a); err != nil {
			t.Errorf("gratuitous ARP %v for %s from a packet socket: %v", op, a, err)
		}
	}
}

// receive reads from c until an ARP packet op with sender IP a arrives,
// for up to two seconds.
func receive(c *arp.Client, op arp.Operation, a netip.Addr) error {
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	for {
		p, _, err := c.Read()
		if err != nil {
			return err
		}
		if p.Operation == op && p.SenderIP == a {
			return nil
		}
	}
}
