package lab

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Versions of the control plane the lab runs. The kube-apiserver minor
// matches the client-go minor vigil is built with.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// ControlPlane is a real etcd + kube-apiserver on the root loopback, with RBAC
// on and client-certificate authentication.
type ControlPlane struct {
	Dir             string // run directory: pki, kubeconfigs, logs
	Host            string // https://127.0.0.1:PORT
	Port            int
	AdminKubeconfig string

	pki       *pki
	etcd      *Proc
	apiserver *Proc
	apiArgv   []string // how the API server was started (RestartAPIServer)
	etcdArgv  []string // how etcd was started (RestartEtcd)
	restarts  int
}

// Binaries returns the directory holding etcd and kube-apiserver, building
// them first if they are not cached. $VIGIL_LAB_BIN overrides the lookup.
func Binaries(ctx context.Context) (string, error) {
	if dir := os.Getenv("VIGIL_LAB_BIN"); dir != "" {
		return dir, checkBinaries(dir)
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "controlplane", "build.sh")
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "KUBE_VERSION="+KubeVersion, "ETCD_VERSION="+EtcdVersion)
	cmd.Stderr = os.Stderr // progress for a cold build
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build control plane: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	return dir, checkBinaries(dir)
}

func checkBinaries(dir string) error {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("control plane binary missing: %w", err)
		}
	}
	// A kubectl built by build.sh (the machine had none) goes on PATH.
	if _, err := exec.LookPath("kubectl"); err != nil {
		if _, err := os.Stat(filepath.Join(dir, "kubectl")); err == nil {
			os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
	}
	return nil
}

// StartControlPlane starts etcd and kube-apiserver with a fresh PKI under a
// new directory in parent. Call Stop to tear it down.
func StartControlPlane(ctx context.Context, parent string) (*ControlPlane, error) {
	bin, err := Binaries(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "controlplane-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			cp.Stop()
		}
	}()
	if cp.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer := ports[0], ports[1]
	cp.Port = ports[2]
	cp.Host = fmt.Sprintf("https://127.0.0.1:%d", cp.Port)

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	cp.etcdArgv = []string{filepath.Join(bin, "etcd"),
		"--name=lab", "--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=lab=" + peerURL,
		"--unsafe-no-fsync", "--log-level=warn"}
	if cp.etcd, err = startProc("etcd", "", filepath.Join(dir, "etcd.log"), nil, cp.etcdArgv...); err != nil {
		return nil, err
	}

	srvCert, srvKey, err := cp.pki.issue("apiserver", pkix.Name{CommonName: "kube-apiserver"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	saPub, saKey, err := cp.pki.serviceAccountKeys()
	if err != nil {
		return nil, err
	}
	cp.apiArgv = []string{filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cp.Port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + srvCert, "--tls-private-key-file=" + srvKey,
		"--client-ca-file=" + cp.pki.path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--api-audiences=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112",
		"--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		"--profiling=false"}
	cp.apiserver, err = startProc("kube-apiserver", "", filepath.Join(dir, "apiserver.log"), nil, cp.apiArgv...)
	if err != nil {
		return nil, err
	}
	if cp.AdminKubeconfig, err = cp.Kubeconfig("admin", "vigil-lab-admin", "system:masters"); err != nil {
		return nil, err
	}
	if err := cp.waitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

// Kubeconfig writes a kubeconfig (file name name.kubeconfig) for a
// client-certificate identity with the given user name and groups, pointing at
// the API server on the root loopback.
func (cp *ControlPlane) Kubeconfig(name, user string, groups ...string) (string, error) {
	return cp.kubeconfig(name, user, cp.Host, groups)
}

// NodeKubeconfig is like Kubeconfig but points at https://127.0.0.1:6443, the
// forwarder inside each node namespace.
func (cp *ControlPlane) NodeKubeconfig(name, user string, groups ...string) (string, error) {
	return cp.kubeconfig(name, user, "https://127.0.0.1:6443", groups)
}

func (cp *ControlPlane) kubeconfig(name, user, server string, groups []string) (string, error) {
	crt, key, err := cp.pki.issue("user-"+name, pkix.Name{CommonName: user, Organization: groups}, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: cp.pki.path("ca.crt")}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: crt, ClientKey: key}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: name}
	cfg.CurrentContext = "lab"
	path := filepath.Join(cp.Dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", err
	}
	return path, nil
}

// RESTConfig loads a kubeconfig written by Kubeconfig.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// Client returns an admin clientset.
func (cp *ControlPlane) Client() (kubernetes.Interface, error) {
	cfg, err := RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	return kubernetes.NewForConfig(cfg)
}

func (cp *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	cfg, err := RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		return err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-cp.etcd.Done():
			return fmt.Errorf("etcd exited: %v\n%s", cp.etcd.Err(), tail(cp.etcd.Log(), 2000))
		case <-cp.apiserver.Done():
			return fmt.Errorf("kube-apiserver exited: %v\n%s", cp.apiserver.Err(), tail(cp.apiserver.Log(), 4000))
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready: %w\n%s", ctx.Err(), tail(cp.apiserver.Log(), 4000))
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
}

// Stop kills the API server and etcd. The run directory is left for logs;
// the caller owns its removal.
func (cp *ControlPlane) Stop() {
	if cp.apiserver != nil {
		cp.apiserver.Stop(5 * time.Second)
	}
	if cp.etcd != nil {
		cp.etcd.Stop(5 * time.Second)
	}
}

// RestartAPIServer stops the API server (SIGTERM) and starts it again with
// the same flags (etcd keeps running), then waits until it is ready. Its log
// continues in apiserver-<n>.log.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	cp.apiserver.Stop(10 * time.Second)
	return cp.StartAPIServer(ctx)
}

