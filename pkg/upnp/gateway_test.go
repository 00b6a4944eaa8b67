package upnp

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/huin/goupnp/dcps/internetgateway2"
)

// fakeIGD is an Internet Gateway Device served in memory (an
// http.RoundTripper: no socket is opened).
type fakeIGD struct {
	services []string // service types in the description, in order
	urlBase  string   // URLBase element ("" = none)
	ip       string   // GetExternalIPAddress answer
	fault    map[string]int
	// permanentOnly answers AddPortMapping with a non-zero lease with 725.
	permanentOnly bool
	status        int // when set, every SOAP answer is this HTTP status with no body
	requests      []string
}

func (f *fakeIGD) RoundTrip(req *http.Request) (*http.Response, error) {
	reply := func(status int, body string) (*http.Response, error) {
		return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
			Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req}, nil
	}
	if req.Method == http.MethodGet {
		if req.URL.Path != "/rootDesc.xml" {
			return reply(http.StatusNotFound, "")
		}
		return reply(http.StatusOK, f.description())
	}
	// goupnp sets the header without canonicalizing its name.
	action := strings.Trim(strings.Join(req.Header["SOAPACTION"], ""), `"`)
	ns, name, _ := strings.Cut(action, "#")
	args := soapArgs(req.Body)
	f.requests = append(f.requests, fmt.Sprintf("%s %s %s %s", req.URL, ns, name, args))
	if f.status != 0 {
		return reply(f.status, "")
	}
	code := f.fault[name]
	if name == "AddPortMapping" && f.permanentOnly && !strings.HasSuffix(args, "NewLeaseDuration=0") {
		code = CodeOnlyPermanentLeases
	}
	if code != 0 {
		return reply(http.StatusInternalServerError, fmt.Sprintf(`<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>Error%d</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`, code, code))
	}
	out := ""
	if name == "GetExternalIPAddress" {
		out = "<NewExternalIPAddress>" + f.ip + "</NewExternalIPAddress>"
	}
	return reply(http.StatusOK, fmt.Sprintf(`<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:%sResponse xmlns:u="%s">%s</u:%sResponse></s:Body></s:Envelope>`, name, ns, out, name))
}

