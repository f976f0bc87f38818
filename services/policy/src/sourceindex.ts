/**
 * The detector's index from source key to slot, without a Map entry or a
 * retained key per source: the keys the policy makes (sourcekey.ts: an
 * IPv4 source as an int32, any other as its 16 bytes as a latin1 string)
 * live in two open-addressing tables of typed arrays, an int32 key in one
 * word, a 16-byte key in four, each beside its value (an int32). Linear
 * probing, removed entries left as tombstones until the table is rebuilt,
 * at most 3/4 of a table in use (live entries and tombstones). A key of any
 * other kind (the detector's API takes any number or string) goes to a Map.
 * An entry's handle, (position << 2) | table, stays valid until a later
 * add() rebuilds that table: then onMove(value, handle) tells the owner
 * each entry's new handle. The hash is seeded per index, so that where
 * sources cluster in the tables is not known in advance.
 *
 * Per entry: 8 bytes in the IPv4 table, 20 in the other, at a load of 3/8
 * to 3/4 (an IPv4 source 11 to 21 bytes, an IPv6 one 27 to 53), against a
 * Map entry (about 29 bytes) plus, for IPv6, the 16-byte string the caller
 * made (32 bytes), which a Map would keep alive.
 */

import type { SourceKey } from './sourcekey.js';

/** A value never stored (values are slot numbers below 2^24 or their complements): an empty cell, a removed one. */
const EMPTY = 0x7fffffff;
const TOMB = 0x7ffffffe;
const FIRST_CELLS = 4096;
/** The tables' tags in a handle's low 2 bits. */
const V4 = 0;
const V6 = 1;
const OTHER = 2;

export type MoveFn = (value: number, handle: number) => void;

/** One open-addressing table of `words`-word keys. */
class Table {
  keys = new Int32Array(0);
  vals = new Int32Array(0);
  private mask = -1;
  live = 0;
  /** Cells not empty: live entries and tombstones. */
  private used = 0;

  constructor(
    private readonly words: 1 | 4,
    private readonly tag: number,
    private readonly seed: number,
    private readonly onMove: MoveFn,
  ) {}

  private hash(w0: number, w1: number, w2: number, w3: number): number {
    let h = Math.imul(w0 ^ this.seed, 0x9e3779b1);
    if (this.words === 4) {
      h = Math.imul(h ^ (h >>> 15) ^ w1, 0x85ebca6b);
      h = Math.imul(h ^ (h >>> 13) ^ w2, 0xc2b2ae35);
      h = Math.imul(h ^ (h >>> 16) ^ w3, 0x9e3779b1);
    }
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** The position of a key, or -1. */
  find(w0: number, w1: number, w2: number, w3: number): number {
    if (this.live === 0) return -1;
    const { keys, vals, mask } = this;
    const four = this.words === 4;
    for (let i = this.hash(w0, w1, w2, w3); ; i = (i + 1) & mask) {
      const v = vals[i]!;
      if (v === EMPTY) return -1;
      if (v === TOMB) continue;
      if (four) {
        const at = i * 4;
        if (keys[at] === w0 && keys[at + 1] === w1 && keys[at + 2] === w2 && keys[at + 3] === w3) return i;
      } else if (keys[i] === w0) {
        return i;
      }
    }
  }

  /** Adds a key that is not in the table; returns its position. */
  add(w0: number, w1: number, w2: number, w3: number, value: number): number {
    if ((this.used + 1) * 4 > (this.mask + 1) * 3) this.rebuild();
    const i = this.place(w0, w1, w2, w3, value);
    this.live++;
    return i;
  }

  private place(w0: number, w1: number, w2: number, w3: number, value: number): number {
    const { keys, vals, mask } = this;
    let i = this.hash(w0, w1, w2, w3);
    while (vals[i] !== EMPTY && vals[i] !== TOMB) i = (i + 1) & mask;
    if (vals[i] === EMPTY) this.used++;
    vals[i] = value;
    if (this.words === 4) {
      const at = i * 4;
      keys[at] = w0;
      keys[at + 1] = w1;
      keys[at + 2] = w2;
      keys[at + 3] = w3;
    } else {
      keys[i] = w0;
    }
    return i;
  }

  remove(i: number): void {
    this.vals[i] = TOMB;
    this.live--;
  }

  /** Twice the cells when more than half would be live, else as many without the tombstones; tells the owner where each entry went. */
  private rebuild(): void {
    const cells = this.mask + 1;
    const size = cells === 0 ? FIRST_CELLS : (this.live + 1) * 2 > cells ? cells * 2 : cells;
    const { keys, vals, words } = this;
    this.keys = new Int32Array(size * words);
    this.vals = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
    this.used = 0;
    for (let i = 0; i < cells; i++) {
      const v = vals[i]!;
      if (v === EMPTY || v === TOMB) continue;
      const at = i * words;
      const j = words === 4 ? this.place(keys[at]!, keys[at + 1]!, keys[at + 2]!, keys[at + 3]!, v) : this.place(keys[i]!, 0, 0, 0, v);
      this.onMove(v, (j << 2) | this.tag);
    }
  }
}

export class SourceIndex {
  private readonly v4: Table;
  private readonly v6: Table;
  /** Keys of any other kind: key to position in otherKeys and otherVals; free positions on otherFree. */
  private readonly other = new Map<SourceKey, number>();
  private readonly otherKeys: (SourceKey | undefined)[] = [];
  private readonly otherVals: number[] = [];
  private readonly otherFree: number[] = [];
  /** A 16-byte key's four words, as key() leaves them. */
  private w0 = 0;
  private w1 = 0;
  private w2 = 0;
  private w3 = 0;

