/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Record layouts shared by the XDP program and user space.
 *
 * This header is the single definition of every structure that crosses the
 * kernel/user boundary. The TypeScript codecs in bpf/src/records.ts mirror it,
 * and bpf/test/records.test.ts checks them against the BTF that clang emits for
 * the compiled object, so a change here that is not made there fails the build's
 * tests rather than corrupting events at run time.
 *
 * Addresses are 16 bytes everywhere: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d)
 * so that one map, one key type and one code path serve both families.
 */
#ifndef PACKETWATCH_H
#define PACKETWATCH_H

#include <linux/types.h>

#define PW_ADDR_LEN 16

/* Key of the blocklist hash map. */
struct pw_addr {
	__u8 addr[PW_ADDR_LEN];
};

/* Key of the allowlist LPM trie; prefixlen counts bits of the 16-byte address,
 * so an IPv4 /24 is stored as prefixlen 96 + 24. */
struct pw_lpm_key {
	__u32 prefixlen;
	__u8 addr[PW_ADDR_LEN];
};

/* Why a source is blocked; user space may use any value, these are the known ones. */
enum pw_block_reason {
	PW_REASON_UNSPECIFIED = 0,
	PW_REASON_PORTSCAN = 1,
	PW_REASON_MANUAL = 2,
};

/* pw_block.flags */
#define PW_BLOCK_KERNEL_DETECTED 0x1 /* written by the program's own scan detector */

/* Value of the blocklist. Times are CLOCK_BOOTTIME nanoseconds, so expiry keeps
 * working while user space is down and across suspend; the program reads that
 * clock at tick resolution, so a block lapses up to one tick (4 ms at HZ=250)
 * late. expires_ns == 0 means the block never expires. */
struct pw_block {
	__u64 expires_ns;
	__u64 created_ns;
	__u32 reason;
	__u32 flags;
};

/* tcp_flags bits, as on the wire (byte 13 of the TCP header). */
#define PW_TCP_FIN 0x01
#define PW_TCP_SYN 0x02
#define PW_TCP_RST 0x04
#define PW_TCP_PSH 0x08
#define PW_TCP_ACK 0x10
#define PW_TCP_URG 0x20
#define PW_TCP_ECE 0x40
#define PW_TCP_CWR 0x80

/* What a probe event is (pw_syn_event.kind): every TCP segment that can
 * only be a probe of a port counts toward the scan rule, not only SYNs. */
enum pw_probe_kind {
	PW_PROBE_SYN = 0,       /* a new-connection SYN (SYN set; ACK, FIN, RST clear) */
	PW_PROBE_STEALTH = 1,   /* ACK clear, not a SYN, not a bare RST: FIN, NULL, XMAS, SYN+FIN, ... (tcp_flags says which) */
	PW_PROBE_FRAGMENT = 2,  /* a TCP first fragment too short for the TCP header: dropped (tcp_flags 0, unknown) */
};

/* One probe (a new-connection SYN, a stealth segment or a tiny fragment), as
 * written to the events ring buffer. Fixed size: user space decodes records
 * at fixed offsets without reading a length. 56 bytes: with the ring's
 * 8-byte header, a record is one 64-byte cache line. */
struct pw_syn_event {
	__u64 ts_ns;            /* CLOCK_BOOTTIME ns when the frame was seen, at tick resolution */
	__u8 saddr[PW_ADDR_LEN];
	__u8 daddr[PW_ADDR_LEN];
	__u16 sport;            /* host byte order */
	__u16 dport;            /* host byte order */
	__u32 ifindex;          /* interface the frame arrived on */
	__u8 tcp_flags;
	__u8 ip_version;        /* 4 or 6 */
	__u8 ttl;               /* IPv4 TTL or IPv6 hop limit */
	__u8 scan;              /* enum pw_scan_verdict: what the in-kernel detector made of it */
	__u16 vlan_id;          /* innermost VLAN id, 0 when untagged */
	__u8 kind;              /* enum pw_probe_kind */
	__u8 port_state;        /* enum pw_port_state: whether the host accepts the port (closed mode) */
};

/* What the program knew of the probed port (pw_syn_event.port_state). In
 * closed mode (PW_PORTSCAN_COUNT=closed, the count_closed constant) a SYN
 * is looked up: a port something on the host accepts (a listening socket,
 * or an established one of that very 4-tuple, in the interface's network
 * namespace), or one the operator declared open (PW_OPEN_PORTS, the
 * port_count map), is open, and its SYN does not count toward the scan
 * rule; any other is closed. Stealth and fragment probes are never looked
 * up: they always count (unknown). */
