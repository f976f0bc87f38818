// ObjectSpec and Collection: opening an ELF object, editing it before load
// (constants, map sizes) and the errors of open, edit and load.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BpfError, MapType, ObjectSpec, VerifierError } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BPF_PROG_TYPE_XDP, type CompiledFixtures, XDP_DROP, XDP_PASS, compileFixtures, packet, thrown } from './helpers.js';

let fx: CompiledFixtures;
beforeAll(() => {
  fx = compileFixtures('maps', 'reject');
});
afterAll(() => fx?.cleanup());

describe('ObjectSpec.open', () => {
  it('lists the maps with their declared types and sizes', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      const byName = Object.fromEntries(spec.maps.map((m) => [m.name, m]));
      expect(Object.keys(byName).sort()).toEqual(['array', 'events', 'hash', 'lpm', 'maps.bss', 'maps.rodata', 'percpu', 'progs', 'sized']);
      expect(byName['hash']).toEqual({ name: 'hash', type: MapType.Hash, keySize: 4, valueSize: 8, maxEntries: 8, internal: false });
      expect(byName['array']).toEqual({ name: 'array', type: MapType.Array, keySize: 4, valueSize: 16, maxEntries: 4, internal: false });
      expect(byName['percpu']).toEqual({
        name: 'percpu',
        type: MapType.PercpuArray,
        keySize: 4,
        valueSize: 4,
        maxEntries: 2,
        internal: false,
      });
      expect(byName['lpm']).toEqual({ name: 'lpm', type: MapType.LpmTrie, keySize: 8, valueSize: 4, maxEntries: 16, internal: false });
      expect(byName['events']).toMatchObject({ type: MapType.RingBuf, maxEntries: 1 << 16, internal: false });
      expect(byName['maps.rodata']).toMatchObject({ type: MapType.Array, keySize: 4, valueSize: 4, maxEntries: 1, internal: true });
      expect(byName['maps.bss']).toMatchObject({ type: MapType.Array, keySize: 4, valueSize: 4, maxEntries: 1, internal: true });
    } finally {
      spec.close();
    }
  });

  it('lists the programs with their sections and types', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      expect(spec.programs).toEqual([
        { name: 'xdp_record', section: 'xdp', type: BPF_PROG_TYPE_XDP },
        { name: 'xdp_record_var', section: 'xdp', type: BPF_PROG_TYPE_XDP },
        { name: 'xdp_drop', section: 'xdp', type: BPF_PROG_TYPE_XDP },
      ]);
    } finally {
      spec.close();
    }
  });

  it('lists the global variables of .rodata and .bss', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      expect(spec.globals).toEqual(
        expect.arrayContaining([
          { name: 'verdict', section: '.rodata', offset: 0, size: 4 },
          { name: 'seq', section: '.bss', offset: 0, size: 4 },
        ]),
      );
      expect(spec.globals).toHaveLength(2);
    } finally {
      spec.close();
    }
  });

  it('throws BpfError ENOENT for a missing file', () => {
    const err = thrown(() => ObjectSpec.open(`${fx.path('maps')}.missing`));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, op: 'bpf_object__open_file' });
  });

  it('throws BpfError for a file that is not an ELF object', () => {
    const path = join(fx.dir, 'not-elf.o');
    writeFileSync(path, 'this is not an ELF object\n');
    const err = thrown(() => ObjectSpec.open(path));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'LIBBPF_ERRNO__FORMAT', errno: 4001, op: 'bpf_object__open_file' });
    expect((err as BpfError).message).toContain('BPF object format invalid');
    expect((err as BpfError).log).toContain('is not a proper ELF object');
  });
});

describe('ObjectSpec.setConstant', () => {
  function verdictOf(constant?: number): number {
    const spec = ObjectSpec.open(fx.path('maps'));
    if (constant !== undefined) spec.setConstant('verdict', constant);
    const col = spec.load();
    try {
      return col.program('xdp_record').testRun({ data: packet(64) }).retval;
    } finally {
      col.close();
    }
  }

  it('leaves the compiled-in value when not called', () => {
    expect(verdictOf()).toBe(XDP_PASS);
  });

  it('changes what the loaded program does', () => {
    expect(verdictOf(XDP_DROP)).toBe(XDP_DROP);
    expect(verdictOf(XDP_PASS)).toBe(XDP_PASS);
  });

  it('accepts a bigint, a boolean or a Buffer of the variable size', () => {
    const run = (value: bigint | boolean | Buffer): number => {
      const col = ObjectSpec.open(fx.path('maps')).setConstant('verdict', value).load();
      try {
        return col.program('xdp_record').testRun({ data: packet(64) }).retval;
      } finally {
        col.close();
      }
    };
    expect(run(1n)).toBe(XDP_DROP);
    expect(run(true)).toBe(XDP_DROP);
    expect(run(Buffer.from([2, 0, 0, 0]))).toBe(XDP_PASS);
  });

  it('throws BpfError ENOENT for an unknown name', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      const err = thrown(() => spec.setConstant('no_such_constant', 1));
      expect(err).toBeInstanceOf(BpfError);
      expect(err).toMatchObject({ code: 'ENOENT' });
    } finally {
      spec.close();
    }
  });

  it('throws BpfError EINVAL for a Buffer of the wrong size', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      const err = thrown(() => spec.setConstant('verdict', Buffer.alloc(8)));
      expect(err).toBeInstanceOf(BpfError);
      expect(err).toMatchObject({ code: 'EINVAL' });
    } finally {
      spec.close();
    }
  });
});

