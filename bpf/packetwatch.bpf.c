// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Packetwatch XDP program: sees every frame on one interface, reports every
 * TCP segment that can only be a probe of a port (new-connection SYNs,
 * stealth segments, tiny first fragments) to user space through a ring
 * buffer, and drops what blocked sources send (in syn mode, all but their
 * established TCP and unfragmented non-TCP traffic; in drop-all mode,
 * everything).
 *
 * Rules this program keeps (docs/detection.md, "What the XDP program drops"):
 *  - the source is known once the IP header is read (IPv4: a whole header
 *    with sane IHL and total length; IPv6: the fixed header). Before that,
 *    anything unparsable passes and is counted as malformed: the program
 *    does not know whose it is;
 *  - once the source is known, a blocked source gets nothing through,
 *    whatever the rest of the frame looks like. In drop-all mode every frame
 *    of it is dropped. In syn mode only two kinds pass: a whole TCP segment
 *    with ACK set (established traffic) and an unfragmented non-TCP packet
 *    (syn mode protects TCP services; UDP, and the ICMP errors of
 *    established connections, must flow). SYNs, stealth segments, bare RSTs,
 *    TCP with a bad or truncated header, fragments (first or not, any
 *    protocol) of a blocked source are dropped. A dropped SYN counts as
 *    syn_dropped, a dropped stealth or fragment probe as probe_dropped,
 *    anything else as other_dropped; a blocked source produces no event;
 *  - frames that are never legitimate are dropped whoever sends them, before
 *    any blocklist lookup: IPv6 from an IPv4-mapped (::ffff:0:0/96) or
 *    IPv4-compatible (::/96 but :: and ::1) source (bogus_sources); IPv6
 *    header chains longer than IPV6_EXT_MAX extension headers, RFC 9098
 *    (long_chains); TCP first fragments without the whole 20-byte TCP
 *    header (IPv4 by min(total length, frame), RFC 1858 / RFC 3128; IPv6
 *    whose header chain does not reach it, RFC 7112) and IPv4 TCP fragments
 *    at offset 1, which can only rewrite the first fragment's flags
 *    (RFC 3128) (tiny_fragments);
 *  - a probe is a TCP segment with ACK clear that is not a bare RST:
 *    a SYN ((SYN|FIN|RST|ACK) == SYN: ECN's ECE and CWR, PSH, URG may be
 *    set), a stealth segment (FIN, NULL, XMAS, SYN+FIN, ...), or a tiny
 *    first fragment whose ports are there (dropped all the same). Every
 *    probe goes through the scan detector (pw_track_scan) by its
 *    destination port and is reported with its kind; in closed mode
 *    (count_closed) a SYN to a port the host accepts (a socket, or declared
 *    open) is reported, marked open, and skips the detector (port_open);
 *  - a bounds check before every header read (cursor style, one parse_* per header);
 *  - allowlisted addresses are never dropped because of a block (blocked);
 *  - one map lookup on the common path (the per-CPU counters): an
 *    established segment or unfragmented non-TCP packet in syn mode never
 *    touches the blocklist; the allowlist is read only on a block hit the
 *    per-CPU drop cache does not already vouch for (see blocked);
 *  - the precise clock is read at most once a second per CPU (see pw_now).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "packetwatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * PW_VARIANT_* switches are never set for the deployed object: bench/datapath.ts
 * compiles them to measure, in the same run, what a design choice buys (the
 * earlier precise clock, every block hit on the full path) and what a step
 * costs (the event write). PW_VARIANT_TEST_CLOCK is the one the build makes
 * too (bpf/build/packetwatch-test-clock.bpf.o): the program's clock read from
 * the test_clock map, so that a test gives every SYN the time it wants
 * (test/detection/differential.root.test.ts).
 */

/* Load-time constants (.rodata), set by user space before load. */
const volatile __u32 drop_mode = PW_DROP_SYN;
/* In-kernel scan detection (docs/detection.md): N distinct ports (0 = off,
 * at most PW_SCAN_MAX_PORTS) within scan_window_ns; blocks last scan_block_ns
 * (0 = permanent); at most scan_blocks_per_min of them a minute (0 = no
 * cap), the blocks beyond lasting scan_capped_block_ns. The verifier reads
 * .rodata as constants, so it knows N: the detector's loops are checked for
 * that many ports, and the scanners value is sized for it. */
const volatile __u32 scan_ports = 0;
const volatile __u64 scan_window_ns = 60000000000ULL;
const volatile __u64 scan_block_ns = 0;
const volatile __u32 scan_blocks_per_min = 0;
const volatile __u64 scan_capped_block_ns = 60000000000ULL;
/* The detector's two spaces (below): slots of probation_ring and of
 * protected_ring, the same as those maps' sizes. */
const volatile __u32 scan_probation_size = 1 << 20;
const volatile __u32 scan_protected_size = 65536;
/* A source is tracked and blocked by its prefix: the blocklist and scanners
 * keys are the source masked to these lengths (of the IPv6 address, of the
 * IPv4 address), so one exact-match lookup finds its block. */
const volatile __u32 ipv6_prefix = 64;
const volatile __u32 ipv4_prefix = 32;
/* Closed mode (PW_PORTSCAN_COUNT=closed, docs/detection.md): a SYN counts
 * toward the scan rule only when nothing on the host accepts its port. A
 * constant, so that all mode (0) carries no lookup at all. */
const volatile __u32 count_closed = 0;
/* Shadow mode (PW_ENFORCE=False): everything runs, blocks included, but a
 * block drops nothing; the frame a block would have dropped passes, counted
 * as would_drop. A constant, so that the enforcing program, where the
 * verifier prunes the branch, pays nothing for it. */
const volatile __u32 shadow = 0;

