// Lists too large for one gRPC message, with the real probe and policy: a
// blocklist of 65,536 IPv6 blocks with TTLs (4.7 MB as one ListBlocks answer,
// over grpc-js's 4 MiB limit) is read whole, a page at a time, by
// `packetwatchctl blocks --json` and by the policy's reconcile, which adopts
// what its blocks-per-minute cap allows and, without a cap, all of it
// (ListDecisions then pages 65,536 decisions). Blocks removed between pages
// do not upset a listing; bad page sizes and forged tokens are refused.
//
// The blocks are written into the probe's pinned map directly (through
// @packetwatch/bpf's ListMap, which moves the lists' generation as the probe
// does): 65,536 BlockIp calls would only make the suite slow.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { BlockReason, type BlockEntry, Generation, ListMap, addrCodec, blockCodec, formatAddress } from '@packetwatch/bpf';
import { PAGE_BYTES, PageList, pageToken } from '@packetwatch/common';
import { type ListBlocksResponse, type ListDecisionsResponse, PolicyService, ProbeService } from '@packetwatch/proto';
import { BpfMap, clock } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockRow, BlocksJson } from '../../services/cli/src/blocks.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, Services, call, listAllDecisions } from '@packetwatch/test-support/services';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const POLICY_MAIN = fileURLToPath(new URL('../../services/policy/dist/main.js', import.meta.url));
const BLOCKS = 65_536;
const CAP = 120;
const METRICS_PORT = 19_913;
/** Upper bounds for what is slow on a loaded machine (a reconcile of 65,536 blocks, a process start): generous on purpose. */
const SLOW_MS = 180_000;

/**
 * The i-th block of the suite, 16 bytes, in address order: long addresses
 * (2001:db8:dddd:dddd:dddd:dddd:100a:1bcd, 38 characters) as a real IPv6
 * scan leaves, so that the whole list is the 4.7 MB of the issue.
 */
function address(i: number): Buffer {
  const a = Buffer.alloc(16, 0xdd);
  a.writeUInt32BE(0x20010db8, 0);
  a.writeUInt16BE(0x1000 + (i >> 12), 12);
  a.writeUInt16BE(0x1000 + (i & 0xfff), 14);
  return a;
}
const ALL = Array.from({ length: BLOCKS }, (_, i) => formatAddress(address(i)));

