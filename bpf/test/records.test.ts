// The TypeScript codecs must describe exactly the structs of bpf/packetwatch.h.
// The compiled object's BTF is the compiler's own account of those layouts,
// so each codec is compared with it field by field.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  COUNTER_NAMES,
  BlockReason,
  DropMode,
  SCAN_MAX_PORTS,
  ProbeKind,
  PortState,
  ScanVerdict,
  openPortBitmap,
  openPortRanges,
  portCountCodec,
  TCP_FLAGS,
  probeLabel,
  blockCodec,
  countersCodec,
  lpmKeyCodec,
  probeConfigCodec,
  scanHeadCodec,
  probationCodec,
  scanStateSize,
  synEventCodec,
  addrCodec,
} from '@packetwatch/bpf';
import { ObjectSpec, type StructCodec } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';

const OBJECT = fileURLToPath(new URL('../build/packetwatch.bpf.o', import.meta.url));

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
}

const types: BtfType[] = (
  JSON.parse(execFileSync('bpftool', ['btf', 'dump', 'file', OBJECT, '-j'], { encoding: 'utf8' })) as { types: BtfType[] }
).types;
const byId = new Map(types.map((t) => [t.id, t]));

function named(kind: string, name: string): BtfType {
  const t = types.find((x) => x.kind === kind && x.name === name);
  if (!t) throw new Error(`${kind} ${name} not in the BTF of ${OBJECT}`);
  return t;
}