/* Map sizes here are defaults; user space sets them before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct pw_lpm_key);
	__type(value, __u8);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} allowlist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pw_addr);
	__type(value, struct pw_block);
	__uint(max_entries, 65536);
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/*
 * The in-kernel detector's state, in two spaces (docs/detection.md, "Memory"):
 * a source seen on one port waits in probation (scan_probation: its one hit,
 * 16 bytes); its second distinct port promotes it to the protected space
 * (scanners: the full history, struct pw_scan and its entries). Each space is
 * a preallocated hash whose entries the program itself replaces, first in
 * first out, through a ring of keys (probation_ring, protected_ring): the
 * k-th admission takes slot k mod size and forgets the source admitted there
 * size admissions earlier, if it still holds that slot. So a source stays in
 * probation until scan_probation_size later admissions, whatever their rate
 * or the CPU they come from, and single-hit sources (a forged flood) never
 * enter the protected space at all. The program counts what it admits,
 * promotes and forgets (PW_CNT_SCAN_ADMITTED, _PROMOTED, _PROBATION_EVICTED,
 * _PROTECTED_EVICTED). Each hash has its ring's size: a source it holds is
 * the latest admission to one slot (an admission forgets the slot's
 * previous occupant before it inserts), so it is never full but for a race
 * of two admissions a ring's length apart, when the later is lost. (A size
 * of a power of two keeps the hash's buckets at one per entry.)
 *
 * The scanners value size is set at load for N (PW_SCAN_STATE_SIZE(scan_ports)),
 * so the map is declared by sizes, without BTF types (whose size would have
 * to match).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct pw_addr));
	__uint(value_size, PW_SCAN_STATE_SIZE(PW_SCAN_MAX_PORTS));
	__uint(max_entries, 65536);
} scanners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_addr);
	__uint(max_entries, 65536);
} protected_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pw_addr);
	__type(value, struct pw_probation);
	__uint(max_entries, 1 << 20);
} scan_probation SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_addr);
	__uint(max_entries, 1 << 20);
} probation_ring SEC(".maps");

/* Where a source's first hit is put together before it is copied into
 * scanners: a value for N = 64 is larger than the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PW_SCAN_STATE_SIZE(PW_SCAN_MAX_PORTS));
	__uint(max_entries, 1);
} scan_fresh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_scan_rate);
	__uint(max_entries, 1);
} scan_rate SEC(".maps");

/* The lists' generation: user space (Datapath) moves it forward after every
 * write of its own to the blocklist and every insertion into the allowlist,
 * which invalidates every slot of the drop cache at once. 0 (never set)
 * validates no slot, so an object loaded without Datapath takes the full
 * path on every block hit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} list_gen SEC(".maps");

/* Closed mode's ports declared open (PW_OPEN_PORTS: ports published through
 * DNAT have no socket in this namespace), one bit a port, and the mode user
 * space loaded; pinned with the lists. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_port_count);
	__uint(max_entries, 1);
} port_count SEC(".maps");

/* The policy's last scan configuration, pinned with the lists so that a
 * restarted probe loads the program with it while the policy is away. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_probe_config);
	__uint(max_entries, 1);
} probe_config SEC(".maps");

/* Blocklist entries this program added (new keys, not overwrites of a lapsed
 * entry): with user space's own additions and deletions, the blocklist's
 * occupancy kept as it changes, so that nobody walks the map to count it.
 * Not pinned: each run counts from the walk it starts with. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} block_adds SEC(".maps");

/* The drop cache: a direct-mapped, per-CPU memory of sources found blocked
 * (and not allowlisted) at a generation, so that a repeated drop costs an
 * array slot instead of a hash lookup and an LPM lookup. Per CPU, so that a
 * slot is only ever written by the CPU that reads it: no torn slots. Two
 * blocked sources sharing a slot only take turns on the full path. */
#define PW_DROP_CACHE_BITS 12
struct pw_drop_slot {
	__u64 addr[2];
	__u64 expires_ns;
	__u64 gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_drop_slot);
	__uint(max_entries, 1 << PW_DROP_CACHE_BITS);
} drop_cache SEC(".maps");

/* One per-CPU slot holding every counter: a single lookup per frame. */
struct pw_counters {
	__u64 count[PW_CNT_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pw_counters);
	__uint(max_entries, 1);
} counters SEC(".maps");

/* Anchors for BTF: the ring buffer carries no type, and enums used only as
 * constants leave none behind. These globals make clang describe the event
 * layout and the counter indexes in the object's BTF, where the codec test
 * and tools (bpftool btf dump) read them. */
struct pw_syn_event _pw_syn_event_btf __attribute__((unused));
enum pw_counter _pw_counter_btf __attribute__((unused));
enum pw_block_reason _pw_block_reason_btf __attribute__((unused));
enum pw_drop_mode _pw_drop_mode_btf __attribute__((unused));
enum pw_scan_verdict _pw_scan_verdict_btf __attribute__((unused));
enum pw_probe_kind _pw_probe_kind_btf __attribute__((unused));
enum pw_scan_limit _pw_scan_limit_btf __attribute__((unused));
enum pw_port_state _pw_port_state_btf __attribute__((unused));
struct pw_port_count _pw_port_count_btf __attribute__((unused));
struct pw_scan _pw_scan_btf __attribute__((unused));
struct pw_probation _pw_probation_btf __attribute__((unused));

#define VLAN_MAX_DEPTH 2
#define IPV6_EXT_MAX 8
#define IPV4_FRAG_OFFSET 0x1fff
#define IPV4_FRAG_MORE 0x2000
#define IPV6_FRAG_OFFSET 0xfff8
#define IPV6_FRAG_MORE 0x0001
/* Bytes of a TCP header without options, and of its two ports. */
#define TCP_MIN_LEN 20
#define TCP_PORTS_LEN 4

struct cursor {
	void *pos;
	void *end;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* Bounds an L4 header's offset in the frame for the verifier: past the
 * Ethernet header, its VLAN tags, the IP header and the IPv6 chain it walks. */
#define PW_L4_OFF_MAX 0xfff

union pw_addr_words {
	struct pw_addr a;
	__u32 w[4];
	__u64 d[2];   /* the drop cache compares in two loads; also aligns the union for them */
};

/* What the IP layer told us, filled by parse_ipv4 / parse_ipv6. */
struct l3_info {
	union pw_addr_words saddr;  /* made by l3_source() on the paths that need it */
	/* The IP header (the other one NULL), its fixed part within the frame:
	 * addresses and TTL are read from it when needed. Two pointers, not one
	 * and the version, so that the verifier knows each one's bounds. */
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	__u8 proto;
	__u8 version;
	__u8 first_frag;  /* a first fragment: offset 0, more fragments to come */
	__u16 l4_room;    /* IPv4: L4 bytes the total length admits; IPv6: 0xffff (the frame decides) */
};

enum parse_result {
	PARSE_OK = 0,
	PARSE_MALFORMED,    /* the source is not known: passes */
	PARSE_BAD,          /* the source is known, the rest of the IP layer is unparsable */
	PARSE_FRAGMENT,     /* non-first fragment: addresses known, no L4 header */
	PARSE_TINY,         /* a TCP fragment with no port to read that can only be an evasion: dropped */
	PARSE_LONG_CHAIN,   /* more IPv6 extension headers than IPV6_EXT_MAX: dropped */
	PARSE_BOGUS_SOURCE, /* IPv6 from an IPv4-mapped or IPv4-compatible source: dropped */
};

static __always_inline void count(struct pw_counters *c, enum pw_counter which)
{
	if (c)
		c->count[which]++;
}

/* Ethernet plus up to VLAN_MAX_DEPTH 802.1Q / 802.1ad tags. Sets the
 * EtherType (network order); returns -1 when the frame is too short. */
static __always_inline int parse_eth(struct cursor *cur, __be16 *ethertype, __u16 *vlan_id)
{
	struct ethhdr *eth = cur->pos;
	__be16 proto;

	if ((void *)(eth + 1) > cur->end)
		return -1;
	cur->pos = eth + 1;
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_hdr *vh = cur->pos;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > cur->end)
			return -1;
		*vlan_id = bpf_ntohs(vh->tci) & 0x0fff;
		proto = vh->encapsulated_proto;
		cur->pos = vh + 1;
	}
	*ethertype = proto;
	return 0;
}

