package peering

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// Sessions takes the peers this node must have (pkg/bgp's Speaker, through
// a mapping the caller provides).
type Sessions interface {
	SetPeers(ctx context.Context, peers []lbconfig.Peer) error
}

// Source gives the current configuration from objects (crdconfig).
type Source interface {
	Config() lbconfig.Config
}

// Config is the controller's own configuration.
type Config struct {
	Static     []lbconfig.Peer                                      // from the environment: always peered
	NodeLabels func(ctx context.Context) (map[string]string, error) // this node's labels
	Every      time.Duration                                        // re-read labels this often (default 30s)
	// LabelsChanged is called (it must only enqueue) when this node's
	// labels are first read or change.
	LabelsChanged func()
	Clock         clock.Clock
	Log           *slog.Logger
}

// Controller decides this node's peers.
type Controller struct {
	cfg  Config
	src  Source // nil: environment peers only
	ses  Sessions
	kick chan struct{}
	last []lbconfig.Peer
	set  bool

	mu     sync.Mutex
	labels map[string]string // this node's, as last read
}

// New returns a controller; Changed asks it to decide again.
func New(cfg Config, src Source, ses Sessions) *Controller {
	if cfg.Every == 0 {
		cfg.Every = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Controller{cfg: cfg, src: src, ses: ses, kick: make(chan struct{}, 1)}
}

// Changed is the configuration source's change hook: it only signals.
func (c *Controller) Changed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run decides now, on every change and every Config.Every, until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	t := c.cfg.Clock.NewTimer()
	defer t.Stop()
	for {
		c.sync(ctx)
		t.Reset(c.cfg.Clock.Now().Add(c.cfg.Every))
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-t.C():
		}
	}
}

// sync sets the sessions when the wanted peers changed.
func (c *Controller) sync(ctx context.Context) {
	labels, err := c.cfg.NodeLabels(ctx)
	if err != nil {
		c.cfg.Log.Warn("cannot read this node's labels; keeping the BGP peers as they are", "err", err)
		return
	}
	c.mu.Lock()
	changed := c.labels == nil || !reflect.DeepEqual(c.labels, labels)
	c.labels = labels
	c.mu.Unlock()
	if changed && c.cfg.LabelsChanged != nil {
		c.cfg.LabelsChanged()
	}
	var objs []lbconfig.Peer
	if c.src != nil {
		objs = c.src.Config().Peers
	}
	want := Select(c.cfg.Static, objs, labels, c.cfg.Log)
	if c.set && reflect.DeepEqual(want, c.last) {
		return
	}
	if err := c.ses.SetPeers(ctx, want); err != nil {
		c.cfg.Log.Warn("setting BGP peers", "err", err)
		return
	}
	c.last, c.set = want, true
	c.cfg.Log.Info("BGP peers", "count", len(want))
}

// NodeLabels are this node's labels as last read (nil before the first
// read).
func (c *Controller) NodeLabels() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.labels
}

// Select is every static peer plus each object peer that selects a node
// with these labels; an object peer with the address of one already listed
// is left out (logged): the environment wins, then the first object.
func Select(static, objs []lbconfig.Peer, labels map[string]string, log *slog.Logger) []lbconfig.Peer {
	out := append([]lbconfig.Peer(nil), static...)
	seen := map[netip.Addr]string{}
	for _, p := range static {
		seen[p.Address] = p.Name
	}
	for _, p := range objs {
		if !p.SelectsNode(labels) {
			continue
		}
		if other, dup := seen[p.Address]; dup {
			log.Warn("BGP peer left out: another peer has its address", "peer", p.Name, "address", p.Address, "kept", other)
			continue
		}
		seen[p.Address] = p.Name
		out = append(out, p)
	}
	return out
}
