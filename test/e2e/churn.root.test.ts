// Churn-proof tracking (docs/detection.md, "Memory"): a flood of forged
// single SYNs, each from a source never seen before, at 50,000 a second,
// while a slow scanner inside it hits N = 3 ports over T/2. Real processes
// (probe and policy as deployed), real frames through the veth: a raw
// socket in the attacker's namespace sends the scanner's three SYNs at fixed
// places in the flood, so the number of forged sources between its hits is
// exact whatever the machine's speed. Both detectors must catch it, and
// their admission counters must show the churn, exactly.
import { join } from 'node:path';
import { blockCodec, parseAddress } from '@packetwatch/bpf';
import type { DatapathCounters } from '@packetwatch/proto';
import { BpfMap } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { Services, listAllBlocks, listAllDecisions } from '@packetwatch/test-support/services';

/** T: the scanner's three SYNs span T/2 when the flood runs at RATE. */
const WINDOW_SECONDS = 8;
const RATE = 50_000;
/** Forged sources between the scanner's first and second SYN, and between its second and third: 4 s at RATE, T/2. */
const BEFORE_SECOND = 60_000;
const BEFORE_THIRD = 140_000;
const FORGED = BEFORE_SECOND + BEFORE_THIRD;
/** The kernel's spaces: probation holds more than BEFORE_SECOND (the bound: 65,536 / 50,000 = 1.3 s). */
const KERNEL_PROBATION = 65_536;
const KERNEL_PROTECTED = 4_096;
/**
 * The sources a plain LRU (the detector before admission) holds in the
 * kernel memory these spaces take at N = 3: 8,031,040 bytes (bpftool's
 * bytes_memlock of the four maps) at 152 bytes an LRU entry (9,962,368 for
 * 65,536). Fewer than BEFORE_SECOND: the program before admission, fed this
 * test's SYNs on the test clock with such an LRU, blocks nothing.
 */
const KERNEL_LRU_SAME_MEMORY = 52_835;
/** The policy's cap, split 7/8 + 1/8: probation 65,536, protected 9,362. */
const POLICY_MAX_SOURCES = 74_898;
const POLICY_PROBATION = 65_536;
/**
 * The sources the policy's detector before admission (about 85 heap bytes a
 * source, each in a full slot, least recently hit evicted) holds in the heap
 * these spaces take (about 52 bytes a probation source, 92 a protected one):
 * fewer than BEFORE_SECOND.
 */
const POLICY_LRU_SAME_MEMORY = Math.floor((POLICY_PROBATION * 52 + (POLICY_MAX_SOURCES - POLICY_PROBATION) * 92) / 85);
/** Sources hit by nobody else: the forged ones from 100.64.0.0 up, one address each; the scanner apart. */
const SCANNER = '100.127.0.1';
const SCANNER_PORTS = [1001, 1002, 1003];
const METRICS_PORT = 9597;
const SLOW_MS = 120_000;

/**
 * The sender: one raw socket on the attacker's end of the veth, frames built
 * before the first is sent, then sent at `rate` a second in bursts of 32
 * (the namespace pair's sendFromAttacker sends as fast as it can: a flood
 * at a set rate needs its own pacing).
 * Plan items: "s<port>" a SYN of the scanner, "f<count>" that many forged
 * sources, continuing from the last.
 */
const SENDER = String.raw`
import json, socket, struct, sys, time
ifname, dst_mac, dst_ip, scanner, rate, plan = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), socket.inet_aton(sys.argv[3]), socket.inet_aton(sys.argv[4]), float(sys.argv[5]), sys.argv[6].split(',')
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
def csum(b):
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def frame(src, sport, dport):
    tcp = struct.pack('!HHIIBBHHH', sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack('!H', csum(src + dst_ip + struct.pack('!BBH', 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst_ip)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    return dst_mac + src_mac + b'\x08\x00' + ip + tcp
frames, forged = [], 0
for item in plan:
    if item[0] == 's':
        frames.append(frame(scanner, 40000, int(item[1:])))
    else:
        for _ in range(int(item[1:])):
            frames.append(frame(struct.pack('!I', 0x64400000 + forged), 1024 + forged % 60000, 9))
            forged += 1
start = time.monotonic()
for i, f in enumerate(frames):
    s.send(f)
    if i % 32 == 31:
        ahead = (i + 1) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
print(json.dumps({'sent': len(frames), 'seconds': time.monotonic() - start}))
`;

type Admission = Pick<DatapathCounters, 'syn' | 'scanAdmitted' | 'scanPromoted' | 'probationEvicted' | 'protectedEvicted' | 'scanBlocked'>;

