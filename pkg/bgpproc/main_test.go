package bgpproc

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/vigil-lb/vigil/internal/clock"
)

// helperEnv makes the test binary a speaker process with a fake speaker
// (TestCommand).
const helperEnv = "BGPPROC_TEST_SPEAKER_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		err := Serve(context.Background(), os.Stdin, os.Stdout, func(st Start) (Speaker, error) {
			return newFakeSpeaker(st), nil
		}, clock.Real{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
