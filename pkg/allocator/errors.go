package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Errors of range parsing. A *RangeError wraps ErrInvalidRange and one of
// the others, so errors.Is works with either.
var (
	ErrInvalidRange  = errors.New("invalid address range")
	ErrSyntax        = errors.New("malformed")
	ErrZone          = errors.New("zones are not allowed")
	ErrMapped        = errors.New("IPv4-mapped IPv6 addresses are not allowed, write the IPv4 form")
	ErrMixedFamilies = errors.New("start and end are of different families")
	ErrReversed      = errors.New("start is after end")
	ErrHostBits      = errors.New("host bits set")
	ErrOverlap       = errors.New("overlaps another range of the pool")
)

// Errors of pools and requests.
var (
	// ErrInvalidPool: a pool without a name, with a duplicate name or
	// with an invalid range (the *RangeError is wrapped too).
	ErrInvalidPool = errors.New("invalid pool")
	// ErrInvalidRequest: a malformed Request or Restore.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNoSuchPool: the request names a pool that does not exist.
	ErrNoSuchPool = errors.New("no such pool")
	// ErrPoolNotAllowed: the pool named, or every pool offering the
	// requested address, does not serve the owner: its namespace, or its
	// labels (Pool.Serves).
	ErrPoolNotAllowed = errors.New("pool not allowed")
	// ErrNotInPool: a requested address is not offered by any pool (or not
	// by the pool named).
	ErrNotInPool = errors.New("address not in pool")
	// ErrNoPool: no AutoAssign pool serves the owner (its namespace and
	// labels).
	ErrNoPool = errors.New("no pool with autoAssign serves the Service")
	// ErrInUse: the address is held by another owner and may not be
	// shared. Returned as *InUseError.
	ErrInUse = errors.New("address in use")
	// ErrExhausted: no candidate pool has a free address of a required
	// family. Returned as *ExhaustedError.
	ErrExhausted = errors.New("address pools exhausted")
)

// RangeError is a pool range that does not parse or validate.
type RangeError struct {
	Entry string // the entry as written (or as Range.String for a Range)
	Err   error  // wraps one of ErrSyntax, ErrZone, ErrMapped, ErrMixedFamilies, ErrReversed, ErrHostBits, ErrOverlap
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("%v %q: %v", ErrInvalidRange, e.Entry, e.Err)
}

// Unwrap returns ErrInvalidRange and the specific error.
func (e *RangeError) Unwrap() []error { return []error{ErrInvalidRange, e.Err} }

// InUseError is an address held by other owners that the requester may not
// share.
type InUseError struct {
	Addr    netip.Addr
	Holders []string // sorted
	Reason  string   // why it may not be shared
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("address %s is in use by %s: %s", e.Addr, strings.Join(e.Holders, ", "), e.Reason)
}

// Unwrap returns ErrInUse.
func (e *InUseError) Unwrap() error { return ErrInUse }

// ExhaustedError is a required family that none of Pools can supply.
type ExhaustedError struct {
	Family Family
	Pools  []string // the candidate pools, in the order tried
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("no free %s address in pools %s", e.Family, strings.Join(e.Pools, ", "))
}

// Unwrap returns ErrExhausted.
func (e *ExhaustedError) Unwrap() error { return ErrExhausted }
