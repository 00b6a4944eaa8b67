package crdconfig

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// peerRefs resolves what a BGPPeer refers to.
type peerRefs struct {
	profiles map[string]*lbconfig.BFD // the valid BFDProfiles, by name
	// password reads a password Secret; errors are fieldErrors naming
	// passwordSecret, or transient.
	password func(corev1.SecretReference) (string, error)
}

// peerFrom converts a BGPPeer; the error names the first bad field.
func peerFrom(obj *unstructured.Unstructured, refs peerRefs) (lbconfig.Peer, error) {
	var s peerSpec
	if err := specOf(obj, &s); err != nil {
		return lbconfig.Peer{}, err
	}
	p := lbconfig.Peer{
		Name: obj.GetName(), Port: s.PeerPort, ASN: s.PeerASN, MyASN: s.MyASN,
		EBGPMultiHop: s.EBGPMultiHop, GracefulRestart: s.EnableGracefulRestart,
	}
	var err error
	if p.Address, err = optionalAddr("peerAddress", s.PeerAddress); err == nil && !p.Address.IsValid() {
		err = fieldErrorf("peerAddress", "missing")
	}
	if err != nil {
		return lbconfig.Peer{}, err
	}
	if err := peerChecks(s); err != nil {
		return lbconfig.Peer{}, err
	}
	if p.SourceAddress, err = optionalAddr("sourceAddress", s.SourceAddress); err != nil {
		return lbconfig.Peer{}, err
	}
	p.RouterID, _ = optionalAddr("routerID", s.RouterID) // checked above
	if p.HoldTime, p.KeepaliveTime, err = timers(s.HoldTime, s.KeepaliveTime); err != nil {
		return lbconfig.Peer{}, err
	}
	if s.ConnectTime != nil {
		p.ConnectTime = s.ConnectTime.Duration
	}
	if p.Nodes, err = selectors("nodeSelectors", s.NodeSelectors); err != nil {
		return lbconfig.Peer{}, err
	}
	if err := refs.resolve(&p, s); err != nil {
		return lbconfig.Peer{}, err
	}
	if err := p.Validate(); err != nil {
		return lbconfig.Peer{}, asFieldError(err)
	}
	return p, nil
}

// peerChecks are the rules of the CRD's schema that the model does not
// check (an object may predate a rule).
func peerChecks(s peerSpec) error {
	switch {
	case s.MyASN == 0:
		return fieldErrorf("myASN", "must be 1-4294967295")
	case s.EBGPMultiHop && s.MyASN == s.PeerASN:
		return fieldErrorf("ebgpMultiHop", "is for eBGP: myASN and peerASN are equal (iBGP)")
	case s.ConnectTime != nil && (s.ConnectTime.Duration < time.Second || s.ConnectTime.Duration > 65535*time.Second):
		return fieldErrorf("connectTime", "%v is not 1s-65535s", s.ConnectTime.Duration)
	}
	if _, err := optionalAddr("routerID", s.RouterID); err != nil {
		return err
	}
	if a, _ := optionalAddr("routerID", s.RouterID); a.IsValid() && !a.Is4() {
		return fieldErrorf("routerID", "%s is not an IPv4 address", a)
	}
	return nil
}

// timers applies MetalLB's rules: only holdTime set: keepalive holdTime/3;
// only keepaliveTime: hold 3 x keepaliveTime; hold 0 or >= 3s (whole
// seconds); keepalive <= hold. Neither: 0, the speaker's defaults.
func timers(hold, keepalive *metav1.Duration) (time.Duration, time.Duration, error) {
	switch {
	case hold == nil && keepalive == nil:
		return 0, 0, nil
	case keepalive == nil:
		keepalive = &metav1.Duration{Duration: hold.Duration / 3}
	case hold == nil:
		hold = &metav1.Duration{Duration: keepalive.Duration * 3}
	}
	h, k := hold.Duration, keepalive.Duration
	if rounded := h.Truncate(time.Second); rounded < 0 || (rounded != 0 && rounded < 3*time.Second) || h > 65535*time.Second {
		return 0, 0, fieldErrorf("holdTime", "%v is not 0 or 3s-65535s", h)
	}
	if k < 0 || k > h {
		return 0, 0, fieldErrorf("keepaliveTime", "%v must be 0-%v (holdTime)", k, h)
	}
	return h, k, nil
}

// resolve fills in the BFD profile and the password.
func (r peerRefs) resolve(p *lbconfig.Peer, s peerSpec) error {
	if s.BFDProfile != "" {
		b, ok := r.profiles[s.BFDProfile]
		if !ok {
			return fieldErrorf("bfdProfile", "no valid BFDProfile %q", s.BFDProfile)
		}
		c := *b
		p.BFD = &c
	}
	if s.PasswordSecret == nil || s.PasswordSecret.Name == "" {
		p.Password = s.Password
		return nil
	}
	if s.Password != "" {
		return fieldErrorf("password", "password and passwordSecret are mutually exclusive")
	}
	pw, err := r.password(*s.PasswordSecret)
	if err != nil {
		return err
	}
	p.Password = pw
	return nil
}

// errTransient marks an error that says nothing about the object (the API
// server did not answer): the object gets no Event or condition for it.
var errTransient = errors.New("transient")

// passwordFrom checks a password Secret as MetalLB does: type
// kubernetes.io/basic-auth, a non-empty key "password".
func passwordFrom(sec *corev1.Secret) (string, error) {
	ref := sec.Namespace + "/" + sec.Name
	if sec.Type != corev1.SecretTypeBasicAuth {
		return "", fieldErrorf("passwordSecret", "Secret %s is of type %q, want %q", ref, sec.Type, corev1.SecretTypeBasicAuth)
	}
	pw := sec.Data[corev1.BasicAuthPasswordKey]
	if len(pw) == 0 {
		return "", fieldErrorf("passwordSecret", "Secret %s has no (or an empty) key %q", ref, corev1.BasicAuthPasswordKey)
	}
	return string(pw), nil
}

// transient marks an error of the API server as transient.
func transient(err error) error {
	return fmt.Errorf("%w: %w", errTransient, err)
}
