package bgpproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// Speaker is the BGP speaker a process serves (pkg/bgp's).
type Speaker interface {
	Run(ctx context.Context) error
	SetRouterID(id netip.Addr) error
	SetPeers(ctx context.Context, peers []bgpspec.Peer) error
	Announce(ctx context.Context, r bgpspec.Route) error
	Withdraw(ctx context.Context, p netip.Prefix) error
	Peers(ctx context.Context) ([]bgpspec.PeerState, error)
	Changes() <-chan struct{}
}

// Serve is the speaker process: it reads the start request from in, builds
// the speaker with newSpeaker, runs it and answers the agent's requests on
// out until the agent asks it to stop, in ends, the agent stays silent for
// Start.Silence or ctx ends. Then the speaker stops (withdrawing every
// route) and Serve returns: nil after a stop the agent asked for, an error
// naming the reason otherwise. The goroutine reading in ends with in.
func Serve(ctx context.Context, in io.Reader, out io.Writer, newSpeaker func(Start) (Speaker, error), clk clock.Clock) error {
	dec := json.NewDecoder(in)
	w := newLineWriter(out)
	var first request
	if err := dec.Decode(&first); err != nil {
		return fmt.Errorf("bgpproc: read the start request: %w", err)
	}
	if first.Op != opStart || first.Start == nil {
		return fmt.Errorf("bgpproc: first request is %q, want %q", first.Op, opStart)
	}
	sp, err := newSpeaker(*first.Start)
	if err != nil {
		return errors.Join(err, w.write(answer(first.ID, err)))
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- sp.Run(runCtx) }()
	if err := w.write(answer(first.ID, nil)); err != nil {
		stop()
		return errors.Join(fmt.Errorf("bgpproc: answer start: %w", err), <-ran)
	}
	s := &server{sp: sp, w: w}
	reason := s.serve(runCtx, dec, ran, first.Start, clk)
	stop()
	err = <-ran
	s.handlers.Wait()
	return errors.Join(reason, err)
}

type server struct {
	sp       Speaker
	w        *lineWriter
	handlers sync.WaitGroup
}

// errStopAsked ends serve when the agent asked for the stop.
var errStopAsked = errors.New("stop asked")

// serve answers requests until a reason to stop; it returns nil when the
// agent asked for it.
func (s *server) serve(ctx context.Context, dec *json.Decoder, ran <-chan error, st *Start, clk clock.Clock) error {
	reqs := make(chan request)
	readErr := make(chan error, 1)
	go readRequests(ctx, dec, reqs, readErr)
	go s.notify(ctx)
	silence := clk.NewTimer()
	defer silence.Stop()
	silence.Reset(clk.Now().Add(st.Silence))
	for {
		select {
		case req := <-reqs:
			silence.Reset(clk.Now().Add(st.Silence))
			if err := s.dispatch(ctx, req); errors.Is(err, errStopAsked) {
				return nil
			}
		case err := <-readErr:
			return fmt.Errorf("bgpproc: the agent's requests ended: %w", err)
		case <-silence.C():
			return fmt.Errorf("bgpproc: nothing heard from the agent for %v", st.Silence)
		case err := <-ran:
			return fmt.Errorf("bgpproc: the speaker stopped: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("bgpproc: %w", context.Cause(ctx))
		}
	}
}

// readRequests decodes requests until in fails (io.EOF when the agent
// closed it) or, after the next one, until ctx ends.
func readRequests(ctx context.Context, dec *json.Decoder, reqs chan<- request, readErr chan<- error) {
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			readErr <- err
			return
		}
		select {
		case reqs <- req:
		case <-ctx.Done():
			return
		}
	}
}

// notify passes the speaker's change signals on until ctx ends.
func (s *server) notify(ctx context.Context) {
	for {
		select {
		case <-s.sp.Changes():
			if err := s.w.write(reply{Changed: true}); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// dispatch answers one request in its own goroutine (the agent waits for
// each answer before its next change, so they keep their order).
func (s *server) dispatch(ctx context.Context, req request) error {
	switch req.Op {
	case opPing:
		return nil
	case opStop:
		return errStopAsked
	}
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		_ = s.w.write(s.answer(ctx, req)) // a failed write ends the reader too
	}()
	return nil
}

// answer applies one request to the speaker.
func (s *server) answer(ctx context.Context, req request) reply {
	switch req.Op {
	case opRouterID:
		return answer(req.ID, s.sp.SetRouterID(req.RouterID))
	case opPeers:
		return answer(req.ID, s.sp.SetPeers(ctx, req.Peers))
	case opAnnounce:
		if req.Route == nil {
			return answer(req.ID, errors.New("bgpproc: announce without a route"))
		}
		return answer(req.ID, s.sp.Announce(ctx, *req.Route))
	case opWithdraw:
		return answer(req.ID, s.sp.Withdraw(ctx, req.Prefix))
	case opState:
		peers, err := s.sp.Peers(ctx)
		rep := answer(req.ID, err)
		rep.Peers = peers
		return rep
	}
	return answer(req.ID, fmt.Errorf("bgpproc: unknown request %q", req.Op))
}

func answer(id uint64, err error) reply {
	r := reply{ID: id}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}