  constructor(onMove: MoveFn, seed = (Math.random() * 2 ** 32) | 0) {
    this.v4 = new Table(1, V4, seed, onMove);
    this.v6 = new Table(4, V6, seed, onMove);
  }

  /** Which table a key belongs in; for V6 its words are left in w0..w3. */
  private kind(key: SourceKey): number {
    if (typeof key === 'number') return (key | 0) === key ? V4 : OTHER;
    if (key.length !== 16) return OTHER;
    let any = 0;
    let w = 0;
    for (let i = 0; i < 16; i++) {
      const x = key.charCodeAt(i);
      any |= x;
      w = (w << 8) | x;
      if ((i & 3) === 3) {
        if (i === 3) this.w0 = w;
        else if (i === 7) this.w1 = w;
        else if (i === 11) this.w2 = w;
        else this.w3 = w;
      }
    }
    return any > 0xff ? OTHER : V6;
  }

  /** A key's handle, or -1. */
  find(key: SourceKey): number {
    const k = this.kind(key);
    let i: number;
    if (k === V4) i = this.v4.find(key as number, 0, 0, 0);
    else if (k === V6) i = this.v6.find(this.w0, this.w1, this.w2, this.w3);
    else i = this.other.get(key) ?? -1;
    return i < 0 ? -1 : (i << 2) | k;
  }

  /** Adds a key that is not in the index; returns its handle (other handles of its table may move: onMove). */
  add(key: SourceKey, value: number): number {
    const k = this.kind(key);
    let i: number;
    if (k === V4) {
      i = this.v4.add(key as number, 0, 0, 0, value);
    } else if (k === V6) {
      i = this.v6.add(this.w0, this.w1, this.w2, this.w3, value);
    } else {
      i = this.otherFree.pop() ?? this.otherKeys.length;
      this.otherKeys[i] = key;
      this.otherVals[i] = value;
      this.other.set(key, i);
    }
    return (i << 2) | k;
  }

  value(handle: number): number {
    const k = handle & 3;
    const i = handle >> 2;
    return k === V4 ? this.v4.vals[i]! : k === V6 ? this.v6.vals[i]! : this.otherVals[i]!;
  }

  setValue(handle: number, value: number): void {
    const k = handle & 3;
    const i = handle >> 2;
    if (k === V4) this.v4.vals[i] = value;
    else if (k === V6) this.v6.vals[i] = value;
    else this.otherVals[i] = value;
  }

  remove(handle: number): void {
    const k = handle & 3;
    const i = handle >> 2;
    if (k === V4) {
      this.v4.remove(i);
    } else if (k === V6) {
      this.v6.remove(i);
    } else {
      this.other.delete(this.otherKeys[i]!);
      this.otherKeys[i] = undefined;
      this.otherFree.push(i);
    }
  }

  get size(): number {
    return this.v4.live + this.v6.live + this.other.size;
  }
}
