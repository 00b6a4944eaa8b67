package upnp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// Mapping is one port mapping on a gateway: traffic to the gateway's
// external address on ExternalPort is forwarded to Internal.
type Mapping struct {
	Protocol     string // "TCP" or "UDP"
	ExternalPort uint16
	Internal     netip.AddrPort // the VIP and the Service port
	Description  string
	// Lease is how long the gateway keeps the mapping unless it is renewed;
	// it is sent in whole seconds, rounded up. 0 asks for a permanent
	// mapping, which outlives a crash of whoever made it: avoid it.
	Lease time.Duration
}

// Client is what Manager needs from a gateway. *Gateway implements it.
type Client interface {
	ExternalIP(ctx context.Context) (netip.Addr, error)
	Add(ctx context.Context, m Mapping) error
	Delete(ctx context.Context, protocol string, externalPort uint16) error
}

// UPnP error codes (UPnP IGD WANIPConnection:2 §2.5) that change what the
// package does.
const (
	CodeNoSuchEntry         = 714 // DeletePortMapping of a mapping that does not exist
	CodeConflict            = 718 // the port is mapped to another client (or, in miniupnpd's secure mode, the client is not the requester)
	CodeOnlyPermanentLeases = 725 // the gateway refuses leases other than 0
	CodeActionNotAuthorized = 606 // the gateway refuses the request (policy, secure mode)
)

const (
	maxDescriptionBytes       = 1 << 20
	defaultDialTimeout        = 5 * time.Second
	defaultMaxResponseHeaders = 64 << 10
)

// Error is a UPnP error the gateway answered with (a SOAP fault). An Error
// means the gateway is there and refused the request; any other error from
// a Gateway is a transport or protocol failure.
type Error struct {
	Action      string // SOAP action, e.g. AddPortMapping
	Code        int    // UPnP error code, e.g. 718; 0 when the fault carried none
	Description string // the gateway's text, e.g. ConflictInMappingEntry
}

func (e *Error) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("%s refused: %s", e.Action, e.Description)
	}
	return fmt.Sprintf("%s refused: UPnP error %d (%s)", e.Action, e.Code, e.Description)
}

// ErrorCode returns the UPnP error code in err's chain (0 when there is none).
func ErrorCode(err error) int {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Code
	}
	return 0
}

// soapError turns goupnp's SOAP fault into an *Error; other errors pass.
func soapError(action string, err error) error {
	var f *soap.SOAPFaultError
	if !errors.As(err, &f) {
		return err
	}
	e := &Error{Action: action, Code: f.Detail.UPnPError.Errorcode, Description: strings.TrimSpace(f.Detail.UPnPError.ErrorDescription)}
	if e.Description == "" {
		e.Description = strings.TrimSpace(f.FaultString)
	}
	return e
}

// wanConn is the part of goupnp's generated WANIPConnection:1/2 and
// WANPPPConnection:1 clients that a Gateway uses.
type wanConn interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string, internalPort uint16, internalClient string, enabled bool, description string, leaseSeconds uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
}

// Gateway is one discovered IGD control point. Every request it sends
// originates from the local address it was discovered with, so a gateway in
// secure mode (miniupnpd's secure_mode) accepts mappings to that address.
type Gateway struct {
	location string
	local    netip.Addr
	service  string
	conn     wanConn
}

// URL is the gateway's root description URL (the SSDP LOCATION).
func (g *Gateway) URL() string { return g.location }

// Local is the address requests to the gateway come from.
func (g *Gateway) Local() netip.Addr { return g.local }

// Service is the URN of the WAN connection service in use, e.g.
// urn:schemas-upnp-org:service:WANIPConnection:2.
func (g *Gateway) Service() string { return g.service }

// ExternalIP asks the gateway for its external address. Private and
// reserved addresses are returned as they are: a gateway behind another NAT
// still forwards.
func (g *Gateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	s, err := g.conn.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("upnp: external address of %s: %w", g.location, soapError("GetExternalIPAddress", err))
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("upnp: external address of %s: %w", g.location, err)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("upnp: %s has no external address (%s)", g.location, ip)
	}
	return ip, nil
}

