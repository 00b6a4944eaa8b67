package bgpproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// Command starts the speaker process from the executable at path, its
// stderr the agent's own. The process gets SIGKILL when the agent dies: the
// thread that starts it stays locked to the goroutine that waits for it, as
// Linux sends the parent-death signal when that thread ends.
func Command(path string, args ...string) Starter {
	return func(ctx context.Context) (Conn, error) {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipe: %w", err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			return nil, fmt.Errorf("pipe: %w", err)
		}
		cmd := exec.Command(path, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		c := &execConn{in: inW, out: outR, exited: make(chan struct{})}
		started := make(chan error, 1)
		go c.run(cmd, started)
		err = <-started
		inR.Close() // the child has its own copies
		outW.Close()
		if err != nil {
			inW.Close()
			outR.Close()
			return nil, fmt.Errorf("start %s: %w", path, err)
		}
		return c, nil
	}
}

// execConn is a process started by Command.
type execConn struct {
	in     *os.File
	out    *os.File
	proc   *os.Process
	exited chan struct{}
	err    error // how it ended; set before exited is closed
}

// run starts cmd and waits for it on one locked thread (see Command).
func (c *execConn) run(cmd *exec.Cmd, started chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	c.proc = cmd.Process
	started <- nil
	c.err = cmd.Wait()
	close(c.exited)
}

func (c *execConn) Read(p []byte) (int, error)  { return c.out.Read(p) }
func (c *execConn) Write(p []byte) (int, error) { return c.in.Write(p) }
func (c *execConn) Close() error                { return c.in.Close() }

func (c *execConn) Wait() error {
	<-c.exited
	c.in.Close()
	c.out.Close()
	return c.err
}

func (c *execConn) Kill() {
	_ = c.proc.Kill() // fails only when the process has exited already
}