describe('ObjectSpec.setMaxEntries', () => {
  it('sizes the loaded map', () => {
    const spec = ObjectSpec.open(fx.path('maps')).setMaxEntries('hash', 100);
    expect(spec.maps.find((m) => m.name === 'hash')?.maxEntries).toBe(100);
    const col = spec.load();
    try {
      expect(col.map('hash').maxEntries).toBe(100);
      expect(col.map('hash').info().maxEntries).toBe(100);
    } finally {
      col.close();
    }
  });
});

describe('ObjectSpec.setValueSize', () => {
  it('sizes the values of a map declared by sizes', () => {
    const spec = ObjectSpec.open(fx.path('maps')).setValueSize('sized', 40);
    expect(spec.maps.find((m) => m.name === 'sized')?.valueSize).toBe(40);
    const col = spec.load();
    try {
      const map = col.map('sized');
      expect(map.info().valueSize).toBe(40);
      const value = Buffer.alloc(40, 7);
      map.update(Buffer.from([1, 0, 0, 0]), value);
      expect(map.lookup(Buffer.from([1, 0, 0, 0]))).toEqual(value);
    } finally {
      col.close();
    }
  });
});

describe.each([
  ['setMaxEntries', (spec: ObjectSpec, map: string, n: number) => spec.setMaxEntries(map, n), 'hash'],
  ['setValueSize', (spec: ObjectSpec, map: string, n: number) => spec.setValueSize(map, n), 'sized'],
] as const)('ObjectSpec.%s, refused', (_name, set, map) => {
  it('throws BpfError ENOENT for an unknown map', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      expect(thrown(() => set(spec, 'no_such_map', 4))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
    } finally {
      spec.close();
    }
  });

  it('throws RangeError for a size that is not a positive 32-bit integer', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    try {
      expect(() => set(spec, map, 0)).toThrow(RangeError);
      expect(() => set(spec, map, 1.5)).toThrow(RangeError);
      expect(() => set(spec, map, 2 ** 32)).toThrow(RangeError);
    } finally {
      spec.close();
    }
  });
});

describe('ObjectSpec after load', () => {
  it('refuses every edit and a second load with BpfError EBUSY', () => {
    const spec = ObjectSpec.open(fx.path('maps'));
    const col = spec.load();
    try {
      for (const edit of [
        () => spec.setConstant('verdict', XDP_DROP),
        () => spec.setMaxEntries('hash', 16),
        () => spec.setValueSize('sized', 16),
        () => spec.pinMap('hash', '/sys/fs/bpf/libbpf-ts-never-created'),
        () => spec.load(),
      ]) {
        const err = thrown(edit);
        expect(err).toBeInstanceOf(BpfError);
        expect(err).toMatchObject({ code: 'EBUSY' });
      }
      // The loaded program kept the compiled-in constant.
      expect(col.program('xdp_record').testRun({ data: packet(64) }).retval).toBe(XDP_PASS);
    } finally {
      col.close();
    }
  });
});

describe('ObjectSpec.load', () => {
  it('throws VerifierError with the verifier log for a program the verifier rejects', () => {
    const spec = ObjectSpec.open(fx.path('reject'));
    try {
      const err = thrown(() => spec.load());
      expect(err).toBeInstanceOf(VerifierError);
      expect(err).toBeInstanceOf(BpfError);
      const v = err as VerifierError;
      expect(v.op).toBe('bpf_object__load');
      expect(v.code).toBe('EACCES');
      expect(v.log).toContain("prog 'xdp_unchecked': -- BEGIN PROG LOAD LOG --");
    } finally {
      spec.close();
    }
  });

  it("keeps the verifier's reason at the end of a long log", () => {
    const spec = ObjectSpec.open(fx.path('reject'));
    try {
      const v = thrown(() => spec.load()) as VerifierError;
      // The fixture's log runs to tens of kilobytes before the reason.
      expect(v.log.length).toBeGreaterThan(16_384);
      expect(v.log).toContain('invalid access to packet, off=0 size=1');
      expect(v.log).toContain('-- END PROG LOAD LOG --');
    } finally {
      spec.close();
    }
  });
});

describe('Collection', () => {
  it('names its maps and programs and hands out their handles', () => {
    const col = ObjectSpec.open(fx.path('maps')).load();
    try {
      expect([...col.mapNames].sort()).toEqual(['array', 'events', 'hash', 'lpm', 'maps.bss', 'maps.rodata', 'percpu', 'progs', 'sized']);
      expect(col.programNames).toEqual(['xdp_record', 'xdp_record_var', 'xdp_drop']);
      expect(col.map('hash')).toBe(col.map('hash'));
      expect(col.map('hash')).toMatchObject({ name: 'hash', type: MapType.Hash, keySize: 4, valueSize: 8, maxEntries: 8 });
      expect(col.program('xdp_drop').info()).toMatchObject({ name: 'xdp_drop', type: BPF_PROG_TYPE_XDP });
    } finally {
      col.close();
    }
  });

  it('throws BpfError ENOENT for an unknown map or program', () => {
    const col = ObjectSpec.open(fx.path('maps')).load();
    try {
      expect(thrown(() => col.map('no_such_map'))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
      expect(thrown(() => col.program('no_such_program'))).toMatchObject({ name: 'BpfError', code: 'ENOENT' });
    } finally {
      col.close();
    }
  });

  it('closes the handles it gave out', () => {
    const col = ObjectSpec.open(fx.path('maps')).load();
    const map = col.map('hash');
    const prog = col.program('xdp_drop');
    col.close();
    expect(thrown(() => map.fd)).toMatchObject({ name: 'BpfError', code: 'EBADF' });
    expect(thrown(() => prog.testRun({ data: packet(64) }))).toMatchObject({ name: 'BpfError', code: 'EBADF' });
  });
});