// Add creates or renews a mapping. A gateway that only supports permanent
// mappings (UPnP error 725) gets the same request with lease 0.
func (g *Gateway) Add(ctx context.Context, m Mapping) error {
	proto, err := normProtocol(m.Protocol)
	if err != nil {
		return err
	}
	if m.Lease < 0 {
		return fmt.Errorf("upnp: negative lease %v", m.Lease)
	}
	if !m.Internal.IsValid() {
		return errors.New("upnp: mapping without an internal address")
	}
	lease := leaseSeconds(m.Lease)
	add := func(lease uint32) error {
		return soapError("AddPortMapping", g.conn.AddPortMappingCtx(ctx, "", m.ExternalPort, proto,
			m.Internal.Port(), m.Internal.Addr().Unmap().String(), true, m.Description, lease))
	}
	err = add(lease)
	if lease != 0 && ErrorCode(err) == CodeOnlyPermanentLeases {
		err = add(0)
	}
	if err != nil {
		return fmt.Errorf("upnp: map %s %d to %s on %s: %w", proto, m.ExternalPort, m.Internal, g.location, err)
	}
	return nil
}

// Delete removes a mapping. Deleting a mapping that does not exist is not
// an error.
func (g *Gateway) Delete(ctx context.Context, protocol string, externalPort uint16) error {
	proto, err := normProtocol(protocol)
	if err != nil {
		return err
	}
	err = soapError("DeletePortMapping", g.conn.DeletePortMappingCtx(ctx, "", externalPort, proto))
	if err != nil && ErrorCode(err) != CodeNoSuchEntry {
		return fmt.Errorf("upnp: delete %s %d on %s: %w", proto, externalPort, g.location, err)
	}
	return nil
}

func normProtocol(p string) (string, error) {
	switch up := strings.ToUpper(p); up {
	case "TCP", "UDP":
		return up, nil
	}
	return "", fmt.Errorf("upnp: protocol %q is neither TCP nor UDP", p)
}

func leaseSeconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// httpClient makes the HTTP client for one local address: every connection
// is bound to local and opened through open; no proxy; one request per
// connection, so no idle connection (and no goroutine) outlives a request.
func httpClient(local netip.Addr, open func(func() error) error) *http.Client {
	d := &net.Dialer{Timeout: defaultDialTimeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = open(func() (err error) {
					c, err = d.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: defaultMaxResponseHeaders,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newGateway reads the root description at location and picks its WAN
// connection service: WANIPConnection:2, then WANIPConnection:1, then
// WANPPPConnection:1.
func newGateway(ctx context.Context, hc *http.Client, location string, local netip.Addr) (*Gateway, error) {
	loc, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("upnp: bad gateway location %q: %w", location, err)
	}
	if loc.Scheme != "http" {
		return nil, fmt.Errorf("upnp: gateway location %q is not http", location)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, fmt.Errorf("upnp: gateway description %s: %w", location, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upnp: gateway description: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upnp: gateway description %s: HTTP %s", location, resp.Status)
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(io.LimitReader(resp.Body, maxDescriptionBytes))
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("upnp: gateway description %s: %w", location, err)
	}
	base := loc
	if root.URLBaseStr != "" {
		if base, err = url.Parse(root.URLBaseStr); err != nil {
			return nil, fmt.Errorf("upnp: gateway description %s: URLBase: %w", location, err)
		}
	}
	root.SetURLBase(base)
	service, conn, ok := wanService(root, loc, hc)
	if !ok {
		return nil, fmt.Errorf("upnp: %s (%s) has no WANIPConnection or WANPPPConnection service", location, root.Device.FriendlyName)
	}
	return &Gateway{location: location, local: local, service: service, conn: conn}, nil
}

// wanService picks the device's WAN connection service, best first:
// WANIPConnection:2, WANIPConnection:1, WANPPPConnection:1. Its SOAP
// requests go through hc.
func wanService(root *goupnp.RootDevice, loc *url.URL, hc *http.Client) (string, wanConn, bool) {
	if cs, _ := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); len(cs) > 0 {
		cs[0].SOAPClient.HTTPClient = *hc
		return internetgateway2.URN_WANIPConnection_2, cs[0], true
	}
	if cs, _ := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); len(cs) > 0 {
		cs[0].SOAPClient.HTTPClient = *hc
		return internetgateway2.URN_WANIPConnection_1, cs[0], true
	}
	if cs, _ := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); len(cs) > 0 {
		cs[0].SOAPClient.HTTPClient = *hc
		return internetgateway2.URN_WANPPPConnection_1, cs[0], true
	}
	return "", nil, false
}
