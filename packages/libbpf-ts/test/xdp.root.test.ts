// XDP links on a veth pair made for this file: one end in the root namespace
// (down, so nothing is sent), its peer in a network namespace of our own.
// Attach in generic and driver mode, query, pin, reopen, update, detach.
import { execFileSync } from 'node:child_process';
import {
  BpfError,
  type Collection,
  InterfaceNotFoundError,
  ObjectSpec,
  type Program,
  XdpLink,
  ifindex,
  xdpQuery,
} from 'libbpf-ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CompiledFixtures, compileFixtures, pinDir, removePinDir, thrown } from './helpers.js';

const BPF_LINK_TYPE_XDP = 6;
const NETNS = `pwlt${process.pid}`;
const IFACE = `pwlt${process.pid}a`;
const PEER = `pwlt${process.pid}b`;

let fx: CompiledFixtures;
let col: Collection;
let dir: string;
let record: Program;
let drop: Program;
const links: XdpLink[] = [];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

beforeAll(() => {
  fx = compileFixtures('maps');
  col = ObjectSpec.open(fx.path('maps')).load();
  record = col.program('xdp_record');
  drop = col.program('xdp_drop');
  dir = pinDir('xdp');
  ip('netns', 'add', NETNS);
  ip('link', 'add', IFACE, 'type', 'veth', 'peer', 'name', PEER, 'netns', NETNS);
});

afterEach(() => {
  // Whatever a test attached goes, even when it failed half-way.
  for (const l of links.splice(0)) {
    try {
      l.detach();
    } catch {
      // already detached
    }
    l.close();
  }
  removePinDir(dir);
  dir = pinDir('xdp');
});

afterAll(() => {
  // Deleting one end of a veth pair deletes both; the namespace goes last.
  for (const args of [['link', 'del', IFACE], ['netns', 'del', NETNS]]) {
    try {
      ip(...args);
    } catch {
      // not created
    }
  }
  if (dir) removePinDir(dir);
  col?.close();
  fx?.cleanup();
});

function attach(prog: Program, iface: string | number, mode?: 'generic' | 'driver'): XdpLink {
  const link = prog.attachXdp(iface, mode ? { mode } : {});
  links.push(link);
  return link;
}

const none = { mode: 'none', progId: 0, driverProgId: 0, genericProgId: 0, offloadProgId: 0 };

describe('attachXdp', () => {
  it('reports no program on a fresh interface', () => {
    expect(xdpQuery(IFACE)).toEqual(none);
  });

  for (const mode of ['generic', 'driver'] as const) {
    it(`attaches in ${mode} mode, as xdpQuery and the link report`, () => {
      const id = record.info().id;
      const link = attach(record, IFACE, mode);
      expect(xdpQuery(IFACE)).toEqual({
        mode,
        progId: id,
        driverProgId: mode === 'driver' ? id : 0,
        genericProgId: mode === 'generic' ? id : 0,
        offloadProgId: 0,
      });
      expect(link.mode()).toBe(mode);
      expect(link.ifindex).toBe(ifindex(IFACE));
      const info = link.info();
      expect(info).toEqual({ id: info.id, type: BPF_LINK_TYPE_XDP, progId: id, ifindex: ifindex(IFACE) });
      expect(info.id).toBeGreaterThan(0);
    });
  }

  it('lets the kernel pick driver mode on veth when no mode is given', () => {
    attach(record, IFACE);
    expect(xdpQuery(IFACE)).toMatchObject({ mode: 'driver', driverProgId: record.info().id });
  });

  it('attaches by interface index', () => {
    const link = attach(drop, ifindex(IFACE), 'generic');
    expect(link.ifindex).toBe(ifindex(IFACE));
    expect(xdpQuery(ifindex(IFACE)).progId).toBe(drop.info().id);
  });

  it('detaches when the last descriptor of an unpinned link closes', () => {
    const link = attach(record, IFACE, 'generic');
    links.pop();
    link.close();
    expect(xdpQuery(IFACE)).toEqual(none);
    expect(thrown(() => link.info())).toMatchObject({ name: 'BpfError', code: 'EBADF' });
  });

  it('detaches at detach() while the descriptor stays open', () => {
    const link = attach(record, IFACE, 'driver');
    link.detach();
    expect(xdpQuery(IFACE)).toEqual(none);
    // The kernel keeps the detached link, no longer bound to an interface.
    expect(link.info()).toMatchObject({ type: BPF_LINK_TYPE_XDP, ifindex: 0 });
  });

  it('throws BpfError EBUSY for a second link in the same mode', () => {
    attach(record, IFACE, 'generic');
    const err = thrown(() => attach(drop, IFACE, 'generic'));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EBUSY', op: 'bpf_link_create' });
    expect(xdpQuery(IFACE).progId).toBe(record.info().id);
  });

  it('throws BpfError EEXIST for a link in the other mode', () => {
    attach(record, IFACE, 'driver');
    const err = thrown(() => attach(drop, IFACE, 'generic'));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EEXIST', op: 'bpf_link_create' });
    expect(xdpQuery(IFACE)).toMatchObject({ mode: 'driver', progId: record.info().id });
  });

  it('throws InterfaceNotFoundError for an interface that does not exist', () => {
    const err = thrown(() => record.attachXdp('nonexistent0', { mode: 'generic' }));
    expect(err).toBeInstanceOf(InterfaceNotFoundError);
    expect(err).toMatchObject({ code: 'ENODEV', op: 'if_nametoindex' });
    expect(thrown(() => xdpQuery('nonexistent0'))).toBeInstanceOf(InterfaceNotFoundError);
  });
});

describe('XdpLink.update', () => {
  it('swaps the attached program', () => {
    const link = attach(record, IFACE, 'driver');
    link.update(drop);
    expect(link.info().progId).toBe(drop.info().id);
    expect(xdpQuery(IFACE)).toMatchObject({ mode: 'driver', progId: drop.info().id });
    link.update(record);
    expect(xdpQuery(IFACE).progId).toBe(record.info().id);
  });
});

describe('XdpLink pins', () => {
  it('keeps the program attached after close and detaches it through the reopened pin', () => {
    const path = `${dir}/link`;
    const link = record.attachXdp(IFACE, { mode: 'generic' });
    const linkId = link.info().id;
    link.pin(path);
    link.close();
    expect(xdpQuery(IFACE)).toMatchObject({ mode: 'generic', progId: record.info().id });

    const reopened = XdpLink.openPinned(path);
    links.push(reopened);
    expect(reopened.ifindex).toBe(ifindex(IFACE));
    expect(reopened.info()).toMatchObject({ id: linkId, progId: record.info().id, ifindex: ifindex(IFACE) });
    expect(reopened.mode()).toBe('generic');
    reopened.detach();
    expect(xdpQuery(IFACE)).toEqual(none);
  });

  it('updates the program through a reopened pin', () => {
    const path = `${dir}/link-update`;
    const link = attach(record, IFACE, 'driver');
    link.pin(path);
    const reopened = XdpLink.openPinned(path);
    links.push(reopened);
    reopened.update(drop);
    expect(link.info().progId).toBe(drop.info().id);
    expect(xdpQuery(IFACE).progId).toBe(drop.info().id);
  });

  it('throws BpfError ENOENT when opening a path with no pin', () => {
    expect(thrown(() => XdpLink.openPinned(`${dir}/no-such-link`))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
  });
});
