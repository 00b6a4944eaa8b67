package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Speaker is the BGP speaker the agent drives (pkg/bgp's).
type Speaker interface {
	Run(ctx context.Context) error
	SetRouterID(id netip.Addr) error
	SetPeers(ctx context.Context, peers []bgpspec.Peer) error
	Announce(ctx context.Context, r bgpspec.Route) error
	Withdraw(ctx context.Context, p netip.Prefix) error
	Peers(ctx context.Context) ([]bgpspec.PeerState, error)
	Changes() <-chan struct{}
}

// NewSpeaker builds the BGP speaker.
type NewSpeaker func(bgpspec.Config) (Speaker, error)

// program is what a binary brings to the command line.
type program struct {
	// args are the arguments the process was started with (after its
	// name), for the exec into vigil-bgp.
	args []string
	// newSpeaker is nil in vigil's own binary, which links no BGP speaker:
	// a manager asked for BGP becomes vigil-bgp instead (execWithBGP).
	newSpeaker NewSpeaker
}

// Main runs the vigil command line and returns the process exit code;
// newSpeaker is the BGP speaker of the binary (cmd/vigil-bgp), or nil.
func Main(args []string, newSpeaker NewSpeaker) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(program{args: args, newSpeaker: newSpeaker})
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "vigil:", err)
		return 1
	}
	return 0
}

func newRoot(p program) *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Addresses for type: LoadBalancer Services on bare metal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newManagerCommand(p))
	root.AddCommand(newAllocatorCommand())
	root.AddCommand(newManifestCommand())
	root.AddCommand(newStatusCommand())
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print vigil's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
			return err
		},
	})
	return root
}