describe('churn-proof tracking under a forged-source flood', () => {
  let net: NamespacePair;
  let svc: Services;

  const pinned = (map: string) => BpfMap.openPinned(join(svc.pinRoot, net.victimIf, map));
  /** The XDP program's counters, as the probe reports them (GetStatus). */
  const kernel = async (): Promise<Admission> => {
    const c = (await svc.probeStatus()).counters!;
    return { syn: c.syn, scanAdmitted: c.scanAdmitted, scanPromoted: c.scanPromoted, probationEvicted: c.probationEvicted, protectedEvicted: c.protectedEvicted, scanBlocked: c.scanBlocked };
  };
  const policyMetrics = async (): Promise<Map<string, number>> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${METRICS_PORT}/metrics`]);
    return new Map(
      r.stdout
        .split('\n')
        .filter((l) => l.startsWith('packetwatch_policy_'))
        .map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]),
    );
  };
  const policy = async () => {
    const m = await policyMetrics();
    return {
      received: m.get('packetwatch_policy_events_received_total'),
      lost: m.get('packetwatch_policy_events_lost_total'),
      admitted: m.get('packetwatch_policy_tracked_sources_admitted_total'),
      promoted: m.get('packetwatch_policy_tracked_sources_promoted_total'),
      probationEvicted: m.get('packetwatch_policy_tracked_sources_evicted_total{space="probation"}'),
      protectedEvicted: m.get('packetwatch_policy_tracked_sources_evicted_total{space="protected"}'),
    };
  };

  beforeAll(async () => {
    net = createNamespacePair(29);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_PORTSCAN_PORT_THRESHOLD: '3',
        PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
        PW_MAX_BLOCKS_PER_MINUTE: '0',
        PW_SCAN_PROBATION_SIZE: String(KERNEL_PROBATION),
        PW_SCAN_TABLE_SIZE: String(KERNEL_PROTECTED),
        PW_MAX_TRACKED_SOURCES: String(POLICY_MAX_SOURCES),
        PW_POLICY_PROMETHEUS_PORT: String(METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_LOG_FORMAT: 'json',
        PW_LOG_LEVEL: 'info',
      },
    });
    await svc.start();
  }, SLOW_MS);

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  it('detects a scanner spreading 3 ports over T/2 inside 50,000 forged sources a second, in the kernel and in the policy; the counters show the churn', async () => {
    // The flood matters: between the scanner's first and second SYN come
    // more sources than a plain LRU in the same memory keeps, in the kernel
    // and in the policy, and fewer than probation holds; between its second
    // and third, more than both spaces together.
    expect(BEFORE_SECOND).toBeGreaterThan(Math.max(KERNEL_LRU_SAME_MEMORY, POLICY_LRU_SAME_MEMORY));
    expect(BEFORE_SECOND).toBeLessThan(Math.min(KERNEL_PROBATION, POLICY_PROBATION));
    expect(BEFORE_THIRD).toBeGreaterThan(Math.max(KERNEL_PROBATION + KERNEL_PROTECTED, POLICY_MAX_SOURCES));

    // Nothing admitted yet: the scanner's first SYN takes the first slot of each probation ring.
    const k0 = await kernel();
    const p0 = await policy();
    expect({ admitted: k0.scanAdmitted, policyAdmitted: p0.admitted }).toEqual({ admitted: 0n, policyAdmitted: 0 });

    const mac = (await net.inVictim('cat', [`/sys/class/net/${net.victimIf}/address`])).stdout.trim();
    const plan = [`s${SCANNER_PORTS[0]}`, `f${BEFORE_SECOND}`, `s${SCANNER_PORTS[1]}`, `f${BEFORE_THIRD}`, `s${SCANNER_PORTS[2]}`].join(',');
    const r = await net.inAttacker('/usr/bin/python3', ['-c', SENDER, net.attackerIf, mac, net.victimAddr, SCANNER, String(RATE), plan], SLOW_MS);
    expect(r.stderr).toBe('');
    const sent = JSON.parse(r.stdout) as { sent: number; seconds: number };
    expect(sent.sent).toBe(FORGED + 3);
    console.log('churn flood:', JSON.stringify({ ...sent, perSecond: Math.round(sent.sent / sent.seconds) }));

    // Every frame reached the program (a veth drops none at this pace).
    await waitFor('the flood counted by the XDP program', async () => ((await kernel()).syn - k0.syn >= BigInt(FORGED + 3) ? true : undefined), SLOW_MS);
    const k = await kernel();
    // Admissions: every forged source and the scanner's first SYN. Its
    // second promoted it, leaving its stub in its slot: every admission past
    // the first lap forgets one, but the stub's forgetting loses nothing
    // (the scanner is in the protected space) and is not counted.
    const admitted = FORGED + 1;
    expect({
      syn: k.syn - k0.syn,
      scanAdmitted: k.scanAdmitted,
      scanPromoted: k.scanPromoted,
      probationEvicted: k.probationEvicted,
      protectedEvicted: k.protectedEvicted,
      scanBlocked: k.scanBlocked,
    }).toEqual({
      syn: BigInt(FORGED + 3),
      scanAdmitted: BigInt(admitted),
      scanPromoted: 1n,
      probationEvicted: BigInt(admitted - KERNEL_PROBATION - 1),
      protectedEvicted: 0n,
      scanBlocked: 1n,
    });
    // Blocked by the kernel's own detector, at the third port.
    const blocklist = pinned('blocklist');
    try {
      const entry = blocklist.lookup(parseAddress(SCANNER));
      expect(entry && blockCodec.read(entry, 0).flags).toBe(1);
    } finally {
      blocklist.close();
    }
    expect((await listAllBlocks(svc.probeClient)).map((b) => b.ip)).toEqual([SCANNER]);

    // The policy got every event, and its own detector crossed on the scanner's three ports.
    await waitFor('every event at the policy', async () => ((await policy()).received! - p0.received! >= FORGED + 3 ? true : undefined), SLOW_MS);
    const decision = await waitFor(
      'the policy decision on the scanner',
      async () => (await listAllDecisions(svc.policyClient, false)).find((d) => d.ip === SCANNER),
      SLOW_MS,
    );
    expect(decision.reason).toMatch(new RegExp(`^port scan: 3 ports \\(${SCANNER_PORTS.join(', ')}\\) within \\d+\\.\\d{3}s$`));
    expect((await listAllDecisions(svc.policyClient, false)).map((d) => d.ip)).toEqual([SCANNER]);
    expect(await policy()).toEqual({
      received: p0.received! + FORGED + 3,
      lost: 0,
      admitted,
      promoted: 1,
      probationEvicted: admitted - POLICY_PROBATION - 1,
      protectedEvicted: 0,
    });
  });
});
