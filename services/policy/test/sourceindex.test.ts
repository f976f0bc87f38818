import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/prng.js';
import { SourceIndex } from '../src/sourceindex.js';
import type { SourceKey } from '../src/sourcekey.js';

/** A key of each kind the index keeps apart: an int32, 16 latin1 bytes, and others (a Map's). */
function keyOf(random: () => number, kind: number, i: number): SourceKey {
  if (kind === 0) return (i * 2654435761) | 0;
  if (kind === 1) {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(0x20010db8, 0);
    b.writeUInt32BE(i >>> 0, 4);
    b[15] = Math.floor(random() * 256);
    return b.toString('latin1');
  }
  return [`short${i}`, i + 0.5, 2 ** 31 + i, `${'\u0100'}${'x'.repeat(14)}${i % 10}`][i % 4]!;
}

describe('SourceIndex: the detector’s index from source key to slot', () => {
  it('holds what a Map holds through 100,000 random adds, removes and value changes of all kinds of keys, handles moved as it says', () => {
    const random = prng(7);
    /** Handle of each value, as onMove keeps it (values are unique, like the detector's slots). */
    const handleOf = new Map<number, number>();
    let moves = 0;
    const index = new SourceIndex((value, handle) => {
      moves++;
      handleOf.set(value, handle);
    });
    const want = new Map<SourceKey, number>();
    const live: SourceKey[] = [];
    const wrong: string[] = [];
    const check = (ok: boolean, what: string) => {
      if (!ok && wrong.length < 5) wrong.push(what);
    };
    let nextValue = 0;
    for (let step = 0; step < 100_000; step++) {
      const r = random();
      if (r < 0.55 || live.length === 0) {
        const key = keyOf(random, Math.floor(random() * 3), Math.floor(random() * 50_000));
        if (want.has(key)) {
          check(index.find(key) === handleOf.get(want.get(key)!), `step ${step}: find(${String(key)})`);
          continue;
        }
        check(index.find(key) === -1, `step ${step}: find(${String(key)}) before its add`);
        // Values as the detector's: a slot s or a probation slot's complement ~p.
        const value = random() < 0.5 ? nextValue : ~nextValue;
        nextValue++;
        handleOf.set(value, index.add(key, value));
        want.set(key, value);
        live.push(key);
      } else if (r < 0.9) {
        const at = Math.floor(random() * live.length);
        const key = live[at]!;
        const value = want.get(key)!;
        const h = index.find(key);
        check(h === handleOf.get(value), `step ${step}: handle of ${String(key)}`);
        index.remove(h);
        handleOf.delete(value);
        want.delete(key);
        live[at] = live[live.length - 1]!;
        live.pop();
        check(index.find(key) === -1, `step ${step}: find(${String(key)}) after its removal`);
      } else {
        const key = live[Math.floor(random() * live.length)]!;
        const h = index.find(key);
        const value = nextValue++;
        index.setValue(h, value);
        handleOf.delete(want.get(key)!);
        handleOf.set(value, h);
        want.set(key, value);
      }
      check(index.size === want.size, `step ${step}: size ${index.size}, want ${want.size}`);
    }
    for (const [key, value] of want) {
      const h = index.find(key);
      check(h === handleOf.get(value) && index.value(h) === value, `the end: ${String(key)}`);
    }
    expect(wrong).toEqual([]);
    expect(want.size).toBeGreaterThan(10_000);
    // The tables were rebuilt along the way, entries moved and their owner told.
    expect(moves).toBeGreaterThan(10_000);
  });

  it('keeps an int32 key, 16 latin1 bytes and a key of another kind that look alike apart', () => {
    const index = new SourceIndex(() => {});
    const v6 = Buffer.from('00000000000000000000ffff0a000001', 'hex').toString('latin1');
    const keys: SourceKey[] = [0x0a000001, v6, String(0x0a000001), 0x0a000001 + 0.5, v6.slice(0, 15)];
    keys.forEach((k, i) => index.add(k, i));
    keys.forEach((k, i) => expect(index.value(index.find(k))).toBe(i));
    expect(index.find(-0)).toBe(-1);
    index.add(0, 9);
    expect(index.value(index.find(-0))).toBe(9);
    expect(index.size).toBe(6);
  });
});
