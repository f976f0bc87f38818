// The XDP program attached for real, on a veth pair between this namespace
// and a peer namespace: a peer's curl produces an event through the
// ring-buffer reader, a block makes its connections time out, an unblock
// restores them, and nothing is left behind afterwards.
//
// The veth pair, the server and a loaded datapath with its reader are
// shared; each test starts from `attached()` (our program on the interface,
// the peer not blocked), so that none depends on what an earlier one did or
// failed to undo.
import { execFileSync } from 'node:child_process';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Datapath, type SynEvent, formatAddress, synEventCodec } from '@packetwatch/bpf';
import { type RingBufferReader, type XdpLink, xdpQuery } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestNet, createTestNet, waitFor } from '@packetwatch/test-support';

const CURL_TIMEOUT_EXIT = 28;
/** Upper bound for an event to come through, or the kernel to free an object, on a loaded machine: generous on purpose. */
const SLOW_MS = 30_000;

describe('XDP on a veth pair, driver mode', () => {
  let net: TestNet;
  let server: Server;
  let port: number;
  let dp: Datapath;
  let link: XdpLink | undefined;
  let reader: RingBufferReader;
  const events: SynEvent[] = [];

  /** The peer's HTTP request: its status in stdout. Only connections expected to be dropped pass a short timeout (it merely bounds the wait). */
  const curl = (host: string, timeout = '10') =>
    net.inPeer('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--connect-timeout', timeout, `http://${host}:${port}/`]);
  const fromPeer = (e: SynEvent, addr: string) => formatAddress(e.saddr) === addr && e.dport === port;

  /** What every test starts from: our program attached in driver mode (again, if a test detached it), and the peer not blocked. */
  const attached = () => {
    link ??= dp.program.attachXdp(net.hostIf, { mode: 'driver' });
    dp.unblock(net.peerAddr);
  };

  beforeAll(async () => {
    net = createTestNet(1);
    server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '::', resolve));
    port = (server.address() as AddressInfo).port;
    dp = Datapath.load();
    reader = dp.reader({ onBatch: (b) => events.push(...[...b].map((r) => synEventCodec.read(r, 0))) }).start();
  });

  afterAll(async () => {
    reader?.close();
    link?.close();
    dp?.close();
    net?.destroy();
    await new Promise((r) => server?.close(r));
  });

  it('attaches in driver mode and the kernel reports our program on the interface', () => {
    // From a bare interface, whatever an earlier test left attached.
    link?.close();
    link = undefined;
    expect(xdpQuery(net.hostIf).mode).toBe('none');
    link = dp.program.attachXdp(net.hostIf, { mode: 'driver' });
    const q = xdpQuery(net.hostIf);
    expect(q.mode).toBe('driver');
    expect(q.progId).toBe(dp.program.info().id);
  });

  it("reports the peer's connection as a SYN event read through the ring-buffer reader", async () => {
    attached();
    const seen = events.length;
    const r = await curl(net.hostAddr);
    expect(r).toMatchObject({ code: 0, stdout: '200' });
    const ev = await waitFor('the SYN event of the peer', () => events.slice(seen).find((e) => fromPeer(e, net.peerAddr)), SLOW_MS);
    expect(formatAddress(ev.daddr)).toBe(net.hostAddr);
    expect(ev.ifindex).toBe(link!.ifindex);
    expect(ev.ipVersion).toBe(4);
    expect(ev.sport).toBeGreaterThan(0);
  });

  it('reports IPv6 connections too', async () => {
    attached();
    const seen = events.length;
    const r = await curl(`[${net.hostAddr6}]`);
    expect(r).toMatchObject({ code: 0, stdout: '200' });
    const ev = await waitFor('the IPv6 SYN event of the peer', () => events.slice(seen).find((e) => fromPeer(e, net.peerAddr6)), SLOW_MS);
    expect(ev.ipVersion).toBe(6);
    expect(formatAddress(ev.daddr)).toBe(net.hostAddr6);
  });

  it("drops a blocked peer's SYNs: its curl times out and it produces no event", async () => {
    attached();
    dp.block(net.peerAddr);
    try {
      const before = dp.counters().synDropped;
      const seen = events.length;
      const r = await curl(net.hostAddr, '1');
      expect(r.code).toBe(CURL_TIMEOUT_EXIT);
      expect(dp.counters().synDropped).toBeGreaterThan(before);
      // The peer's IPv6 address is another source and still gets through.
      expect(await curl(`[${net.hostAddr6}]`)).toMatchObject({ code: 0, stdout: '200' });
      // The ring buffer keeps the program's order: once the IPv6 SYN's event
      // is here, an event for the earlier IPv4 SYNs would be here too.
      await waitFor('the IPv6 SYN event of the peer', () => events.slice(seen).find((e) => fromPeer(e, net.peerAddr6)), SLOW_MS);
      expect(events.slice(seen).filter((e) => formatAddress(e.saddr) === net.peerAddr)).toEqual([]);
    } finally {
      dp.unblock(net.peerAddr);
    }
  });

  it('lets the peer connect again once unblocked', async () => {
    attached();
    dp.block(net.peerAddr);
    expect((await curl(net.hostAddr, '1')).code).toBe(CURL_TIMEOUT_EXIT);
    expect(dp.unblock(net.peerAddr)).toBe(true);
    expect(await curl(net.hostAddr)).toMatchObject({ code: 0, stdout: '200' });
  });

  it('leaves no program, link or map behind once closed', async () => {
    // A datapath of its own, so that closing it leaves the shared one to the
    // other tests; the interface takes one XDP program, so ours makes room.
    link?.close();
    link = undefined;
    const own = Datapath.load();
    const ownEvents: SynEvent[] = [];
    const ownReader = own.reader({ onBatch: (b) => ownEvents.push(...[...b].map((r) => synEventCodec.read(r, 0))) }).start();
    const ownLink = own.program.attachXdp(net.hostIf, { mode: 'driver' });
    let closed = false;
    try {
      // In use before it is closed: the peer's connection went through it.
      expect(await curl(net.hostAddr)).toMatchObject({ code: 0, stdout: '200' });
      await waitFor('the SYN event of the peer', () => ownEvents.find((e) => fromPeer(e, net.peerAddr)), SLOW_MS);
      const progId = own.program.info().id;
      const mapIds = ['blocklist', 'allowlist', 'events', 'counters'].map((m) => own.collection.map(m).info().id);
      ownReader.close();
      ownLink.close();
      expect(xdpQuery(net.hostIf).mode).toBe('none');
      own.close();
      closed = true;
      const exists = (kind: string, id: number) => {
        try {
          execFileSync('bpftool', [kind, 'show', 'id', String(id)], { stdio: 'ignore' });
          return true;
        } catch {
          return false;
        }
      };
      // The kernel frees objects once the last reference is gone, which can lag the close by a moment (RCU).
      await waitFor('program and maps to be freed', () => (!exists('prog', progId) && mapIds.every((id) => !exists('map', id)) ? true : undefined), SLOW_MS);
    } finally {
      ownReader.close();
      ownLink.close();
      if (!closed) own.close();
    }
  });
});