describe('lists of 65,536 kernel blocks and decisions, a page at a time', () => {
  let net: NamespacePair;
  let svc: Services;
  /** The policy's settings: the cap is lifted for the second policy process. */
  const env: Record<string, string> = {
    PW_BLOCKLIST_SIZE: String(BLOCKS),
    PW_MAX_BLOCKS_PER_MINUTE: String(CAP),
    // One reconcile, at the probe's hello: a periodic one a minute later would adopt another CAP.
    PW_RECONCILE_INTERVAL: '86400',
    PW_POLICY_PROMETHEUS_PORT: String(METRICS_PORT),
    PW_METRICS_HOST: '127.0.0.1',
    // A warning per block not adopted (65,416 of them) is not what this suite reads.
    PW_LOG_LEVEL: 'error',
    // Each IPv6 address a source of its own: blocks of whole addresses, the longest text a block has.
    PW_IPV6_PREFIX: '128',
  };
  let blocklist: ListMap<Buffer, BlockEntry>;
  let probeId: string;

  const metric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
  };
  const adoption = async () => ({
    adopted: await metric('packetwatch_policy_kernel_blocks_adopted_total'),
    notAdopted: await metric('packetwatch_policy_kernel_blocks_not_adopted_total'),
  });
  /** A new policy process: started, connected to the probe, its reconcile counted as far as `done` says. */
  const reconciledPolicy = async (done: (c: { adopted: number; notAdopted: number }) => boolean) => {
    await svc.startPolicy();
    await waitFor('the probe to connect', async () => ((await svc.policyStatus()).probes.length === 1 ? true : undefined), SLOW_MS);
    return waitFor(
      'the reconcile to go through the kernel blocks',
      async () => {
        const c = await adoption();
        return done(c) ? c : undefined;
      },
      SLOW_MS,
    );
  };
  const ctl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, '--policy', `unix:${svc.policySocket}`, '--probe', `unix:${svc.probeSocket}`, ...args],
        { timeout: SLOW_MS, maxBuffer: 512 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });
  const blocksJson = async (...args: string[]): Promise<BlocksJson> => {
    const r = await ctl('--json', 'blocks', ...args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as BlocksJson;
  };
  const listBlocks = (pageSize: number, token = '') =>
    call<ListBlocksResponse>((cb) => svc.probeClient.listBlocks({ pageSize, pageToken: token }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, cb));
  const listDecisions = (req: { all: boolean; pageSize: number; pageToken: string }) =>
    call<ListDecisionsResponse>((cb) => svc.policyClient.listDecisions(req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, cb));
  /** Every page of the probe's ListBlocks, with the encoded size of each answer. */
  const blockPages = async (pageSize: number) => {
    const pages: { ips: string[]; bytes: number }[] = [];
    let token = '';
    do {
      const res = await listBlocks(pageSize, token);
      pages.push({ ips: res.blocks.map((b) => b.ip), bytes: ProbeService.listBlocks.responseSerialize(res).length });
      token = res.nextPageToken;
    } while (token !== '');
    return pages;
  };

  beforeAll(async () => {
    net = createNamespacePair(13);
    svc = new Services({ netns: net.victimNs, ifdev: net.victimIf, env });
    // The probe first, and the blocks into its map, so that the policy's first reconcile sees them all.
    await svc.startProbe();
    // Keyed by whole addresses as a policy configures it (kept in its pins), before any block is written.
    await svc.startPolicy();
    await waitFor('the probe keyed by whole IPv6 addresses', async () => ((await svc.probeStatus()).scanConfig?.ipv6Prefix === 128 ? true : undefined), SLOW_MS);
    await svc.policy!.stop('SIGKILL');
    const pins = `${svc.pinRoot}/${net.victimIf}`;
    blocklist = new ListMap(BpfMap.openPinned(`${pins}/blocklist`), addrCodec, blockCodec, new Generation(BpfMap.openPinned(`${pins}/list_gen`)));
    const now = clock.boottimeNs();
    const written = blocklist.setMany(
      Array.from({ length: BLOCKS }, (_, i) => [address(i), { createdNs: now, expiresNs: now + BigInt(86_400 + i) * 1_000_000_000n, reason: BlockReason.Manual, flags: 0 }] as const),
    );
    expect(written).toBe(BLOCKS);
    // Written past the probe: it counts them at its next sweep of the map (every 5 s).
    await waitFor('the probe to count the blocks', async () => ((await svc.probeStatus()).blocks === BLOCKS ? true : undefined), SLOW_MS);
    probeId = (await svc.probeStatus()).probeId;
  }, SLOW_MS);

  afterAll(async () => {
    blocklist?.map.close();
    await svc?.destroy();
    net?.destroy();
  });

  it('holds 65,536 blocks, whose one-message answer would be over 4 MiB; pages of 10,000 stay under PAGE_BYTES', async () => {
    const st = await svc.probeStatus();
    expect({ blocks: st.blocks, capacity: st.blockCapacity }).toEqual({ blocks: BLOCKS, capacity: BLOCKS });
    const pages = await blockPages(10_000);
    expect(pages.map((p) => p.ips.length)).toEqual([10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 5536]);
    expect(pages.flatMap((p) => p.ips)).toEqual(ALL);
    for (const p of pages) expect(p.bytes).toBeLessThanOrEqual(PAGE_BYTES);
    expect(pages.reduce((n, p) => n + p.bytes, 0)).toBeGreaterThan(4 * 1024 * 1024);
  });

  it('refuses a negative page_size and forged page tokens with INVALID_ARGUMENT (probe)', async () => {
    await expect(listBlocks(-1)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'invalid page_size -1: 0 (the default, 1000) or a positive number' });
    await expect(listBlocks(10, 'x'.repeat(100_000))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'invalid page_token: not a token of this service' });
    await expect(listBlocks(10, pageToken(PageList.AllDecisions, Buffer.alloc(8)))).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'invalid page_token: it belongs to another list (or the same list with other arguments)',
    });
    // The probe carries on: a default page is 1,000 blocks.
    expect((await listBlocks(0)).blocks).toHaveLength(1000);
  });

  it(`the policy's reconcile reads every block and adopts ${CAP} within its cap; blocks --json lists all 65,536`, async () => {
    const counts = await reconciledPolicy((c) => c.adopted + c.notAdopted === BLOCKS);
    expect(counts).toEqual({ adopted: CAP, notAdopted: BLOCKS - CAP });
    const status = await svc.policyStatus();
    expect({ active: status.activeDecisions, repairs: status.driftRepairs }).toEqual({ active: BigInt(CAP), repairs: BigInt(CAP) });

    const doc = await blocksJson();
    expect(Object.keys(doc)).toEqual(['blocks', 'kernel']);
    expect(doc.kernel).toEqual({ address: `unix:${svc.probeSocket}`, checked: true, probeId, error: null });
    expect(doc.blocks).toHaveLength(BLOCKS);
    expect(new Set(doc.blocks.map((r) => r.ip))).toEqual(new Set(ALL));
    const decided = doc.blocks.filter((r) => r.decisionId !== null);
    const orphans = doc.blocks.filter((r) => r.decisionId === null);
    expect(decided).toHaveLength(CAP);
    expect(decided.every((r) => r.origin === 'kernel' && r.active && r.inKernel === true && r.drift === null && r.expires !== null)).toBe(true);
    expect(orphans).toHaveLength(BLOCKS - CAP);
    expect(orphans.every((r: BlockRow) => r.drift === 'noDecision' && r.inKernel === true && r.expires !== null && r.enforcedBy[0] === probeId)).toBe(true);
  }, SLOW_MS);

  it('without a cap, a new policy adopts the other 65,416; ListDecisions pages all 65,536 under PAGE_BYTES each', async () => {
    await svc.policy!.stop();
    env.PW_MAX_BLOCKS_PER_MINUTE = '0';
    const counts = await reconciledPolicy((c) => c.adopted === BLOCKS - CAP);
    expect(counts).toEqual({ adopted: BLOCKS - CAP, notAdopted: 0 });

    const sizes: number[] = [];
    const ids: bigint[] = [];
    let token = '';
    do {
      const res = await listDecisions({ all: false, pageSize: 10_000, pageToken: token });
      sizes.push(PolicyService.listDecisions.responseSerialize(res).length);
      ids.push(...res.decisions.map((d) => d.id));
      token = res.nextPageToken;
    } while (token !== '');
    expect(ids).toHaveLength(BLOCKS);
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    for (const bytes of sizes) expect(bytes).toBeLessThanOrEqual(PAGE_BYTES);
    expect(sizes.reduce((n, b) => n + b, 0)).toBeGreaterThan(4 * 1024 * 1024);

    const doc = await blocksJson();
    expect(doc.blocks).toHaveLength(BLOCKS);
    expect(new Set(doc.blocks.map((r) => r.ip))).toEqual(new Set(ALL));
    expect(doc.blocks.every((r) => r.decisionId !== null && r.origin === 'kernel' && r.drift === null && r.inKernel === true)).toBe(true);
    const policyOnly = await blocksJson('--no-drift', '--all');
    expect(policyOnly.blocks).toHaveLength(BLOCKS);
    expect(policyOnly.kernel).toEqual({ address: null, checked: false, probeId: null, error: null });
  }, SLOW_MS);

  it('refuses forged and borrowed page tokens with INVALID_ARGUMENT (policy)', async () => {
    await expect(listDecisions({ all: false, pageSize: -1, pageToken: '' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const first = await listDecisions({ all: true, pageSize: 10, pageToken: '' });
    expect(first.decisions).toHaveLength(10);
    await expect(listDecisions({ all: false, pageSize: 10, pageToken: first.nextPageToken })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'invalid page_token: it belongs to another list (or the same list with other arguments)',
    });
    const probeToken = (await listBlocks(10)).nextPageToken;
    await expect(listDecisions({ all: true, pageSize: 10, pageToken: probeToken })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(await listAllDecisions(svc.policyClient, true, 10_000)).toHaveLength(BLOCKS);
  });

  it('lists every remaining block once when blocks, the last one listed among them, are removed between pages', async () => {
    const first = await listBlocks(1000);
    expect(first.blocks.map((b) => b.ip)).toEqual(ALL.slice(0, 1000));
    // The page's last block and the ten after it go, as the expiry sweep or an UnblockIp would take them.
    const gone = Array.from({ length: 11 }, (_, k) => 999 + k);
    expect(blocklist.deleteMany(gone.map(address))).toBe(11);
    const rest: string[] = [];
    let token = first.nextPageToken;
    do {
      const res = await listBlocks(1000, token);
      rest.push(...res.blocks.map((b) => b.ip));
      token = res.nextPageToken;
    } while (token !== '');
    expect(rest).toEqual(ALL.slice(1010));
  });

  it('a policy with PW_DECISION_RETENTION under an hour stops at start with exit code 2, naming it', async () => {
    const p = new ServiceProcess([process.execPath, POLICY_MAIN], { PW_DECISION_RETENTION: '30m', PW_STATE_DIR: `${svc.dir}/refused`, PW_POLICY_SOCKET: `${svc.dir}/refused.sock`, PW_POLICY_REPORT_SOCKET: `${svc.dir}/refused-report.sock` });
    expect(await p.exited).toBe(2);
    expect(p.stderr.join('\n')).toContain(
      'invalid PW_DECISION_RETENTION="30m": expected a duration: 0, or 1h to 3650d (seconds, or a number with s, m, h or d)',
    );
  });
});