/* The top bits of a big-endian word of an address kept by a prefix of len
 * bits, the word starting at bit `from`. */
static __always_inline __u32 prefix_mask(__u32 len, __u32 from)
{
	if (len <= from)
		return 0;
	if (len - from >= 32)
		return ~0U;
	return bpf_htonl(~0U << (32 - (len - from)));
}

/* key: l3's source masked to its family's prefix (ipv4_prefix of the
 * IPv4 address, ipv6_prefix of the IPv6 one). The IPv4-mapped form keeps
 * its ::ffff: part, so the two families' keys never meet. */
static __always_inline void source_key(const struct l3_info *l3, union pw_addr_words *key)
{
	if (l3->version == 4) {
		key->d[0] = l3->saddr.d[0];
		key->w[2] = l3->saddr.w[2];
		key->w[3] = l3->saddr.w[3] & prefix_mask(ipv4_prefix, 0);
		return;
	}
	key->w[0] = l3->saddr.w[0] & prefix_mask(ipv6_prefix, 0);
	key->w[1] = l3->saddr.w[1] & prefix_mask(ipv6_prefix, 32);
	key->w[2] = l3->saddr.w[2] & prefix_mask(ipv6_prefix, 64);
	key->w[3] = l3->saddr.w[3] & prefix_mask(ipv6_prefix, 96);
}

static __always_inline enum parse_result parse_ipv4(struct cursor *cur, struct l3_info *l3)
{
	struct iphdr *ip = cur->pos;
	__u32 hdrlen;
	__u16 frag;

	if ((void *)(ip + 1) > cur->end)
		return PARSE_MALFORMED;
	hdrlen = ip->ihl * 4;
	if (ip->version != 4 || hdrlen < sizeof(*ip))
		return PARSE_MALFORMED;
	if (cur->pos + hdrlen > cur->end || bpf_ntohs(ip->tot_len) < hdrlen)
		return PARSE_MALFORMED;

	l3->ip4 = ip;
	l3->ip6 = NULL;
	l3->proto = ip->protocol;
	l3->version = 4;
	l3->l4_room = bpf_ntohs(ip->tot_len) - hdrlen;
	cur->pos += hdrlen;

	frag = bpf_ntohs(ip->frag_off);
	if (frag & IPV4_FRAG_OFFSET) {
		/* Offset 1 (8 bytes) overlaps the first fragment's TCP header
		 * where its flags are: no legitimate sender writes it (RFC 3128). */
		if ((frag & IPV4_FRAG_OFFSET) == 1 && ip->protocol == IPPROTO_TCP)
			return PARSE_TINY;
		return PARSE_FRAGMENT;
	}
	l3->first_frag = !!(frag & IPV4_FRAG_MORE);
	return PARSE_OK;
}

/* Sources no IPv6 packet on the wire may carry: IPv4-mapped addresses
 * (::ffff:0:0/96, RFC 4291 2.5.5.2) and the deprecated IPv4-compatible ones
 * (::/96 but the unspecified :: and the loopback ::1). A v4-mapped source
 * would also share its blocklist key with the IPv4 address it names. */
static __always_inline int bogus_source(const union pw_addr_words *a)
{
	if (a->w[0] || a->w[1])
		return 0;
	if (a->w[2] == bpf_htonl(0x0000ffff))
		return 1;
	return a->w[2] == 0 && bpf_ntohl(a->w[3]) > 1;
}

/* IPv6 fixed header, then a bounded walk over at most IPV6_EXT_MAX extension
 * headers until an upper-layer protocol. A first fragment must hold the
 * whole chain (RFC 7112): one that does not is PARSE_TINY. */
static __always_inline enum parse_result parse_ipv6(struct cursor *cur, struct l3_info *l3)
{
	struct ipv6hdr *ip6 = cur->pos;
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > cur->end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	if (bogus_source((const union pw_addr_words *)&ip6->saddr))
		return PARSE_BOGUS_SOURCE;
	l3->ip6 = ip6;
	l3->ip4 = NULL;
	l3->first_frag = 0;
	l3->version = 6;
	l3->l4_room = 0xffff;
	nexthdr = ip6->nexthdr;
	cur->pos = ip6 + 1;

#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		struct ipv6_opt_hdr *opt = cur->pos;
		struct ipv6_frag_hdr *frag = cur->pos;
		__u32 len;

		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
			if ((void *)(opt + 1) > cur->end)
				return l3->first_frag ? PARSE_TINY : PARSE_BAD;
			/* AH counts its length in 4-byte units minus 2, the others in
			 * 8-byte units minus 1 (RFC 4302, RFC 8200). */
			len = nexthdr == IPPROTO_AH ? (opt->hdrlen + 2) * 4 : (opt->hdrlen + 1) * 8;
			if (cur->pos + len > cur->end)
				return l3->first_frag ? PARSE_TINY : PARSE_BAD;
			nexthdr = opt->nexthdr;
			cur->pos += len;
			break;
		case IPPROTO_FRAGMENT:
			if ((void *)(frag + 1) > cur->end)
				return l3->first_frag ? PARSE_TINY : PARSE_BAD;
			nexthdr = frag->nexthdr;
			cur->pos = frag + 1;
			if (frag->frag_off & bpf_htons(IPV6_FRAG_OFFSET)) {
				l3->proto = nexthdr;
				return PARSE_FRAGMENT;
			}
			/* Offset 0 with M clear is an atomic fragment (RFC 6946): whole. */
			if (frag->frag_off & bpf_htons(IPV6_FRAG_MORE))
				l3->first_frag = 1;
			break;
		default:
			l3->proto = nexthdr;
			return PARSE_OK;
		}
	}
	/* IPV6_EXT_MAX extension headers walked: what follows must be the upper
	 * layer. A longer chain hides it from every middlebox (RFC 9098). */
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return PARSE_LONG_CHAIN;
	default:
		l3->proto = nexthdr;
		return PARSE_OK;
	}
}

/* CLOCK_BOOTTIME in ns, at the coarse clock's resolution (one tick: 4 ms at
 * HZ=250), late by less than two ticks (the coarse time advances at a tick,
 * in whole tick intervals). bpf_ktime_get_boot_ns reads the clock
 * source (about 25 ns a call on a kvm-clock VM, more than everything else on
 * the drop path); bpf_ktime_get_coarse_ns reads the time of the last tick,
 * which is CLOCK_MONOTONIC. The difference BOOTTIME - MONOTONIC changes only
 * across a suspend, so it is measured with the precise clocks at most once a
 * second and added. Racy across CPUs by design: every CPU writes the same
 * values. After a resume, times run late by the time suspended for up to a
 * second. */
__u64 clock_recheck_ns;
__s64 clock_boot_offset_ns;

