package crdconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// fieldError is a problem with one field of an object.
type fieldError struct {
	field string // JSON path under spec: holdTime, nodeSelectors[1]
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func fieldErrorf(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// reason is a condition / Event reason naming the (first) bad field:
// InvalidPasswordSecret, InvalidHoldTime.
func reason(err error) string {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return "Invalid"
	}
	root := strings.FieldsFunc(fe.field, func(r rune) bool { return r == '.' || r == '[' })[0]
	r := []rune(root)
	r[0] = unicode.ToUpper(r[0])
	return "Invalid" + string(r)
}

// The specs as stored (MetalLB's field names).
type peerSpec struct {
	MyASN                 uint32                  `json:"myASN"`
	PeerASN               uint32                  `json:"peerASN"`
	PeerAddress           string                  `json:"peerAddress"`
	PeerPort              uint16                  `json:"peerPort"`
	SourceAddress         string                  `json:"sourceAddress"`
	RouterID              string                  `json:"routerID"`
	HoldTime              *metav1.Duration        `json:"holdTime"`
	KeepaliveTime         *metav1.Duration        `json:"keepaliveTime"`
	ConnectTime           *metav1.Duration        `json:"connectTime"`
	Password              string                  `json:"password"`
	PasswordSecret        *corev1.SecretReference `json:"passwordSecret"`
	EBGPMultiHop          bool                    `json:"ebgpMultiHop"`
	BFDProfile            string                  `json:"bfdProfile"`
	EnableGracefulRestart bool                    `json:"enableGracefulRestart"`
	NodeSelectors         []metav1.LabelSelector  `json:"nodeSelectors"`
}

type bfdSpec struct {
	ReceiveInterval  *uint32 `json:"receiveInterval"`
	TransmitInterval *uint32 `json:"transmitInterval"`
	DetectMultiplier *uint32 `json:"detectMultiplier"`
}

type bgpAdvSpec struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	Peers                  []string               `json:"peers"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	LocalPref              uint32                 `json:"localPref"`
	Communities            []string               `json:"communities"`
	AggregationLength      *int32                 `json:"aggregationLength"`
	AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
}

type l2AdvSpec struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Interfaces             []string               `json:"interfaces"`
}

// specOf decodes the object's spec into out.
func specOf(obj *unstructured.Unstructured, out any) error {
	spec, _, err := unstructured.NestedMap(obj.Object, "spec")
	if err != nil {
		return fieldErrorf("spec", "%v", err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, out); err != nil {
		return fieldErrorf("spec", "%v", err)
	}
	return nil
}

// BFD defaults (MetalLB's, from FRR): 300 ms both ways, multiplier 3.
const (
	defaultBFDInterval   = 300
	defaultBFDMultiplier = 3
)

// bfdFrom converts a BFDProfile.
func bfdFrom(obj *unstructured.Unstructured) (*lbconfig.BFD, error) {
	var s bfdSpec
	if err := specOf(obj, &s); err != nil {
		return nil, err
	}
	ms := func(v *uint32) time.Duration {
		if v == nil {
			return defaultBFDInterval * time.Millisecond
		}
		return time.Duration(*v) * time.Millisecond
	}
	b := &lbconfig.BFD{ReceiveInterval: ms(s.ReceiveInterval), TransmitInterval: ms(s.TransmitInterval), DetectMultiplier: defaultBFDMultiplier}
	if s.DetectMultiplier != nil {
		b.DetectMultiplier = *s.DetectMultiplier
	}
	if err := b.Validate(); err != nil {
		return nil, asFieldError(err)
	}
	return b, nil
}

// asFieldError turns lbconfig's "field: message" errors into a fieldError
// (the first one names the field).
func asFieldError(err error) error {
	field, msg, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.ContainsAny(field, " \n") {
		return err
	}
	return &fieldError{field: field, msg: strings.ReplaceAll(msg, "\n", "; ")}
}

// selector converts a label selector, checking what the API server's
// schema checks too (a CRD may predate the rule).
func selector(field string, ls metav1.LabelSelector) (*lbconfig.Selector, error) {
	s := &lbconfig.Selector{MatchLabels: ls.MatchLabels}
	for i, e := range ls.MatchExpressions {
		op := string(e.Operator)
		switch {
		case op == "In" || op == "NotIn":
			if len(e.Values) == 0 {
				return nil, fieldErrorf(fmt.Sprintf("%s.matchExpressions[%d].values", field, i), "must not be empty for %s", op)
			}
		case op == "Exists" || op == "DoesNotExist":
			if len(e.Values) > 0 {
				return nil, fieldErrorf(fmt.Sprintf("%s.matchExpressions[%d].values", field, i), "must be empty for %s", op)
			}
		default:
			return nil, fieldErrorf(fmt.Sprintf("%s.matchExpressions[%d].operator", field, i), "%q is not In, NotIn, Exists or DoesNotExist", op)
		}
		s.MatchExpressions = append(s.MatchExpressions, lbconfig.Requirement{Key: e.Key, Operator: op, Values: e.Values})
	}
	return s, nil
}

func selectors(field string, list []metav1.LabelSelector) ([]*lbconfig.Selector, error) {
	var out []*lbconfig.Selector
	for i, ls := range list {
		s, err := selector(fmt.Sprintf("%s[%d]", field, i), ls)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// optionalAddr parses an optional address field.
func optionalAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fieldErrorf(field, "%q is not an IP address", s)
	}
	return a.Unmap(), nil
}