function sizeOf(id: number): number {
  const t = byId.get(id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  switch (t.kind) {
    case 'INT':
    case 'STRUCT':
    case 'UNION':
    case 'ENUM':
      return t.size!;
    case 'ARRAY':
      return t.nr_elems! * sizeOf(t.type_id!);
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
      return sizeOf(t.type_id!);
    default:
      throw new Error(`no size for BTF kind ${t.kind}`);
  }
}

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The struct's members as the codec names them; members named _x are padding. */
function btfLayout(structName: string, rename: Record<string, string> = {}) {
  const s = named('STRUCT', structName);
  return {
    size: s.size,
    fields: s
      .members!.filter((m) => !m.name.startsWith('_'))
      .map((m) => ({ name: rename[m.name] ?? camel(m.name), offset: m.bits_offset / 8, size: sizeOf(m.type_id) })),
  };
}

function codecLayout<T>(c: StructCodec<T>) {
  return { size: c.size, fields: [...c.fields] };
}

describe('record codecs match the BTF of the compiled object', () => {
  it('struct pw_syn_event (ring-buffer record)', () => {
    expect(codecLayout(synEventCodec)).toEqual(btfLayout('pw_syn_event'));
  });

  it('struct pw_block (blocklist value)', () => {
    expect(codecLayout(blockCodec)).toEqual(btfLayout('pw_block'));
  });

  it('struct pw_probe_config (probe_config value)', () => {
    expect(codecLayout(probeConfigCodec)).toEqual(btfLayout('pw_probe_config'));
  });

  it('struct pw_port_count (port_count value: closed mode, the ports declared open)', () => {
    expect(codecLayout(portCountCodec)).toEqual(btfLayout('pw_port_count'));
    const states = Object.fromEntries(named('ENUM', 'pw_port_state').values!.map((v) => [v.name, v.val]));
    expect(states).toEqual({ PW_PORT_UNKNOWN: PortState.Unknown, PW_PORT_CLOSED: PortState.Closed, PW_PORT_OPEN: PortState.Open });
  });

  it('sets one bit a port in the open-port bitmap, as the program reads it (bit p % 64 of little-endian word p / 64)', () => {
    const bits = openPortBitmap([
      [0, 0],
      [63, 65],
      [65535, 65535],
    ]);
    const set: number[] = [];
    for (let w = 0; w < bits.length / 8; w++) {
      const word = bits.readBigUInt64LE(w * 8);
      for (let b = 0; b < 64; b++) if ((word >> BigInt(b)) & 1n) set.push(w * 64 + b);
    }
    expect(set).toEqual([0, 63, 64, 65, 65535]);
    expect(openPortRanges(bits)).toEqual([
      [0, 0],
      [63, 65],
      [65535, 65535],
    ]);
  });

  it('struct pw_lpm_key (allowlist key)', () => {
    expect(codecLayout(lpmKeyCodec)).toEqual(btfLayout('pw_lpm_key', { prefixlen: 'prefixLen' }));
  });

  it('struct pw_addr (blocklist key)', () => {
    expect(addrCodec.size).toBe(named('STRUCT', 'pw_addr').size);
  });

  it('struct pw_counters holds one u64 per enum pw_counter value, in the codec order', () => {
    const e = named('ENUM', 'pw_counter');
    const names = e.values!.filter((v) => v.name !== 'PW_CNT_MAX').sort((a, b) => a.val - b.val);
    expect(names.map((v) => camel(v.name.replace(/^PW_CNT_/, '').toLowerCase()))).toEqual([...COUNTER_NAMES]);
    expect(e.values!.find((v) => v.name === 'PW_CNT_MAX')!.val).toBe(COUNTER_NAMES.length);
    expect(named('STRUCT', 'pw_counters').size).toBe(countersCodec.size);
  });

  it('enum pw_block_reason and enum pw_drop_mode have the values the TypeScript enums use', () => {
    const reasons = Object.fromEntries(named('ENUM', 'pw_block_reason').values!.map((v) => [v.name, v.val]));
    expect(reasons).toEqual({
      PW_REASON_UNSPECIFIED: BlockReason.Unspecified,
      PW_REASON_PORTSCAN: BlockReason.Portscan,
      PW_REASON_MANUAL: BlockReason.Manual,
    });
    const modes = Object.fromEntries(named('ENUM', 'pw_drop_mode').values!.map((v) => [v.name, v.val]));
    expect(modes).toEqual({ PW_DROP_SYN: DropMode.Syn, PW_DROP_ALL: DropMode.All });
    const verdicts = Object.fromEntries(named('ENUM', 'pw_scan_verdict').values!.map((v) => [v.name, v.val]));
    expect(verdicts).toEqual({
      PW_SCAN_NONE: ScanVerdict.None,
      PW_SCAN_BLOCKED: ScanVerdict.Blocked,
      PW_SCAN_CAPPED: ScanVerdict.Capped,
      PW_SCAN_ALLOWLISTED: ScanVerdict.Allowlisted,
      PW_SCAN_FULL: ScanVerdict.Full,
    });
    const kinds = Object.fromEntries(named('ENUM', 'pw_probe_kind').values!.map((v) => [v.name, v.val]));
    expect(kinds).toEqual({ PW_PROBE_SYN: ProbeKind.Syn, PW_PROBE_STEALTH: ProbeKind.Stealth, PW_PROBE_FRAGMENT: ProbeKind.Fragment });
  });

  it('struct pw_scan (head of a scanners value) and the most ports the detector takes', () => {
    expect(codecLayout(scanHeadCodec)).toEqual(btfLayout('pw_scan'));
    expect(codecLayout(probationCodec)).toEqual(btfLayout('pw_probation'));
    const limit = named('ENUM', 'pw_scan_limit').values!;
    expect(limit).toEqual([{ name: 'PW_SCAN_MAX_PORTS', val: SCAN_MAX_PORTS }]);
  });

  it('sizes a scanners value as the object does for the most ports (PW_SCAN_STATE_SIZE)', () => {
    const spec = ObjectSpec.open(OBJECT);
    try {
      const sizes = Object.fromEntries(spec.maps.filter((m) => m.name.startsWith('scan')).map((m) => [m.name, m.valueSize]));
      expect(sizes).toMatchObject({ scanners: scanStateSize(SCAN_MAX_PORTS), scan_fresh: scanStateSize(SCAN_MAX_PORTS), scan_probation: probationCodec.size });
    } finally {
      spec.close();
    }
  });

  it('labels a probe that is not a SYN by its kind and flags', () => {
    const { FIN, SYN, RST, PSH, ACK, URG } = TCP_FLAGS;
    expect(probeLabel(ProbeKind.Syn, SYN)).toBe('');
    expect(probeLabel(ProbeKind.Stealth, 0)).toBe('NULL');
    expect(probeLabel(ProbeKind.Stealth, FIN)).toBe('FIN');
    expect(probeLabel(ProbeKind.Stealth, FIN | PSH | URG)).toBe('XMAS');
    expect(probeLabel(ProbeKind.Stealth, SYN | FIN)).toBe('SYN+FIN');
    expect(probeLabel(ProbeKind.Stealth, RST | FIN | PSH)).toBe('PSH+RST+FIN');
    expect(probeLabel(ProbeKind.Stealth, ACK | FIN)).toBe('ACK+FIN');
    expect(probeLabel(ProbeKind.Fragment, 0)).toBe('fragment');
  });

  it('round-trips a SYN event through the codec', () => {
    const ev = {
      tsNs: 123456789012345n,
      saddr: Buffer.from('00000000000000000000ffffc0000207', 'hex'),
      daddr: Buffer.from('20010db8000000000000000000000001', 'hex'),
      sport: 65535,
      dport: 1,
      ifindex: 7,
      tcpFlags: 2,
      ipVersion: 4,
      ttl: 255,
      scan: 1,
      vlanId: 4095,
      kind: ProbeKind.Stealth,
      portState: PortState.Open,
    };
    const buf = Buffer.alloc(synEventCodec.size);
    synEventCodec.write(ev, buf, 0);
    expect(synEventCodec.read(buf, 0)).toEqual(ev);
  });
});