#ifdef PW_VARIANT_TEST_CLOCK
/* The time of every frame in the test build: what the test wrote here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} test_clock SEC(".maps");
#endif

static __always_inline __u64 pw_now(void)
{
#ifdef PW_VARIANT_TEST_CLOCK
	__u32 zero = 0;
	__u64 *test_now = bpf_map_lookup_elem(&test_clock, &zero);

	return test_now ? *test_now : 0;
#endif
#ifdef PW_VARIANT_PRECISE_CLOCK
	return bpf_ktime_get_boot_ns();
#endif
	__u64 mono = bpf_ktime_get_coarse_ns();

	if (mono >= clock_recheck_ns) {
		clock_boot_offset_ns = bpf_ktime_get_boot_ns() - bpf_ktime_get_ns();
		clock_recheck_ns = mono + 1000000000ULL;
	}
	return mono + clock_boot_offset_ns;
}

static __always_inline __u64 list_generation(void)
{
	__u32 zero = 0;
	__u64 *gen = bpf_map_lookup_elem(&list_gen, &zero);

	return gen ? *gen : 0;
}

static __always_inline int allowlisted(const struct pw_addr *addr)
{
	struct pw_lpm_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, addr->addr, PW_ADDR_LEN);
	return bpf_map_lookup_elem(&allowlist, &key) != NULL;
}

static __always_inline struct pw_drop_slot *drop_slot(const union pw_addr_words *a)
{
	/* Multiplicative hashing of the folded address: IPv4-mapped sources
	 * differ only in w[3], and the top bits of the product mix all of it. */
	__u32 idx = ((a->w[0] ^ a->w[1] ^ a->w[2] ^ a->w[3]) * 0x9e3779b1U) >> (32 - PW_DROP_CACHE_BITS);

	return bpf_map_lookup_elem(&drop_cache, &idx);
}

/* l3->saddr from the IP header (IPv4 as ::ffff:a.b.c.d). Made by blocked(),
 * so that a frame passed without consulting the blocklist (established
 * traffic in syn mode) never copies an address. */
static __always_inline void l3_source(struct l3_info *l3)
{
	const struct iphdr *ip = l3->ip4;
	const struct ipv6hdr *ip6 = l3->ip6;

	if (ip) {
		l3->saddr.w[0] = 0;
		l3->saddr.w[1] = 0;
		l3->saddr.w[2] = bpf_htonl(0x0000ffff);
		l3->saddr.w[3] = ip->saddr;
	} else if (ip6) {
		__builtin_memcpy(&l3->saddr, &ip6->saddr, PW_ADDR_LEN);
	}
}

/* Whether a frame from l3's source must be dropped. The blocklist goes by
 * the source's key (its prefix, made here into *key, which the detector
 * then uses too); the drop cache and the allowlist go by the address
 * itself: an allowlisted address keeps passing inside a blocked prefix. *now is read
 * from the clock at most once per frame (only for a block that expires) and
 * handed back for the event timestamp. */
static __always_inline int blocked(struct l3_info *l3, union pw_addr_words *key, struct pw_counters *cnt, __u64 *now)
{
	const union pw_addr_words *addr = &l3->saddr;
	__u64 gen;
	struct pw_drop_slot *slot;
	struct pw_block *b;

	l3_source(l3);
	/* Read before the lookups: a list write racing with them moves the
	 * generation past the one the slot is stamped with below. */
	gen = list_generation();
	slot = drop_slot(addr);

#ifndef PW_VARIANT_NO_DROP_CACHE
	if (slot && gen && slot->gen == gen && slot->addr[0] == addr->d[0] && slot->addr[1] == addr->d[1]) {
		if (!slot->expires_ns)
			return 1;
		if (!*now)
			*now = pw_now();
		if (slot->expires_ns > *now)
			return 1;
		/* Lapsed: the full path counts it. */
	}
#endif
	/* The key is made here, past the cache: a repeated drop and the
	 * paths that never consult the blocklist do without it. */
	source_key(l3, key);
	b = bpf_map_lookup_elem(&blocklist, &key->a);
	if (!b)
		return 0;
	if (b->expires_ns) {
		if (!*now)
			*now = pw_now();
		if (b->expires_ns <= *now) {
			count(cnt, PW_CNT_BLOCK_EXPIRED);
			return 0;
		}
	}
	if (allowlisted(&addr->a)) {
		count(cnt, PW_CNT_ALLOWLISTED);
		return 0;
	}
	if (slot && gen) {
		slot->addr[0] = addr->d[0];
		slot->addr[1] = addr->d[1];
		slot->expires_ns = b->expires_ns;
		slot->gen = gen;
	}
	return 1;
}

/* Blocks a source the detector caught: for scan_block_ns while within the
 * blocks-per-minute budget, for the short scan_capped_block_ns beyond it.
 * The cap bounds what forged sources can frame (a short block, not a long
 * one); it never leaves a detected scanner unblocked, so it cannot be used
 * to switch blocking off. */
static __always_inline enum pw_scan_verdict scan_block(const struct pw_addr *key, const struct pw_addr *src, __u64 now)
{
	__u32 zero = 0;
	struct pw_counters *cnt = bpf_map_lookup_elem(&counters, &zero);
	struct pw_block b = {
		.expires_ns = scan_block_ns ? now + scan_block_ns : 0,
		.created_ns = now,
		.reason = PW_REASON_PORTSCAN,
		.flags = PW_BLOCK_KERNEL_DETECTED,
	};
	enum pw_scan_verdict verdict = PW_SCAN_BLOCKED;
	struct pw_scan_rate *rate;

	if (allowlisted(src))
		return PW_SCAN_ALLOWLISTED;
	if (scan_blocks_per_min) {
		rate = bpf_map_lookup_elem(&scan_rate, &zero);
		/* Racy across CPUs by design: the cap is a bound on damage, and a
		 * few blocks more or less in a minute do not change that. */
		if (rate && now - rate->window_start_ns >= 60000000000ULL) {
			rate->window_start_ns = now;
			rate->blocks = 0;
		}
		if (!rate || rate->blocks >= scan_blocks_per_min) {
			if (!scan_block_ns || scan_block_ns > scan_capped_block_ns)
				b.expires_ns = now + scan_capped_block_ns;
			verdict = PW_SCAN_CAPPED;
		} else {
			__sync_fetch_and_add(&rate->blocks, 1);
		}
	}
	/* A new key is counted in block_adds; a lapsed entry is overwritten in
	 * place. Full: neither succeeds. */
	if (!bpf_map_update_elem(&blocklist, key, &b, BPF_NOEXIST)) {
		__u64 *adds = bpf_map_lookup_elem(&block_adds, &zero);

		if (adds)
			__sync_fetch_and_add(adds, 1);
	} else if (bpf_map_update_elem(&blocklist, key, &b, BPF_EXIST)) {
		count(cnt, PW_CNT_SCAN_CAPPED);
		return PW_SCAN_FULL;
	}
	count(cnt, verdict == PW_SCAN_CAPPED ? PW_CNT_SCAN_CAPPED : PW_CNT_SCAN_BLOCKED);
	return verdict;
}

