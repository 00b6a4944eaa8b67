package lbconfig

// PoolInfo is what the announcement configuration knows of a pool besides
// its name: its labels (for ipAddressPoolSelectors) and whose rule decides
// a pool that no advertisement selects.
type PoolInfo struct {
	Labels map[string]string
	// MetalLB: the pool is defined by a MetalLB object (IPAddressPool or
	// the legacy ConfigMap), so MetalLB's rule applies: no advertisement
	// selecting it, no announcement. Other pools keep vigil's default (L2).
	MetalLB bool
}

// ForPool is For with the pool's labels from Pools, and MetalLB's rule for
// MetalLB's pools: a pool of MetalLB's that no advertisement selects gets
// neither the default L2 advertisement nor anything else.
func (c Config) ForPool(pool string) (l2 []L2Advertisement, bgp []BGPAdvertisement) {
	info := c.Pools[pool]
	l2, bgp = c.For(pool, info.Labels)
	if info.MetalLB && len(bgp) == 0 && len(l2) == 1 && l2[0].Name == DefaultL2Name {
		return nil, nil
	}
	return l2, bgp
}

// Strict reports whether the pool follows MetalLB's rule (see ForPool).
func (c Config) Strict(pool string) bool { return c.Pools[pool].MetalLB }

// Merge appends other's peers, advertisements and pools to c (a pool known
// to both keeps c's entry).
func (c Config) Merge(other Config) Config {
	out := Config{
		Speaker:           c.Speaker,
		Peers:             append(append([]Peer(nil), c.Peers...), other.Peers...),
		BGPAdvertisements: append(append([]BGPAdvertisement(nil), c.BGPAdvertisements...), other.BGPAdvertisements...),
		L2Advertisements:  append(append([]L2Advertisement(nil), c.L2Advertisements...), other.L2Advertisements...),
	}
	if len(c.Pools)+len(other.Pools) > 0 {
		out.Pools = map[string]PoolInfo{}
		for _, m := range []map[string]PoolInfo{other.Pools, c.Pools} {
			for k, v := range m {
				out.Pools[k] = v
			}
		}
	}
	return out
}
