// Program: kernel info and BPF_PROG_TEST_RUN.
import { BpfError, clock } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';
import { BPF_PROG_TYPE_XDP, XDP_DROP, XDP_PASS, packet, loadedMaps, thrown } from './helpers.js';

const maps = loadedMaps();

describe('Program.info', () => {
  it('reports the kernel id, name, type and tag', () => {
    const info = maps.col.program('xdp_record').info();
    expect(info.id).toBeGreaterThan(0);
    expect(info.name).toBe('xdp_record');
    expect(info.type).toBe(BPF_PROG_TYPE_XDP);
    expect(info.tag).toMatch(/^[0-9a-f]{16}$/);
    expect(maps.col.program('xdp_drop').info().id).not.toBe(info.id);
    expect(maps.col.program('xdp_drop').info().tag).not.toBe(info.tag);
  });
});

describe('Program.testRun', () => {
  it("returns the program's verdict", () => {
    expect(maps.col.program('xdp_record').testRun({ data: packet(64) }).retval).toBe(XDP_PASS);
    expect(maps.col.program('xdp_drop').testRun({ data: packet(64) }).retval).toBe(XDP_DROP);
  });

  it('returns the packet unchanged when the program does not modify it', () => {
    const data = packet(100);
    const r = maps.col.program('xdp_record').testRun({ data });
    expect(r.dataOut).toEqual(data);
    expect(r.ctxOut).toBeUndefined();
  });

  it('measures the mean duration of repeated runs: positive, and within the time the call took', () => {
    const repeat = 1000;
    const t0 = clock.monotonicNs();
    const r = maps.col.program('xdp_drop').testRun({ data: packet(64), repeat });
    const elapsed = clock.monotonicNs() - t0;
    expect(r.retval).toBe(XDP_DROP);
    expect(r.durationNs).toBeGreaterThan(0);
    // The kernel times the runs with CLOCK_MONOTONIC inside the call and reports the total over repeat, rounded down.
    expect(BigInt(r.durationNs) * BigInt(repeat) <= elapsed).toBe(true);
  });

  it('runs the program repeat times', () => {
    const bss = maps.col.map('maps.bss');
    const seq = (): number => bss.lookup(Buffer.alloc(4))?.readUInt32LE(0) ?? -1;
    const before = seq();
    maps.col.program('xdp_record').testRun({ data: packet(64), repeat: 7 });
    expect(seq()).toBe(before + 7);
  });

  it('throws BpfError ENOSPC when the packet does not fit in dataOutSize', () => {
    const err = thrown(() => maps.col.program('xdp_record').testRun({ data: packet(64), dataOutSize: 32 }));
    // The kernel copies what fits and reports ENOSPC for the rest.
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'ENOSPC', op: 'bpf_prog_test_run_opts' });
  });

  it('passes a context in and returns it', () => {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The context's data offsets must be 0 and len; ingress_ifindex 1 is lo.
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(64, 4);
    ctx.writeUInt32LE(1, 12);
    const r = maps.col.program('xdp_record').testRun({ data: packet(64), ctx });
    expect(r.retval).toBe(XDP_PASS);
    expect(r.ctxOut).toEqual(ctx);
  });

  it('throws RangeError for repeat 0 or a fraction', () => {
    expect(() => maps.col.program('xdp_drop').testRun({ data: packet(64), repeat: 0 })).toThrow(RangeError);
    expect(() => maps.col.program('xdp_drop').testRun({ data: packet(64), repeat: 1.5 })).toThrow(RangeError);
  });

  it('throws BpfError EINVAL for data shorter than an Ethernet header', () => {
    const err = thrown(() => maps.col.program('xdp_drop').testRun({ data: packet(13) }));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EINVAL', errno: 22, op: 'bpf_prog_test_run_opts' });
    expect(maps.col.program('xdp_drop').testRun({ data: packet(14) }).retval).toBe(XDP_DROP);
  });
});