/*
 * The scan rule of docs/detection.md at line rate, with the semantics of the
 * policy's detector (services/policy/src/detector.ts), which the differential
 * test holds it to: per source, the N most recently hit distinct ports, each
 * with the time of its most recent hit; N of them within the window is a
 * scan. The SYN that crosses the threshold passes (as it does with the
 * policy's detector); the next one is dropped.
 *
 * Per SYN of a tracked source: a search of its ports four at a time, and the
 * window checked against the newest and oldest times kept (last_ns, min_ns).
 * A hit that moves the oldest time (a hit on the oldest port, a new port
 * once N are kept) also takes a pass over its group of 8 entries and over
 * the groups' oldest times (struct pw_scan). Which of two entries with the
 * same time counts as the oldest does not change a decision (only the times
 * kept do), so the order need not be the detector's. Concurrent SYNs of one
 * source on two CPUs can lose a hit (detected a SYN later) or, rarely, store
 * a port twice or leave the oldest times stale; a crossing is therefore
 * confirmed on the entries themselves before anything is blocked, so a race
 * never blocks a source that has not reached N distinct ports within the
 * window.
 */

/* The rule's clock: the newest time of any SYN the detector took, from any
 * source (the detector's "newest"). Written only when it moves, so per SYN
 * it is a read of a line every CPU shares. */
__u64 scan_clock_ns;

/* The helpers below take n = scan_ports as read once by pw_track_scan:
 * every read of a const volatile is a load, and the verifier knows the
 * value either way (it reads .rodata as constants). */
static __always_inline __u16 *scan_ports_of(struct pw_scan *s)
{
	return (__u16 *)(s + 1);
}

static __always_inline __u64 *scan_times_of(struct pw_scan *s, __u32 n)
{
	return (__u64 *)((__u8 *)s + PW_SCAN_TIMES_OFF(n));
}

static __always_inline __u64 *scan_gmin_of(struct pw_scan *s, __u32 n)
{
	return (__u64 *)((__u8 *)s + PW_SCAN_GMIN_OFF(n));
}

static __always_inline __u8 *scan_gidx_of(struct pw_scan *s, __u32 n)
{
	return (__u8 *)s + PW_SCAN_GIDX_OFF(n);
}

/* The lowest flagged lane of a word of four ports. */
static __always_inline __u32 scan_lane(__u64 z)
{
	return (z & 0xffffULL) ? 0 : (z & 0xffffffffULL) ? 1 : (z & 0xffffffffffffULL) ? 2 : 3;
}

/* The lanes of word equal to the port repeated in pattern, flagged. */
static __always_inline __u64 scan_zero_lanes(__u64 word, __u64 pattern)
{
	__u64 x = word ^ pattern;

	return (x - 0x0001000100010001ULL) & ~x & 0x8000800080008000ULL;
}

/* The entry of port among the first count (<= n), or count when it is not
 * there. Four ports a step: a lane of word ^ pattern is zero where the port
 * is, and the borrow trick flags zero lanes; it can flag a lane above a true
 * zero lane too, never below one, so the lowest flag is exact (the ports
 * kept are distinct: there is at most one). Lanes past count are masked. */
static __always_inline __u32 scan_find(struct pw_scan *s, __u32 n, __u32 count, __u16 port)
{
	const __u64 *word = (const __u64 *)(s + 1);
	__u64 pattern = port * 0x0001000100010001ULL, z0, z1;
	/* Words whose four lanes are all in use (count <= n: fewer than n's words). */
	__u32 full = count / 4, i;

	/* The full words two at a time, */
	for (i = 0; i < PW_SCAN_PORT_WORDS(PW_SCAN_MAX_PORTS); i += 2) {
		if (i + 1 >= full)
			break;
		z0 = scan_zero_lanes(word[i], pattern);
		z1 = scan_zero_lanes(word[i + 1], pattern);
		if (z0 | z1)
			return z0 ? 4 * i + scan_lane(z0) : 4 * i + 4 + scan_lane(z1);
	}
	/* the one left over, */
	if (i < full) {
		z0 = scan_zero_lanes(word[i], pattern);
		if (z0)
			return 4 * i + scan_lane(z0);
		i++;
	}
	/* then the lanes in use of the last one. */
	if (i < PW_SCAN_PORT_WORDS(n) && 4 * i < count) {
		z0 = scan_zero_lanes(word[i], pattern) & ((1ULL << (16 * (count - 4 * i))) - 1);
		if (z0)
			return 4 * i + scan_lane(z0);
	}
	return count;
}

/* The oldest time of group g (its entries below count <= n), and where. */
static __always_inline void scan_group_min(struct pw_scan *s, __u32 n, __u32 count, __u32 g)
{
	__u64 *time = scan_times_of(s, n);
	__u32 first = g * PW_SCAN_GROUP, idx = first;
	__u64 min;

	if (g >= PW_SCAN_GROUPS(n) || first >= count)
		return;
	min = time[first];
	for (__u32 k = 1; k < PW_SCAN_GROUP; k++) {
		__u32 j = first + k;
		__u64 d, smaller;

		if (j >= count)
			break;
		/* Without a branch to mispredict: times are below 2^63, so the
		 * sign of time[j] - min says which is smaller. */
		d = time[j] - min;
		smaller = (__u64)((__s64)d >> 63);
		min += d & smaller;
		idx ^= (idx ^ j) & smaller;
	}
	scan_gmin_of(s, n)[g] = min;
	scan_gidx_of(s, n)[g] = idx;
}

/* min_ns and min_idx from the groups' oldest times. */
static __always_inline void scan_global_min(struct pw_scan *s, __u32 n, __u32 count)
{
	__u64 *gmin = scan_gmin_of(s, n);
	__u8 *gidx = scan_gidx_of(s, n);
	__u64 min = gmin[0];
	__u32 best = 0;

	for (__u32 g = 1; g < PW_SCAN_GROUPS(PW_SCAN_MAX_PORTS); g++) {
		__u64 d, smaller;

		if (g >= PW_SCAN_GROUPS(n) || g * PW_SCAN_GROUP >= count)
			break;
		d = gmin[g] - min;
		smaller = (__u64)((__s64)d >> 63);
		min += d & smaller;
		best ^= (best ^ g) & smaller;
	}
	s->min_ns = min;
	s->min_idx = gidx[best & (PW_SCAN_GROUPS(PW_SCAN_MAX_PORTS) - 1)];
}

/* Entry i's time went up: the oldest of its group and overall follow. */
static __always_inline void scan_time_raised(struct pw_scan *s, __u32 n, __u32 count, __u32 i)
{
	__u32 g = i / PW_SCAN_GROUP;

	if (g >= PW_SCAN_GROUPS(n))
		return;
	if (scan_gidx_of(s, n)[g] == i)
		scan_group_min(s, n, count, g);
	if (s->min_idx == i)
		scan_global_min(s, n, count);
}