// soapArgs renders a SOAP request's arguments as "Name=value Name=value".
func soapArgs(body io.Reader) string {
	dec := xml.NewDecoder(body)
	var out []string
	depth, name := 0, ""
	for {
		tok, err := dec.Token()
		if err != nil {
			return strings.Join(out, " ")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			name = t.Name.Local
			if depth == 4 {
				out = append(out, name+"=")
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 4 {
				out[len(out)-1] += string(t)
			}
		}
	}
}

func (f *fakeIGD) description() string {
	var svcs strings.Builder
	for i, s := range f.services {
		fmt.Fprintf(&svcs, "<service><serviceType>%s</serviceType><serviceId>urn:upnp-org:serviceId:Conn%d</serviceId><SCPDURL>/scpd%d.xml</SCPDURL><controlURL>ctl/%d</controlURL><eventSubURL>/evt/%d</eventSubURL></service>", s, i, i, i, i)
	}
	base := ""
	if f.urlBase != "" {
		base = "<URLBase>" + f.urlBase + "</URLBase>"
	}
	return `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>` + base + `
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><friendlyName>fake router</friendlyName>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
<serviceList>` + svcs.String() + `</serviceList></device></deviceList></device></deviceList></device></root>`
}

const (
	location = "http://198.18.0.1:5000/rootDesc.xml"
	urnIP2   = internetgateway2.URN_WANIPConnection_2
	urnIP1   = internetgateway2.URN_WANIPConnection_1
	urnPPP1  = internetgateway2.URN_WANPPPConnection_1
)

func gatewayFor(t *testing.T, f *fakeIGD) *Gateway {
	t.Helper()
	g, err := newGateway(context.Background(), &http.Client{Transport: f}, location, vip1)
	if err != nil {
		t.Fatalf("newGateway: %v", err)
	}
	return g
}

func TestNewGatewayPicksService(t *testing.T) {
	tests := []struct {
		name     string
		igd      fakeIGD
		want     string // service
		wantCtl  string // control URL the requests go to
		wantErr  string
		location string
	}{
		{name: "IGDv2 prefers WANIPConnection:2", igd: fakeIGD{services: []string{urnPPP1, urnIP1, urnIP2}}, want: urnIP2, wantCtl: "http://198.18.0.1:5000/ctl/2"},
		{name: "WANIPConnection:1", igd: fakeIGD{services: []string{urnPPP1, urnIP1}}, want: urnIP1, wantCtl: "http://198.18.0.1:5000/ctl/1"},
		{name: "WANPPPConnection:1", igd: fakeIGD{services: []string{"urn:schemas-upnp-org:service:Layer3Forwarding:1", urnPPP1}}, want: urnPPP1, wantCtl: "http://198.18.0.1:5000/ctl/1"},
		{name: "URLBase", igd: fakeIGD{services: []string{urnIP1}, urlBase: "http://198.18.0.1:5000/base/"}, want: urnIP1, wantCtl: "http://198.18.0.1:5000/ctl/0"},
		{name: "no WAN connection", igd: fakeIGD{services: []string{"urn:schemas-upnp-org:service:Layer3Forwarding:1"}},
			wantErr: "upnp: http://198.18.0.1:5000/rootDesc.xml (fake router) has no WANIPConnection or WANPPPConnection service"},
		{name: "description missing", igd: fakeIGD{}, location: "http://198.18.0.1:5000/other.xml",
			wantErr: "upnp: gateway description http://198.18.0.1:5000/other.xml: HTTP 404 Not Found"},
		{name: "not http", igd: fakeIGD{}, location: "https://198.18.0.1:5000/rootDesc.xml",
			wantErr: `upnp: gateway location "https://198.18.0.1:5000/rootDesc.xml" is not http`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := location
			if tt.location != "" {
				loc = tt.location
			}
			g, err := newGateway(context.Background(), &http.Client{Transport: &tt.igd}, loc, vip1)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("newGateway = %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.Service() != tt.want || g.URL() != loc || g.Local() != vip1 {
				t.Errorf("gateway = %s %s %s, want %s %s %s", g.Service(), g.URL(), g.Local(), tt.want, loc, vip1)
			}
			tt.igd.ip = "198.19.0.1"
			if _, err := g.ExternalIP(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := tt.igd.requests[0]; !strings.HasPrefix(got, tt.wantCtl+" "+tt.want+" GetExternalIPAddress") {
				t.Errorf("request = %q, want it to %s", got, tt.wantCtl)
			}
		})
	}
}

func TestGatewayRequests(t *testing.T) {
	m := Mapping{Protocol: "tcp", ExternalPort: 8080, Internal: netip.MustParseAddrPort("198.18.0.150:80"), Description: "vigil default/web", Lease: 90*time.Minute + time.Millisecond}
	ctl := "http://198.18.0.1:5000/ctl/0 " + urnIP2 + " "
	tests := []struct {
		name    string
		igd     fakeIGD
		do      func(g *Gateway) error
		want    []string
		wantErr string
		code    int
	}{
		{
			name: "add",
			do:   func(g *Gateway) error { return g.Add(context.Background(), m) },
			want: []string{ctl + "AddPortMapping NewRemoteHost= NewExternalPort=8080 NewProtocol=TCP NewInternalPort=80 NewInternalClient=198.18.0.150 NewEnabled=1 NewPortMappingDescription=vigil default/web NewLeaseDuration=5401"},
		},
		{
			name: "add to a gateway that only takes permanent leases",
			igd:  fakeIGD{permanentOnly: true},
			do:   func(g *Gateway) error { return g.Add(context.Background(), m) },
			want: []string{
				ctl + "AddPortMapping NewRemoteHost= NewExternalPort=8080 NewProtocol=TCP NewInternalPort=80 NewInternalClient=198.18.0.150 NewEnabled=1 NewPortMappingDescription=vigil default/web NewLeaseDuration=5401",
				ctl + "AddPortMapping NewRemoteHost= NewExternalPort=8080 NewProtocol=TCP NewInternalPort=80 NewInternalClient=198.18.0.150 NewEnabled=1 NewPortMappingDescription=vigil default/web NewLeaseDuration=0",
			},
		},
		{
			name:    "add refused",
			igd:     fakeIGD{fault: map[string]int{"AddPortMapping": CodeConflict}},
			do:      func(g *Gateway) error { return g.Add(context.Background(), m) },
			want:    []string{ctl + "AddPortMapping NewRemoteHost= NewExternalPort=8080 NewProtocol=TCP NewInternalPort=80 NewInternalClient=198.18.0.150 NewEnabled=1 NewPortMappingDescription=vigil default/web NewLeaseDuration=5401"},
			wantErr: "upnp: map TCP 8080 to 198.18.0.150:80 on http://198.18.0.1:5000/rootDesc.xml: AddPortMapping refused: UPnP error 718 (Error718)",
			code:    CodeConflict,
		},
		{
			name: "add with a bad protocol sends nothing",
			do: func(g *Gateway) error {
				return g.Add(context.Background(), Mapping{Protocol: "SCTP", ExternalPort: 1, Internal: m.Internal})
			},
			wantErr: `upnp: protocol "SCTP" is neither TCP nor UDP`,
		},
		{
			name: "add with a negative lease sends nothing",
			do: func(g *Gateway) error {
				return g.Add(context.Background(), Mapping{Protocol: "UDP", ExternalPort: 1, Internal: m.Internal, Lease: -1})
			},
			wantErr: `upnp: negative lease -1ns`,
		},
		{
			name:    "add without an internal address sends nothing",
			do:      func(g *Gateway) error { return g.Add(context.Background(), Mapping{Protocol: "UDP", ExternalPort: 1}) },
			wantErr: `upnp: mapping without an internal address`,
		},
		{
			name:    "add with an HTTP error",
			igd:     fakeIGD{status: http.StatusServiceUnavailable},
			do:      func(g *Gateway) error { return g.Add(context.Background(), m) },
			want:    []string{ctl + "AddPortMapping NewRemoteHost= NewExternalPort=8080 NewProtocol=TCP NewInternalPort=80 NewInternalClient=198.18.0.150 NewEnabled=1 NewPortMappingDescription=vigil default/web NewLeaseDuration=5401"},
			wantErr: "upnp: map TCP 8080 to 198.18.0.150:80 on http://198.18.0.1:5000/rootDesc.xml: goupnp: SOAP request got HTTP 503 Service Unavailable",
		},
		{
			name: "delete",
			do:   func(g *Gateway) error { return g.Delete(context.Background(), "udp", 53) },
			want: []string{ctl + "DeletePortMapping NewRemoteHost= NewExternalPort=53 NewProtocol=UDP"},
		},
		{
			name: "delete of a mapping that is not there",
			igd:  fakeIGD{fault: map[string]int{"DeletePortMapping": CodeNoSuchEntry}},
			do:   func(g *Gateway) error { return g.Delete(context.Background(), "UDP", 53) },
			want: []string{ctl + "DeletePortMapping NewRemoteHost= NewExternalPort=53 NewProtocol=UDP"},
		},
		{
			name:    "delete refused",
			igd:     fakeIGD{fault: map[string]int{"DeletePortMapping": CodeActionNotAuthorized}},
			do:      func(g *Gateway) error { return g.Delete(context.Background(), "UDP", 53) },
			want:    []string{ctl + "DeletePortMapping NewRemoteHost= NewExternalPort=53 NewProtocol=UDP"},
			wantErr: "upnp: delete UDP 53 on http://198.18.0.1:5000/rootDesc.xml: DeletePortMapping refused: UPnP error 606 (Error606)",
			code:    CodeActionNotAuthorized,
		},
		{
			name:    "delete with a bad protocol",
			do:      func(g *Gateway) error { return g.Delete(context.Background(), "ICMP", 53) },
			wantErr: `upnp: protocol "ICMP" is neither TCP nor UDP`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.igd.services = []string{urnIP2}
			g := gatewayFor(t, &tt.igd)
			err := tt.do(g)
			if got := errString(err); got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
			if got := ErrorCode(err); got != tt.code {
				t.Errorf("ErrorCode = %d, want %d", got, tt.code)
			}
			if diff := cmp.Diff(tt.want, tt.igd.requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGatewayExternalIP(t *testing.T) {
	tests := []struct {
		answer  string
		want    netip.Addr
		wantErr string
	}{
		{answer: "198.19.0.1", want: netip.MustParseAddr("198.19.0.1")},
		{answer: " 10.1.2.3 ", want: netip.MustParseAddr("10.1.2.3")}, // private is fine: double NAT still forwards
		{answer: "::ffff:100.64.0.1", want: netip.MustParseAddr("100.64.0.1")},
		{answer: "", wantErr: `upnp: external address of http://198.18.0.1:5000/rootDesc.xml: ParseAddr(""): unable to parse IP`},
		{answer: "0.0.0.0", wantErr: "upnp: http://198.18.0.1:5000/rootDesc.xml has no external address (0.0.0.0)"},
	}
	for _, tt := range tests {
		t.Run(tt.answer, func(t *testing.T) {
			g := gatewayFor(t, &fakeIGD{services: []string{urnIP1}, ip: tt.answer})
			got, err := g.ExternalIP(context.Background())
			if errString(err) != tt.wantErr || got != tt.want {
				t.Errorf("ExternalIP = %v, %v; want %v, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
	g := gatewayFor(t, &fakeIGD{services: []string{urnIP1}, fault: map[string]int{"GetExternalIPAddress": 501}})
	if _, err := g.ExternalIP(context.Background()); ErrorCode(err) != 501 {
		t.Errorf("ExternalIP with a fault = %v, want UPnP error 501", err)
	}
}

func TestParseSearchResponse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "miniupnpd", in: "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:service:WANIPConnection:2\r\nUSN: uuid:x::urn:schemas-upnp-org:service:WANIPConnection:2\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://198.18.0.1:5000/rootDesc.xml\r\n\r\n",
			want: "http://198.18.0.1:5000/rootDesc.xml"},
		{name: "no final empty line", in: "HTTP/1.1 200 OK\r\nLocation: http://192.168.1.1:1900/igd.xml\r\n", want: "http://192.168.1.1:1900/igd.xml"},
		{name: "no location", in: "HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"},
		{name: "not OK", in: "HTTP/1.1 500 Internal Server Error\r\nLOCATION: http://198.18.0.1:5000/rootDesc.xml\r\n\r\n"},
		{name: "a search request", in: string(searchRequest(urnIP2))},
		{name: "garbage", in: "\x00\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseSearchResponse([]byte(tt.in))
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("parseSearchResponse = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestSearchRequest(t *testing.T) {
	got := string(searchRequest(urnIP1))
	want := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\n\r\n"
	if got != want {
		t.Errorf("searchRequest = %q, want %q", got, want)
	}
}

func TestLeaseSeconds(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want uint32
	}{
		{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {time.Hour, 3600},
		{time.Duration(math.MaxInt64), math.MaxUint32},
	} {
		if got := leaseSeconds(tt.in); got != tt.want {
			t.Errorf("leaseSeconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// Discover refuses what it cannot search from, without opening a socket.
func TestDiscoverIPv6(t *testing.T) {
	_, err := Discover(context.Background(), netip.MustParseAddr("fd00:1ab::150"))
	if err == nil || !strings.Contains(err.Error(), "needs an IPv4 address") {
		t.Errorf("Discover from IPv6 = %v, want an IPv4-only error", err)
	}
}

// The HTTP client binds to the local address and opens every connection
// through the hook.
func TestHTTPClientUsesHook(t *testing.T) {
	var opened int
	hc := httpClient(vip1, func(open func() error) error {
		opened++
		return fmt.Errorf("refused by the test")
	})
	tr := hc.Transport.(*http.Transport)
	if tr.Proxy != nil || !tr.DisableKeepAlives {
		t.Errorf("transport: proxy set or keep-alives on")
	}
	req, _ := http.NewRequest(http.MethodGet, location, nil)
	_, err := hc.Do(req)
	if err == nil || !strings.Contains(err.Error(), "refused by the test") || opened != 1 {
		t.Errorf("Do = %v after %d opens, want the hook's error after 1", err, opened)
	}
}