// APIServerLog returns the API server's output (for failure messages).
func (cp *ControlPlane) APIServerLog() string { return cp.apiserver.Log() }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// KillAPIServer kills the API server (SIGKILL, as a crashed or upgraded
// control plane does); etcd keeps running. StartAPIServer brings it back.
func (cp *ControlPlane) KillAPIServer() {
	cp.apiserver.Kill()
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after 5 s); etcd
// keeps running. StartAPIServer brings it back on the same port.
func (cp *ControlPlane) StopAPIServer() {
	cp.apiserver.Stop(5 * time.Second)
}

// StartAPIServer starts the API server again with the same flags after
// KillAPIServer or StopAPIServer and waits until it is ready. Its log
// continues in apiserver-<n>.log.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.restarts++
	p, err := startProc("kube-apiserver", "", filepath.Join(cp.Dir, fmt.Sprintf("apiserver-%d.log", cp.restarts)), nil, cp.apiArgv...)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	cp.apiserver = p
	return cp.waitReady(ctx, 60*time.Second)
}

// StopEtcd stops etcd (SIGSTOP) while the API server stays up: every read
// and write that needs storage hangs until ContinueEtcd.
func (cp *ControlPlane) StopEtcd() error { return cp.etcd.Signal(syscall.SIGSTOP) }

// ContinueEtcd resumes etcd after StopEtcd.
func (cp *ControlPlane) ContinueEtcd() error { return cp.etcd.Signal(syscall.SIGCONT) }

// RestartEtcd stops etcd and starts it again on its data directory, then
// waits until the API server is ready again.
func (cp *ControlPlane) RestartEtcd(ctx context.Context) error {
	cp.etcd.Stop(5 * time.Second)
	p, err := startProc("etcd", "", filepath.Join(cp.Dir, "etcd.log"), nil, cp.etcdArgv...)
	if err != nil {
		return err
	}
	cp.etcd = p
	return cp.waitReady(ctx, 60*time.Second)
}

// APIServerRunning reports whether kube-apiserver is running (not stopped
// by StopAPIServer, not exited).
func (cp *ControlPlane) APIServerRunning() bool { return !cp.apiserver.Exited() }