/* A crossing by last_ns and min_ns, checked on the N entries themselves:
 * distinct ports, newest minus oldest time within the window. Runs once per
 * detection (quadratic in N), so it can afford to trust nothing the other
 * CPUs may have been writing. When it disagrees, the history is put right:
 * the oldest times recomputed, or, with a port kept twice, started afresh. */
static __always_inline int scan_confirm(struct pw_scan *s, __u32 n)
{
	__u16 *port = scan_ports_of(s);
	__u64 *time = scan_times_of(s, n);
	__u64 min = ~0ULL, max = 0;

	for (__u32 i = 0; i < PW_SCAN_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (time[i] < min)
			min = time[i];
		if (time[i] > max)
			max = time[i];
		if (scan_find(s, n, i, port[i]) != i) {
			s->count = 1;
			s->last_ns = time[0];
			scan_gmin_of(s, n)[0] = time[0];
			scan_gidx_of(s, n)[0] = 0;
			s->min_ns = time[0];
			s->min_idx = 0;
			return 0;
		}
	}
	if (max - min >= scan_window_ns) {
		for (__u32 g = 0; g < PW_SCAN_GROUPS(PW_SCAN_MAX_PORTS); g++)
			scan_group_min(s, n, n, g);
		scan_global_min(s, n, n);
		return 0;
	}
	return 1;
}

/* A source's history becomes the single hit (port, now). */
static __always_inline void scan_restart(struct pw_scan *s, __u32 n, __u32 port, __u64 now)
{
	scan_ports_of(s)[0] = port;
	scan_times_of(s, n)[0] = now;
	scan_gmin_of(s, n)[0] = now;
	scan_gidx_of(s, n)[0] = 0;
	s->last_ns = now;
	s->min_ns = now;
	s->min_idx = 0;
	s->count = 1;
}

/* The admissions to each space so far: the next one's number. */
__u64 scan_probation_seq;
__u64 scan_protected_seq;

/* A source enters probation with its one hit (port, now), taking the next
 * slot of probation_ring. The slot's previous occupant is forgotten if it
 * still holds the slot (it may have been promoted, detected or admitted
 * again since), counted as evicted unless its hit had expired anyway. Also
 * a re-admission: a source in probation or demoted from protected whose
 * history expired starts afresh in a new slot. */
static __always_inline void scan_admit(const struct pw_addr *key, __u32 port, __u64 now, __u64 clock, struct pw_counters *cnt)
{
	__u64 seq = __sync_fetch_and_add(&scan_probation_seq, 1);
	__u32 slot = seq % scan_probation_size;
	struct pw_probation v = { .time_ns = now, .seq = (__u32)seq, .port = port };
	struct pw_probation *old;
	struct pw_addr *ring = bpf_map_lookup_elem(&probation_ring, &slot);

	if (!ring)
		return;
	if (seq >= scan_probation_size) {
		old = bpf_map_lookup_elem(&scan_probation, ring);
		if (old && old->seq == (__u32)(seq - scan_probation_size)) {
			/* A stub's source is in the protected space: nothing is lost. */
			int live = !old->promoted && old->time_ns + scan_window_ns > clock;

			if (!bpf_map_delete_elem(&scan_probation, ring) && live)
				count(cnt, PW_CNT_PROBATION_EVICTED);
		}
	}
	__builtin_memcpy(ring, key, sizeof(*key));
	if (!bpf_map_update_elem(&scan_probation, key, &v, BPF_ANY))
		count(cnt, PW_CNT_SCAN_ADMITTED);
}

/* A source promoted by its second distinct port: its history s (at least
 * two entries) enters the protected space in the next slot of
 * protected_ring, whose previous occupant is forgotten as in scan_admit.
 * Only promotions take slots, so single-hit sources never evict it. */
static __always_inline void scan_promote(const struct pw_addr *key, struct pw_scan *s, __u64 clock, struct pw_counters *cnt)
{
	__u64 seq = __sync_fetch_and_add(&scan_protected_seq, 1);
	__u32 slot = seq % scan_protected_size;
	struct pw_addr *ring = bpf_map_lookup_elem(&protected_ring, &slot);
	struct pw_scan *old;

	if (!ring)
		return;
	if (seq >= scan_protected_size) {
		old = bpf_map_lookup_elem(&scanners, ring);
		if (old && old->seq == (__u32)(seq - scan_protected_size)) {
			int live = old->last_ns + scan_window_ns > clock;

			if (!bpf_map_delete_elem(&scanners, ring) && live)
				count(cnt, PW_CNT_PROTECTED_EVICTED);
		}
	}
	__builtin_memcpy(ring, key, sizeof(*key));
	s->seq = (__u32)seq;
	if (!bpf_map_update_elem(&scanners, key, s, BPF_NOEXIST))
		count(cnt, PW_CNT_SCAN_PROMOTED);
}

/*
 * A global function: the verifier checks it once, on its own, rather than
 * once for every parsing path that reaches it, which would exceed its
 * complexity limit.
 *
 * A source is looked up in probation first: most sources (clients) use one
 * port and take one lookup. A promoted source left a stub there (promoted
 * set) whose hit sends the lookup on to the protected space, so it takes
 * two hits, never a miss in probation's large table (bench-datapath's
 * new-port-full, one SYN a call, took 250 ns with a probation miss before
 * every protected hit, 93 ns without). Only a source probation does not
 * know (new, or its stub forgotten under churn) takes a miss in each. Nothing
 * the spaces add changes a decision while nothing is evicted: a source in
 * probation holds exactly the history a scanners value with one entry would
 * (its port, the time of its most recent hit), and its promotion builds that
 * value (in scan_fresh) and applies the second port to it on the same path
 * as every other hit; a crossing there (N = 2) blocks it straight from
 * probation.
 */
