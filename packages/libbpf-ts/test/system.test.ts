// Facts about the machine that need no privileges: clocks, CPUs, interfaces.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { InterfaceNotFoundError, clock, ifindex, ifname, possibleCpus } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';

describe('clock', () => {
  it('returns bigint nanoseconds for every clock', () => {
    expect(typeof clock.boottimeNs()).toBe('bigint');
    expect(typeof clock.monotonicNs()).toBe('bigint');
    expect(typeof clock.realtimeNs()).toBe('bigint');
  });

  it('reads a monotonic clock that never goes back', () => {
    let prev = clock.monotonicNs();
    for (let i = 0; i < 1000; i++) {
      const now = clock.monotonicNs();
      expect(now).toBeGreaterThanOrEqual(prev);
      prev = now;
    }
  });

  it('reads the boot-time clock at or after the monotonic clock', () => {
    // CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time spent suspended.
    const mono = clock.monotonicNs();
    expect(clock.boottimeNs()).toBeGreaterThanOrEqual(mono);
  });

  it('reads the realtime clock as the wall clock', () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const rt = clock.realtimeNs();
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    expect(rt).toBeGreaterThanOrEqual(before);
    expect(rt).toBeLessThanOrEqual(after);
  });
});

describe('clock.coarseTickNs', () => {
  it("is one tick of the kernel's CONFIG_HZ (from its build configuration, where the kernel ships one)", () => {
    const tick = clock.coarseTickNs();
    const hz = kernelHz();
    if (hz !== undefined) expect(tick).toBe(1_000_000_000n / BigInt(hz));
    // Every CONFIG_HZ Linux offers (100, 250, 300, 1000) gives a tick from 1 to 10 ms.
    expect(tick >= 1_000_000n && tick <= 10_000_000n).toBe(true);
  });
});

describe('clock.coarseLagNs', () => {
  it('is two ticks', () => {
    expect(clock.coarseLagNs()).toBe(2n * clock.coarseTickNs());
  });
});

describe('possibleCpus', () => {
  it('counts the CPUs listed in /sys/devices/system/cpu/possible', () => {
    // The file holds ranges such as "0-3" or "0,2-5".
    const ranges = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim().split(',');
    let n = 0;
    for (const r of ranges) {
      const [lo, hi] = r.split('-').map(Number);
      n += hi === undefined ? 1 : hi - (lo ?? 0) + 1;
    }
    expect(possibleCpus()).toBe(n);
  });
});

describe('interfaces', () => {
  it('maps the loopback interface between name and index', () => {
    expect(ifindex('lo')).toBe(1);
    expect(ifname(1)).toBe('lo');
    expect(ifindex(7)).toBe(7);
  });

  it('throws InterfaceNotFoundError for a name no interface has', () => {
    let err: unknown;
    try {
      ifindex('nonexistent0');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InterfaceNotFoundError);
    expect(err).toMatchObject({ code: 'ENODEV', op: 'if_nametoindex' });
  });

  it('returns undefined for an index no interface has', () => {
    expect(ifname(0x7ffffff0)).toBeUndefined();
  });
});

/** CONFIG_HZ from /boot/config-<release> or /proc/config.gz, when the kernel ships either. */
function kernelHz(): number | undefined {
  const boot = `/boot/config-${release()}`;
  const text = existsSync(boot)
    ? readFileSync(boot, 'utf8')
    : existsSync('/proc/config.gz')
      ? execFileSync('zcat', ['/proc/config.gz'], { encoding: 'utf8', maxBuffer: 16 << 20 })
      : '';
  const m = /^CONFIG_HZ=(\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}
