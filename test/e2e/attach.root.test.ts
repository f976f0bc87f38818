// The XDP program attached for real, on a veth pair between this namespace
// and a peer namespace: a peer's curl produces an event through the
// ring-buffer reader, a block makes its connections time out, an unblock
// restores them, and nothing is left behind afterwards.
import { execFileSync } from 'node:child_process';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Datapath, type SynEvent, formatAddress, synEventCodec } from '@packetwatch/bpf';
import { type RingBufferReader, type XdpLink, xdpQuery } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestNet, createTestNet, waitFor } from './netns.js';

const CURL_TIMEOUT_EXIT = 28;

describe('XDP on a veth pair, driver mode', () => {
  let net: TestNet;
  let server: Server;
  let port: number;
  let dp: Datapath;
  let link: XdpLink | undefined;
  let reader: RingBufferReader;
  const events: SynEvent[] = [];

  const curl = (host: string, timeout = '5') =>
    net.inPeer('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--connect-timeout', timeout, `http://${host}:${port}/`]);

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
    link = dp.program.attachXdp(net.hostIf, { mode: 'driver' });
    const q = xdpQuery(net.hostIf);
    expect(q.mode).toBe('driver');
    expect(q.progId).toBe(dp.program.info().id);
  });

  it("reports the peer's connection as a SYN event read through the ring-buffer reader", async () => {
    const r = await curl(net.hostAddr);
    expect(r).toMatchObject({ code: 0, stdout: '200' });
    const ev = await waitFor('the SYN event of the peer', () =>
      events.find((e) => formatAddress(e.saddr) === net.peerAddr && e.dport === port),
    );
    expect(formatAddress(ev.daddr)).toBe(net.hostAddr);
    expect(ev.ifindex).toBe(link!.ifindex);
    expect(ev.ipVersion).toBe(4);
    expect(ev.sport).toBeGreaterThan(0);
  });

  it('reports IPv6 connections too', async () => {
    const r = await curl(`[${net.hostAddr6}]`);
    expect(r).toMatchObject({ code: 0, stdout: '200' });
    await waitFor('the IPv6 SYN event of the peer', () =>
      events.find((e) => formatAddress(e.saddr) === net.peerAddr6 && e.dport === port && e.ipVersion === 6),
    );
  });

  it("drops a blocked peer's SYNs: its curl times out and it produces no event", async () => {
    dp.block(net.peerAddr);
    const before = dp.counters().synDropped;
    const seen = events.length;
    const r = await curl(net.hostAddr, '1');
    expect(r.code).toBe(CURL_TIMEOUT_EXIT);
    expect(dp.counters().synDropped).toBeGreaterThan(before);
    expect(events.slice(seen).filter((e) => formatAddress(e.saddr) === net.peerAddr)).toEqual([]);
    // The peer's IPv6 address is another source and still gets through.
    expect(await curl(`[${net.hostAddr6}]`)).toMatchObject({ code: 0, stdout: '200' });
  });

  it('lets the peer connect again once unblocked', async () => {
    expect(dp.unblock(net.peerAddr)).toBe(true);
    expect(await curl(net.hostAddr)).toMatchObject({ code: 0, stdout: '200' });
  });

  it('leaves no program, link or map behind once closed', () => {
    const progId = dp.program.info().id;
    const mapIds = ['blocklist', 'allowlist', 'events', 'counters'].map((m) => dp.collection.map(m).info().id);
    reader.close();
    link!.close();
    link = undefined;
    expect(xdpQuery(net.hostIf).mode).toBe('none');
    dp.close();
    const exists = (kind: string, id: number) => {
      try {
        execFileSync('bpftool', [kind, 'show', 'id', String(id)], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    };
    // The kernel frees objects once the last reference is gone, which can lag the close by a moment (RCU).
    return waitFor('program and maps to be freed', () =>
      !exists('prog', progId) && mapIds.every((id) => !exists('map', id)) ? true : undefined,
    );
  });
});