__noinline int pw_track_scan(const struct pw_addr *key, const struct pw_addr *src, __u32 dport, __u64 now)
{
	__u32 zero = 0, n = scan_ports, count, i;
	__u64 clock = scan_clock_ns, *time;
	struct pw_counters *cnt;
	struct pw_probation *p;
	struct pw_scan *s;
	int fresh = 0;
	__u16 *port;

	if (!key || !src || n == 0)
		return PW_SCAN_NONE;
	if (now > clock) {
		scan_clock_ns = now;
		clock = now;
	}
	if (n == 1)
		return scan_block(key, src, now);

	cnt = bpf_map_lookup_elem(&counters, &zero);
	p = bpf_map_lookup_elem(&scan_probation, key);
	if (p && !p->promoted) {
		if (clock > p->time_ns && clock - p->time_ns >= scan_window_ns) {
			/* Idle for T or more: expired, as below. */
			if (clock - now >= scan_window_ns)
				bpf_map_delete_elem(&scan_probation, key);
			else
				scan_admit(key, dport, now, clock, cnt);
			return PW_SCAN_NONE;
		}
		if (p->port == dport) {
			/* A repeated port: its time moves to the later hit. */
			if (now > p->time_ns)
				p->time_ns = now;
			return PW_SCAN_NONE;
		}
		/* A second distinct port: the history of one entry it stands for,
		 * to which the hit applies below. */
		s = bpf_map_lookup_elem(&scan_fresh, &zero);
		if (!s)
			return PW_SCAN_NONE;
		scan_restart(s, n, p->port, p->time_ns);
		fresh = 1;
	} else {
		/* Promoted (its stub in probation says so), or in neither space
		 * as far as probation knows (new, or its stub forgotten). */
		s = bpf_map_lookup_elem(&scanners, key);
		if (!s) {
			/* T or more older than the clock: expired on arrival. The
			 * admission overwrites a stub whose source is gone. */
			if (clock - now < scan_window_ns)
				scan_admit(key, dport, now, clock, cnt);
			return PW_SCAN_NONE;
		}
		if (clock > s->last_ns && clock - s->last_ns >= scan_window_ns) {
			/* Idle for T or more: its history is expired, and the source
			 * goes back to probation with this hit. (last_ns can be ahead
			 * of the clock read above when another CPU has just moved
			 * both.) */
			bpf_map_delete_elem(&scanners, key);
			if (clock - now < scan_window_ns)
				scan_admit(key, dport, now, clock, cnt);
			return PW_SCAN_NONE;
		}
	}

	count = s->count;
	if (count > n)
		count = n;
	port = scan_ports_of(s);
	time = scan_times_of(s, n);
	i = scan_find(s, n, count, dport);
	if (i < count) {
		/* A repeated port: its time moves to the later hit, it does not count twice. */
		if (now <= time[i])
			goto kept;
		time[i] = now;
		if (now > s->last_ns)
			s->last_ns = now;
		scan_time_raised(s, n, count, i);
		if (count < n)
			goto kept;
	} else if (count < n) {
		__u32 g = count / PW_SCAN_GROUP;

		port[count] = dport;
		time[count] = now;
		if (g < PW_SCAN_GROUPS(n) && (count % PW_SCAN_GROUP == 0 || now < scan_gmin_of(s, n)[g])) {
			scan_gmin_of(s, n)[g] = now;
			scan_gidx_of(s, n)[g] = count;
		}
		if (now < s->min_ns) {
			s->min_ns = now;
			s->min_idx = count;
		}
		if (now > s->last_ns)
			s->last_ns = now;
		/* After the entry (a volatile store is not moved before it): a CPU
		 * that sees the count sees the port, on x86 at least. */
		*(volatile __u8 *)&s->count = count + 1;
		if (count + 1 < n)
			goto kept;
	} else {
		/* N kept: the new port replaces the oldest, unless it is older than
		 * all of them (then it cannot be among the N most recent). */
		if (now < s->min_ns)
			goto kept;
		i = s->min_idx;
		if (i >= n)
			i = 0;
		port[i] = dport;
		time[i] = now;
		if (now > s->last_ns)
			s->last_ns = now;
		scan_time_raised(s, n, n, i);
	}
	if (s->last_ns - s->min_ns >= scan_window_ns || !scan_confirm(s, n))
		goto kept;
	if (fresh)
		bpf_map_delete_elem(&scan_probation, key);
	else
		bpf_map_delete_elem(&scanners, key);
	return scan_block(key, src, now);
kept:
	if (fresh && p) {
		/* Into the protected space, then its probation entry becomes the
		 * stub that sends the next lookup there: a SYN of the source on
		 * another CPU meanwhile finds it in one or the other. */
		scan_promote(key, s, clock, cnt);
		p->promoted = 1;
	}
	return PW_SCAN_NONE;
}

/* The probe being settled: what it is and what the event reports of it. */
struct probe_info {
	__u16 sport;   /* host byte order */
	__u16 dport;
	__u8 flags;
	__u8 kind;     /* enum pw_probe_kind */
};

/* Closed mode: whether the host accepts a SYN's port. Declared open
 * (port_count's bits), else asked of the kernel: a socket of the
 * interface's network namespace (BPF_F_CURRENT_NETNS: XDP's is the ingress
 * device's) that this SYN would reach, an established one of its very
 * 4-tuple (or a request or TIME_WAIT one) or a listener on its address and
 * port. A port where nothing listens is closed to a new connection even
 * while connections accepted on it earlier live on: the stack answers that
 * SYN with a RST. */