enum pw_port_state {
	PW_PORT_UNKNOWN = 0,    /* not looked up: all mode, or not a SYN */
	PW_PORT_CLOSED = 1,     /* nothing on the host accepts it: the SYN counts */
	PW_PORT_OPEN = 2,       /* accepted (or declared open): the SYN does not count */
};

/* The port_count map's one value: the closed-mode settings the policy last
 * sent (pinned, so that a probe restarted while the policy is away loads
 * the program with them), and the ports declared open, one bit a port
 * (bit p % 64 of open[p / 64]). The program reads only the bits; closed is
 * user space's record of the mode it loads as count_closed. */
#define PW_OPEN_PORT_WORDS 1024
struct pw_port_count {
	__u32 closed;           /* 1: closed mode */
	__u32 _pad;
	__u64 open[PW_OPEN_PORT_WORDS];
};

/* The in-kernel port-scan detector's verdict on a new connection. It applies
 * the policy's rule (N distinct ports within T) at line rate, so that a fast
 * scanner is cut off at the SYN after the crossing one instead of after a
 * round trip through user space. */
enum pw_scan_verdict {
	PW_SCAN_NONE = 0,        /* not a scan (or detection off) */
	PW_SCAN_BLOCKED = 1,     /* this SYN crossed the threshold; the source is now blocked */
	PW_SCAN_CAPPED = 2,      /* crossed beyond the blocks-per-minute budget: blocked for the short TTL */
	PW_SCAN_ALLOWLISTED = 3, /* crossed, not blocked: the source is allowlisted */
	PW_SCAN_FULL = 4,        /* crossed, not blocked: the blocklist is full */
};

/* Most ports the in-kernel detector can be set to (N of the rule,
 * docs/detection.md). An enum, so that the object's BTF carries it to the
 * test that holds bpf/src/records.ts to it. */
enum pw_scan_limit {
	PW_SCAN_MAX_PORTS = 64,
};

/* A value of the scanners map: what the detector keeps of one source, sized
 * for N = scan_ports at load (PW_SCAN_STATE_SIZE). This head is followed by
 *  - the ports: __u16, N rounded up to whole 64-bit words (the search reads
 *    four at a time);
 *  - the times: __u64 ns, N of them;
 *  - per group of PW_SCAN_GROUP entries (entries 8g to 8g + 7), the oldest
 *    time among them: __u64, one a group;
 *  - per group, an entry holding that time: __u8, rounded up to a word.
 * Entry i is (port[i], time[i]); entries 0..count-1 are in use, each a
 * distinct port with the time of its most recent hit. The groups make the
 * next oldest a pass over one group and the groups' minimums, not over N. */
struct pw_scan {
	__u64 last_ns;  /* the newest of the times kept */
	__u64 min_ns;   /* the oldest of the times kept */
	__u8 count;     /* entries in use, 1..N */
	__u8 min_idx;   /* an entry whose time is min_ns */
	__u8 _pad[2];
	__u32 seq;      /* its promotion's number (low 32 bits): its slot in protected_ring */
};

#define PW_SCAN_GROUP 8
#define PW_SCAN_PORT_WORDS(n) (((n) + 3) / 4)
#define PW_SCAN_GROUPS(n) (((n) + PW_SCAN_GROUP - 1) / PW_SCAN_GROUP)
#define PW_SCAN_TIMES_OFF(n) (sizeof(struct pw_scan) + 8 * PW_SCAN_PORT_WORDS(n))
#define PW_SCAN_GMIN_OFF(n) (PW_SCAN_TIMES_OFF(n) + 8 * (n))
#define PW_SCAN_GIDX_OFF(n) (PW_SCAN_GMIN_OFF(n) + 8 * PW_SCAN_GROUPS(n))
#define PW_SCAN_STATE_SIZE(n) (PW_SCAN_GIDX_OFF(n) + 8 * ((PW_SCAN_GROUPS(n) + 7) / 8))

/* A value of the scan_probation map: a source the detector has seen on one
 * port only (admission, docs/detection.md "Memory"). Its one hit, and the
 * number of its admission (low 32 bits), which names its slot in
 * probation_ring: the slot's next admission forgets it. A promoted source
 * leaves its entry as a stub (promoted set), so that a source is looked up
 * in probation first and only a promoted one, or one probation does not
 * know, in the protected space too. */
