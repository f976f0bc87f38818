import type { ProbeConfig } from '@packetwatch/proto';
import { SCAN_MAX_PORTS, openPortBitmap } from '@packetwatch/bpf/records';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SCAN_CONFIG, type ScanConfig, checkScanConfig, fromRecord, kernelScanPorts, sameScanConfig, toProto, toRecord } from '../src/scanconfig.js';

const s = (seconds: number, nanos = 0) => ({ seconds: BigInt(seconds), nanos });

/** What a policy with PW_PORTSCAN_PORT_THRESHOLD=5 and the other settings at their defaults sends. */
const FROM_POLICY: ProbeConfig = { portThreshold: 5, window: s(60), blockTtl: s(0), maxBlocksPerMinute: 120, cappedBlockTtl: s(60), ipv6Prefix: 64, ipv4Prefix: 32, shadow: false, countClosed: false, openPorts: [] };

describe('scan configuration from the policy', () => {
  it('the defaults are the seed: 3 ports in 60 s, permanent blocks, 120 a minute, 60 s beyond', () => {
    expect(DEFAULT_SCAN_CONFIG).toEqual({ portThreshold: 3, windowSeconds: 60, blockTtlSeconds: 0, maxBlocksPerMinute: 120, cappedBlockTtlSeconds: 60, ipv6Prefix: 64, ipv4Prefix: 32, shadow: false, countClosed: false, openPorts: [] });
  });

  it('accepts a valid configuration as seconds', () => {
    expect(checkScanConfig({ ...FROM_POLICY, blockTtl: s(3600), cappedBlockTtl: s(1, 500_000_000) })).toEqual({
      ok: true,
      value: { portThreshold: 5, windowSeconds: 60, blockTtlSeconds: 3600, maxBlocksPerMinute: 120, cappedBlockTtlSeconds: 1.5, ipv6Prefix: 64, ipv4Prefix: 32, shadow: false, countClosed: false, openPorts: [] },
    });
  });

  it('takes an absent block TTL as permanent and 0 blocks a minute as no cap', () => {
    const c = checkScanConfig({ ...FROM_POLICY, blockTtl: undefined, maxBlocksPerMinute: 0 });
    expect(c).toEqual({ ok: true, value: expect.objectContaining({ blockTtlSeconds: 0, maxBlocksPerMinute: 0 }) });
  });

  it.each<[string, Partial<ProbeConfig>, string]>([
    ['a port threshold of 0', { portThreshold: 0 }, 'port_threshold is 0, not 1 to 255'],
    ['a port threshold above 255', { portThreshold: 256 }, 'port_threshold is 256, not 1 to 255'],
    ['no window', { window: undefined }, 'window is missing'],
    ['a zero window', { window: s(0) }, 'window is 0 s, not 1 to 86400 s'],
    ['a window over a day', { window: s(86_401) }, 'window is 86401 s, not 1 to 86400 s'],
    ['a negative window', { window: s(-5) }, 'window is -5 s, not 1 to 86400 s'],
    ['nanos out of range', { window: s(60, 1_000_000_000) }, 'window has nanos 1000000000, not 0 to 999999999'],
    ['a negative block TTL', { blockTtl: s(-1) }, 'block_ttl is -1 s, not 0 to 315360000 s'],
    ['no capped TTL', { cappedBlockTtl: undefined }, 'capped_block_ttl is missing'],
    ['a zero capped TTL', { cappedBlockTtl: s(0) }, 'capped_block_ttl is 0 s, not 1 to 315360000 s'],
    ['a budget over a million a minute', { maxBlocksPerMinute: 1_000_001 }, 'max_blocks_per_minute is 1000001, not 0 to 1000000'],
    ['an open port 0', { openPorts: [{ first: 0, last: 10 }] }, 'open_ports holds 0-10, not a range of 1 to 65535'],
    ['an open port above 65535', { openPorts: [{ first: 8080, last: 65536 }] }, 'open_ports holds 8080-65536, not a range of 1 to 65535'],
    ['a reversed open-port range', { openPorts: [{ first: 9000, last: 8000 }] }, 'open_ports holds 9000-8000, not a range of 1 to 65535'],
  ])('refuses %s, naming the field', (_, change, reason) => {
    expect(checkScanConfig({ ...FROM_POLICY, ...change })).toEqual({ ok: false, reason });
  });

  it('tells an equal configuration (no reload) from a changed one', () => {
    const a = checkScanConfig(FROM_POLICY);
    const b = checkScanConfig({ ...FROM_POLICY, window: s(30) });
    if (!a.ok || !b.ok) throw new Error('valid configurations refused');
    expect(sameScanConfig(a.value, { ...a.value })).toBe(true);
    expect(sameScanConfig(a.value, b.value)).toBe(false);
    expect(sameScanConfig(a.value, DEFAULT_SCAN_CONFIG)).toBe(false);
    const closed = checkScanConfig({ ...FROM_POLICY, countClosed: true });
    const ports = checkScanConfig({ ...FROM_POLICY, countClosed: true, openPorts: [{ first: 8080, last: 8080 }] });
    const samePorts = checkScanConfig({ ...FROM_POLICY, countClosed: true, openPorts: [{ first: 8080, last: 8080 }, { first: 8080, last: 8080 }] });
    if (!closed.ok || !ports.ok || !samePorts.ok) throw new Error('valid configurations refused');
    expect(sameScanConfig(a.value, closed.value)).toBe(false);
    expect(sameScanConfig(closed.value, ports.value)).toBe(false);
    expect(sameScanConfig(ports.value, samePorts.value)).toBe(true);
    // Shadow mode is in the program's constants: a switch loads it again.
    expect(sameScanConfig(a.value, { ...a.value, shadow: true })).toBe(false);
  });

  it('round-trips through the pinned record and the status message', () => {
    const received = new Date(1_700_000_000_123);
    for (const shadow of [false, true]) {
      const c: ScanConfig = { portThreshold: 5, windowSeconds: 30, blockTtlSeconds: 600, maxBlocksPerMinute: 7, cappedBlockTtlSeconds: 1.5, ipv6Prefix: 56, ipv4Prefix: 24, shadow, countClosed: false, openPorts: [] };
      expect(toRecord(c, received).shadow).toBe(shadow ? 1 : 0);
      expect(fromRecord(toRecord(c, received))).toEqual({ config: c, received });
      expect(checkScanConfig(toProto(c))).toEqual({ ok: true, value: c });
    }
    // Closed mode and the ports declared open: pinned in port_count, as Datapath.load writes it.
    const closed: ScanConfig = {
      portThreshold: 5,
      windowSeconds: 30,
      blockTtlSeconds: 600,
      maxBlocksPerMinute: 7,
      cappedBlockTtlSeconds: 1.5,
      ipv6Prefix: 56,
      ipv4Prefix: 24,
      shadow: false,
      countClosed: true,
      openPorts: [
        [8080, 8080],
        [30000, 32767],
      ],
    };
    const ports = { closed: 1, open: openPortBitmap(closed.openPorts) };
    expect(fromRecord(toRecord(closed, received), ports)).toEqual({ config: closed, received });
    expect(checkScanConfig(toProto(closed))).toEqual({ ok: true, value: closed });
    // Pins of a probe that predates closed mode: all mode.
    expect(fromRecord(toRecord(closed, received))).toEqual({ config: { ...closed, countClosed: false, openPorts: [] }, received });
  });

  it('reads an all-zero or tampered pinned record as none', () => {
    const zero = { portThreshold: 0, blocksPerMin: 0, windowNs: 0n, blockNs: 0n, cappedBlockNs: 0n, receivedUnixMs: 0n, ipv6Prefix: 0, ipv4Prefix: 0, shadow: 0 };
    expect(fromRecord(zero)).toBeUndefined();
    expect(fromRecord({ ...toRecord(DEFAULT_SCAN_CONFIG, new Date()), windowNs: 0n })).toBeUndefined();
  });

  it('runs the kernel detector with the threshold up to the ports it tracks, else leaves detection to the policy', () => {
    expect(kernelScanPorts({ ...DEFAULT_SCAN_CONFIG, portThreshold: 5 }, true)).toBe(5);
    expect(kernelScanPorts({ ...DEFAULT_SCAN_CONFIG, portThreshold: SCAN_MAX_PORTS }, true)).toBe(SCAN_MAX_PORTS);
    expect(kernelScanPorts({ ...DEFAULT_SCAN_CONFIG, portThreshold: SCAN_MAX_PORTS + 1 }, true)).toBe(0);
    expect(kernelScanPorts({ ...DEFAULT_SCAN_CONFIG, portThreshold: 5 }, false)).toBe(0);
  });
});
