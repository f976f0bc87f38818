// Pinning in bpffs: maps and programs outlive their descriptors, are opened
// again by path, and a second load of an object reuses a pinned map. Pins
// live as long as their bpffs is mounted in some mount namespace: which
// namespaces hold a given bpffs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { BpfError, BpfMap, MapType, ObjectSpec, Program, XdpLink, bpffsMountedIn, u32, u64 } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XDP_DROP, packet, pinDir, removePinDir, loadedMaps, thrown } from './helpers.js';

const maps = loadedMaps();
let dir: string;
beforeAll(() => {
  dir = pinDir('pin');
});
afterAll(() => {
  if (dir) removePinDir(dir);
});

describe('BpfMap pins', () => {
  it('opens a pinned map that shares data and info with the original', () => {
    const hash = maps.col.map('hash');
    hash.pin(`${dir}/hash`);
    const opened = BpfMap.openPinned(`${dir}/hash`);
    try {
      expect(opened.info()).toEqual(hash.info());
      expect(opened).toMatchObject({ name: 'hash', type: MapType.Hash, keySize: 4, valueSize: 8, maxEntries: 8 });
      hash.typed(u32, u64).set(1, 111n);
      expect(opened.typed(u32, u64).get(1)).toBe(111n);
      opened.typed(u32, u64).set(2, 222n);
      expect(hash.typed(u32, u64).get(2)).toBe(222n);
    } finally {
      opened.close();
    }
    // Closing the opened handle leaves the collection's descriptor working.
    expect(hash.typed(u32, u64).get(1)).toBe(111n);
  });

  it('keeps a pinned map after every descriptor is closed', () => {
    const spec = ObjectSpec.open(maps.fx.path('maps'));
    const other = spec.load();
    other.map('lpm').pin(`${dir}/lpm-orphan`);
    const id = other.map('lpm').info().id;
    other.close();
    const opened = BpfMap.openPinned(`${dir}/lpm-orphan`);
    try {
      expect(opened.info().id).toBe(id);
    } finally {
      opened.close();
    }
  });

  it('throws BpfError ENOENT when opening a path with no pin', () => {
    const err = thrown(() => BpfMap.openPinned(`${dir}/no-such-pin`));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'ENOENT', op: 'bpf_obj_get' });
  });

  it('throws BpfError EEXIST when pinning over an existing pin', () => {
    maps.col.map('array').pin(`${dir}/array`);
    const err = thrown(() => maps.col.map('percpu').pin(`${dir}/array`));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EEXIST', op: 'bpf_obj_pin' });
  });

  it('throws BpfError EINVAL when opening a pinned program as a map', () => {
    maps.col.program('xdp_drop').pin(`${dir}/prog-for-map`);
    expect(thrown(() => BpfMap.openPinned(`${dir}/prog-for-map`))).toMatchObject({ name: 'BpfError', code: 'EINVAL' });
  });
});

describe('Program pins', () => {
  it('opens a pinned program that is the same kernel program', () => {
    const prog = maps.col.program('xdp_drop');
    prog.pin(`${dir}/xdp_drop`);
    const opened = Program.openPinned(`${dir}/xdp_drop`);
    try {
      expect(opened.name).toBe('xdp_drop');
      expect(opened.info()).toEqual(prog.info());
      expect(opened.testRun({ data: packet(64) }).retval).toBe(XDP_DROP);
    } finally {
      opened.close();
    }
  });

  it('throws BpfError ENOENT when opening a path with no pin', () => {
    expect(thrown(() => Program.openPinned(`${dir}/no-such-prog`))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
  });

  it('throws BpfError EINVAL when opening a pinned map as a program', () => {
    maps.col.map('events').pin(`${dir}/map-for-prog`);
    expect(thrown(() => Program.openPinned(`${dir}/map-for-prog`))).toMatchObject({ name: 'BpfError', code: 'EINVAL' });
  });
});

describe('XdpLink pins', () => {
  it('throws BpfError EINVAL when opening a pinned map as an XDP link', () => {
    // A per-CPU array's type number (6) is also the XDP link type's, so its
    // info read as a link's would pass for an XDP link.
    maps.col.map('percpu').pin(`${dir}/map-for-link`);
    expect(thrown(() => XdpLink.openPinned(`${dir}/map-for-link`))).toMatchObject({ name: 'BpfError', code: 'EINVAL' });
  });

  it('throws BpfError EINVAL when opening a pinned program as an XDP link', () => {
    maps.col.program('xdp_record').pin(`${dir}/prog-for-link`);
    expect(thrown(() => XdpLink.openPinned(`${dir}/prog-for-link`))).toMatchObject({ name: 'BpfError', code: 'EINVAL' });
  });
});

describe('ObjectSpec.pinMap', () => {
  it('pins the map at load and reuses it at the next load of the object', () => {
    const path = `${dir}/shared-hash`;
    const first = ObjectSpec.open(maps.fx.path('maps')).pinMap('hash', path).load();
    try {
      expect(existsSync(path)).toBe(true);
      first.map('hash').typed(u32, u64).set(7, 7777n);
      const second = ObjectSpec.open(maps.fx.path('maps')).pinMap('hash', path).load();
      try {
        expect(second.map('hash').info().id).toBe(first.map('hash').info().id);
        expect(second.map('hash').typed(u32, u64).get(7)).toBe(7777n);
        // The other maps are the second load's own.
        expect(second.map('array').info().id).not.toBe(first.map('array').info().id);
      } finally {
        second.close();
      }
    } finally {
      first.close();
    }
  });

  it('fails the load with BpfError EINVAL when the pinned map does not match the definition', () => {
    const path = `${dir}/mismatch`;
    maps.col.map('array').pin(path); // an array where the object declares a hash
    const spec = ObjectSpec.open(maps.fx.path('maps')).pinMap('hash', path);
    try {
      const err = thrown(() => spec.load());
      expect(err).toBeInstanceOf(BpfError);
      expect(err).toMatchObject({ code: 'EINVAL', op: 'bpf_object__load' });
      expect((err as BpfError).log).toContain("couldn't reuse pinned map");
    } finally {
      spec.close();
    }
  });

  it('throws BpfError ENOENT for an unknown map', () => {
    const spec = ObjectSpec.open(maps.fx.path('maps'));
    try {
      expect(thrown(() => spec.pinMap('no_such_map', `${dir}/x`))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
    } finally {
      spec.close();
    }
  });
});

describe('bpffsMountedIn', () => {
  it("finds the bpffs a path is on in the mounts of this mount namespace's processes", () => {
    expect(bpffsMountedIn(dir, process.pid)).toBe(true);
    expect(bpffsMountedIn(tmpdir(), process.pid)).toBe(false);
  });

  it('does not find it in a mount namespace without it, even with another bpffs mounted at the same place', async () => {
    // A process in a mount namespace of its own, where /sys/fs/bpf is a new bpffs.
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'umount -l /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf && echo ready && exec sleep 60'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`unshare exited with ${code}`)));
      });
      expect(bpffsMountedIn(dir, child.pid!)).toBe(false);
      expect(bpffsMountedIn(dir, process.pid)).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("is undefined when the process's mounts cannot be read", () => {
    expect(bpffsMountedIn(dir, 2 ** 22 + 1)).toBeUndefined();
  });
});