struct pw_probation {
	__u64 time_ns;  /* the hit's time (the most recent hit of that port) */
	__u32 seq;
	__u16 port;
	__u8 promoted;  /* a stub: the source has moved to the protected space */
	__u8 _pad;
};

/* Value of the one-slot scan_rate array: kernel blocks in the current minute. */
struct pw_scan_rate {
	__u64 window_start_ns;
	__u32 blocks;
	__u32 _pad;
};

/* Indexes of the per-CPU counters array. */
enum pw_counter {
	PW_CNT_FRAMES = 0,      /* every frame the program saw */
	PW_CNT_NON_IP,          /* neither IPv4 nor IPv6 (ARP, LLDP, ...) */
	PW_CNT_NON_TCP,         /* IP but not TCP (UDP, ICMP, ...) */
	PW_CNT_FRAGMENTS,       /* non-first fragments: no TCP header to read */
	PW_CNT_MALFORMED,       /* could not be parsed (truncated, bad lengths); passed unless from a blocked source */
	PW_CNT_SYN,             /* new-connection SYNs (of SYN, FIN, RST, ACK only SYN set) */
	PW_CNT_EVENTS,          /* probe events written to the ring buffer */
	PW_CNT_RINGBUF_FULL,    /* probe events lost because the ring buffer was full */
	PW_CNT_SYN_DROPPED,     /* new-connection SYNs dropped from blocked sources */
	PW_CNT_OTHER_DROPPED,   /* other frames dropped from blocked sources (neither SYNs nor probes) */
	PW_CNT_ALLOWLISTED,     /* frames from blocked sources passed because allowlisted */
	PW_CNT_BLOCK_EXPIRED,   /* frames from sources whose block has expired */
	PW_CNT_SCAN_BLOCKED,    /* sources the in-kernel detector blocked, within the budget */
	PW_CNT_SCAN_CAPPED,     /* detections beyond it (blocked for the short TTL) or with the blocklist full (not blocked) */
	PW_CNT_STEALTH,         /* stealth probes: TCP, ACK clear, not a SYN, not a bare RST (FIN, NULL, XMAS, ...) */
	PW_CNT_TINY_FRAGMENTS,  /* TCP first fragments without the whole TCP header: dropped, a probe when the port is there */
	PW_CNT_LONG_CHAINS,     /* IPv6 header chains longer than the program walks: dropped */
	PW_CNT_BOGUS_SOURCES,   /* IPv6 frames from an IPv4-mapped or IPv4-compatible source: dropped */
	PW_CNT_PROBE_DROPPED,   /* stealth and fragment probes dropped from blocked sources */
	PW_CNT_SCAN_ADMITTED,   /* sources the detector started to track (probation) */
	PW_CNT_SCAN_PROMOTED,   /* sources moved from probation to the protected space by a second distinct port */
	PW_CNT_PROBATION_EVICTED, /* sources forgotten from probation to make room */
	PW_CNT_PROTECTED_EVICTED, /* sources forgotten from the protected space to make room */
	PW_CNT_WOULD_DROP,      /* shadow mode: frames of blocked sources passed that enforcing would have dropped (syn, probe, other) */
	PW_CNT_OPEN_PORT_SYN,   /* closed mode: SYNs to an open port (reported, not counted toward the scan rule) */
	PW_CNT_MAX,
};

/* Values of the drop_mode load-time constant. */
enum pw_drop_mode {
	PW_DROP_SYN = 0,        /* blocked sources keep only established TCP and unfragmented non-TCP traffic */
	PW_DROP_ALL = 1,        /* drop every frame of blocked sources */
};

/* The scan configuration the probe runs its detector with, as the policy last
 * sent it (probe_config map). Written and read by user space only: the
 * program takes these values as load-time constants. All zero: no policy has
 * configured this probe yet (a port threshold is never 0). */
struct pw_probe_config {
	__u32 port_threshold;
	__u32 blocks_per_min;
	__u64 window_ns;
	__u64 block_ns;
	__u64 capped_block_ns;
	__u64 received_unix_ms; /* when the policy sent it */
	__u32 ipv6_prefix;      /* IPv6 sources are tracked and blocked by this prefix length (1..128) */
	__u32 ipv4_prefix;      /* IPv4 sources likewise (1..32) */
	__u32 shadow;           /* 1: shadow mode (the policy's PW_ENFORCE=False), blocks drop nothing */
	__u32 _pad;
};

#endif /* PACKETWATCH_H */