static __always_inline int port_open(struct xdp_md *ctx, const struct l3_info *l3, const struct probe_info *p)
{
	__u32 zero = 0;
	struct pw_port_count *pc = bpf_map_lookup_elem(&port_count, &zero);
	struct bpf_sock_tuple t;
	struct bpf_sock *sk;
	__u32 len;

	if (pc && (pc->open[(p->dport >> 6) & (PW_OPEN_PORT_WORDS - 1)] >> (p->dport & 63)) & 1)
		return 1;
	if (l3->ip4) {
		t.ipv4.saddr = l3->ip4->saddr;
		t.ipv4.daddr = l3->ip4->daddr;
		t.ipv4.sport = bpf_htons(p->sport);
		t.ipv4.dport = bpf_htons(p->dport);
		len = sizeof(t.ipv4);
	} else if (l3->ip6) {
		__builtin_memcpy(t.ipv6.saddr, &l3->ip6->saddr, PW_ADDR_LEN);
		__builtin_memcpy(t.ipv6.daddr, &l3->ip6->daddr, PW_ADDR_LEN);
		t.ipv6.sport = bpf_htons(p->sport);
		t.ipv6.dport = bpf_htons(p->dport);
		len = sizeof(t.ipv6);
	} else {
		return 0;
	}
	sk = bpf_skc_lookup_tcp(ctx, &t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* The verdict on a frame of a blocked source, counted: XDP_DROP; in shadow
 * mode, as enforcing but for the verdict: no event, no tracking, and the
 * frame keeps the verdict it has without a block (a tiny first fragment
 * is dropped whoever sends it). */
static __always_inline int block_verdict(struct pw_counters *cnt, enum pw_counter dropped, int verdict)
{
	if (shadow) {
		count(cnt, PW_CNT_WOULD_DROP);
		return verdict;
	}
	count(cnt, dropped);
	return XDP_DROP;
}

/* Tracks a probe that is not dropped for a block and reports it; the
 * frame's verdict is the caller's. In closed mode a SYN to an open port is
 * reported, marked open, and not tracked. */
static __always_inline void report_probe(struct xdp_md *ctx, struct pw_counters *cnt, const struct l3_info *l3, const union pw_addr_words *key,
					 const struct probe_info *p, __u16 vlan_id, __u64 now)
{
	struct pw_syn_event *ev;
	__u8 state = PW_PORT_UNKNOWN;
	int scan = PW_SCAN_NONE;

	if (!now)
		now = pw_now();
	if (count_closed && p->kind == PW_PROBE_SYN)
		state = port_open(ctx, l3, p) ? PW_PORT_OPEN : PW_PORT_CLOSED;
	if (state == PW_PORT_OPEN)
		count(cnt, PW_CNT_OPEN_PORT_SYN);
	else if (scan_ports)
		scan = pw_track_scan(&key->a, &l3->saddr.a, p->dport, now);

#ifdef PW_VARIANT_NO_EVENT
	return;
#endif
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(cnt, PW_CNT_RINGBUF_FULL);
		return;
	}
	ev->ts_ns = now;
	__builtin_memcpy(ev->saddr, &l3->saddr, PW_ADDR_LEN);
	if (l3->ip4) {
		union pw_addr_words *daddr = (union pw_addr_words *)ev->daddr;

		daddr->d[0] = 0;
		daddr->w[2] = bpf_htonl(0x0000ffff);
		daddr->w[3] = l3->ip4->daddr;
		ev->ttl = l3->ip4->ttl;
	} else if (l3->ip6) {
		__builtin_memcpy(ev->daddr, &l3->ip6->daddr, PW_ADDR_LEN);
		ev->ttl = l3->ip6->hop_limit;
	}
	ev->sport = p->sport;
	ev->dport = p->dport;
	ev->ifindex = ctx->ingress_ifindex;
	ev->tcp_flags = p->flags;
	ev->ip_version = l3->version;
	ev->scan = scan;
	ev->vlan_id = vlan_id;
	ev->kind = p->kind;
	ev->port_state = state;
	bpf_ringbuf_submit(ev, 0);
	count(cnt, PW_CNT_EVENTS);
}

SEC("xdp")
int packetwatch(struct xdp_md *ctx)
{
	struct cursor cur = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	__u32 zero = 0;
	struct pw_counters *cnt = bpf_map_lookup_elem(&counters, &zero);
	/* Each family's parser sets every field but the source, which
	 * l3_source() makes: nothing to clear per frame. */
	struct l3_info l3;
	/* Written by the paths that report a probe, read only by them: not
	 * cleared per frame. */
	struct probe_info p;
	/* The source's blocklist key, made by blocked() when it looks. */
	union pw_addr_words key;
	__u16 vlan_id = 0;
	enum parse_result res;
	/* Counted when the source turns out blocked; the probe kinds set their own. */
	enum pw_counter dropped = PW_CNT_OTHER_DROPPED;
	struct tcphdr *tcp;
	__be16 *ports;
	__u32 doff;
	__u8 flags;
	__u64 now = 0;
	__be16 proto = 0;
	int probe = 0, verdict = XDP_PASS;

	count(cnt, PW_CNT_FRAMES);

	if (parse_eth(&cur, &proto, &vlan_id) < 0) {
		count(cnt, PW_CNT_MALFORMED);
		return XDP_PASS;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		res = parse_ipv4(&cur, &l3);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		res = parse_ipv6(&cur, &l3);
		/* Past the chain, a bounded offset from the frame's start: whatever
		 * the walk took to get here, the verifier goes on from one state,
		 * which leaves room in its budget for the SYN's own path below. */
		cur.pos = (void *)(long)ctx->data + ((cur.pos - (void *)(long)ctx->data) & PW_L4_OFF_MAX);
	} else {
		count(cnt, PW_CNT_NON_IP);
		return XDP_PASS;
	}

	switch (res) {
	case PARSE_OK:
		break;
	case PARSE_MALFORMED:
		/* Whose it is, nobody knows: it passes. */
		count(cnt, PW_CNT_MALFORMED);
		return XDP_PASS;
	case PARSE_BOGUS_SOURCE:
		count(cnt, PW_CNT_BOGUS_SOURCES);
		return XDP_DROP;
	case PARSE_LONG_CHAIN:
		count(cnt, PW_CNT_LONG_CHAINS);
		return XDP_DROP;
	case PARSE_TINY:
		count(cnt, PW_CNT_TINY_FRAGMENTS);
		return XDP_DROP;
	case PARSE_BAD:
		count(cnt, PW_CNT_MALFORMED);
		goto settle;
	default: /* PARSE_FRAGMENT */
		count(cnt, PW_CNT_FRAGMENTS);
		goto settle;
	}

	if (l3.proto != IPPROTO_TCP) {
		count(cnt, PW_CNT_NON_TCP);
		/* The common path of non-TCP traffic: no blocklist lookup. */
		if (!l3.first_frag && drop_mode != PW_DROP_ALL)
			return XDP_PASS;
		goto settle;
	}

	tcp = cur.pos;
	if ((void *)(tcp + 1) > cur.end || l3.l4_room < TCP_MIN_LEN) {
		if (!l3.first_frag) {
			count(cnt, PW_CNT_MALFORMED);
			goto settle;
		}
		/* A first fragment that stops short of the flags: whatever it is,
		 * no stack needs it, and a filter reading flags cannot judge it. */
		count(cnt, PW_CNT_TINY_FRAGMENTS);
		ports = cur.pos;
		if ((void *)(ports + 2) > cur.end || l3.l4_room < TCP_PORTS_LEN)
			return XDP_DROP;
		p.sport = bpf_ntohs(ports[0]);
		p.dport = bpf_ntohs(ports[1]);
		p.kind = PW_PROBE_FRAGMENT;
		p.flags = 0;
		dropped = PW_CNT_PROBE_DROPPED;
		probe = 1;
		verdict = XDP_DROP;
		goto settle;
	}
	doff = tcp->doff * 4;
	if (doff < sizeof(*tcp) || cur.pos + doff > cur.end) {
		count(cnt, PW_CNT_MALFORMED);
		goto settle;
	}
	flags = ((__u8 *)tcp)[13];
	if (flags & PW_TCP_ACK) {
		/* Established traffic: the common path, no blocklist lookup in syn mode. */
		if (!l3.first_frag && drop_mode != PW_DROP_ALL)
			return XDP_PASS;
		goto settle;
	}
	switch (flags & (PW_TCP_SYN | PW_TCP_FIN | PW_TCP_RST)) {
	case PW_TCP_SYN:
		/* The path a flood of a blocked source takes: its own consultation,
		 * before anything is kept for an event. */
		count(cnt, PW_CNT_SYN);
		if (blocked(&l3, &key, cnt, &now))
			return block_verdict(cnt, PW_CNT_SYN_DROPPED, XDP_PASS);
		p.kind = PW_PROBE_SYN;
		p.sport = bpf_ntohs(tcp->source);
		p.dport = bpf_ntohs(tcp->dest);
		p.flags = flags;
		goto report;
	case PW_TCP_RST:
		/* A bare RST answers something; not a probe, but not a connection either. */
		break;
	default:
		count(cnt, PW_CNT_STEALTH);
		p.kind = PW_PROBE_STEALTH;
		dropped = PW_CNT_PROBE_DROPPED;
		probe = 1;
		break;
	}
	p.sport = bpf_ntohs(tcp->source);
	p.dport = bpf_ntohs(tcp->dest);
	p.flags = flags;

settle:
	/* The blocklist consultation of every other path with a known source
	 * that could be dropped for a block. */
	if (blocked(&l3, &key, cnt, &now))
		return block_verdict(cnt, dropped, verdict);
	if (!probe)
		return verdict;
report:
	report_probe(ctx, cnt, &l3, &key, &p, vlan_id, now);
	return verdict;
}
