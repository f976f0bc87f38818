// Codecs turn typed values into the fixed-size byte layouts that maps and
// ring buffers hold, and back. Multi-byte integers are in host byte order,
// which is little-endian on every architecture Packetwatch targets.

export interface Codec<T> {
  /** Encoded size in bytes. */
  readonly size: number;
  write(value: T, buf: Buffer, offset: number): void;
  read(buf: Buffer, offset: number): T;
}

export function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.write(value, buf, 0);
  return buf;
}

export function decode<T>(codec: Codec<T>, buf: Buffer, offset = 0): T {
  if (buf.length - offset < codec.size) {
    throw new RangeError(`need ${codec.size} bytes at offset ${offset}, have ${buf.length - offset}`);
  }
  return codec.read(buf, offset);
}

export const u8: Codec<number> = {
  size: 1,
  write: (v, b, o) => void b.writeUInt8(v, o),
  read: (b, o) => b.readUInt8(o),
};

export const u16: Codec<number> = {
  size: 2,
  write: (v, b, o) => void b.writeUInt16LE(v, o),
  read: (b, o) => b.readUInt16LE(o),
};

export const u32: Codec<number> = {
  size: 4,
  write: (v, b, o) => void b.writeUInt32LE(v, o),
  read: (b, o) => b.readUInt32LE(o),
};

export const u64: Codec<bigint> = {
  size: 8,
  write: (v, b, o) => void b.writeBigUInt64LE(v, o),
  read: (b, o) => b.readBigUInt64LE(o),
};

/** Raw bytes of a fixed length. */
export function bytes(size: number): Codec<Buffer> {
  return {
    size,
    write: (v, b, o) => {
      if (v.length !== size) throw new RangeError(`expected ${size} bytes, got ${v.length}`);
      v.copy(b, o);
    },
    read: (b, o) => Buffer.from(b.subarray(o, o + size)),
  };
}

export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
}

/**
 * A C struct: named fields at explicit offsets, so a layout can be compared
 * with the BTF that the compiler emitted for the same struct.
 */
export interface StructCodec<T> extends Codec<T> {
  readonly fields: readonly FieldLayout[];
}

type FieldSpec<T> = { [K in keyof T]: { offset: number; codec: Codec<T[K]> } };

export function struct<T extends object>(size: number, spec: FieldSpec<T>): StructCodec<T> {
  const entries = Object.entries(spec) as [keyof T & string, { offset: number; codec: Codec<unknown> }][];
  for (const [name, f] of entries) {
    if (f.offset + f.codec.size > size) throw new RangeError(`field ${name} overruns the ${size}-byte struct`);
  }
  return {
    size,
    fields: entries.map(([name, f]) => ({ name, offset: f.offset, size: f.codec.size })),
    write(value, buf, offset) {
      buf.fill(0, offset, offset + size);
      for (const [name, f] of entries) f.codec.write(value[name], buf, offset + f.offset);
    },
    read(buf, offset) {
      const out = {} as Record<string, unknown>;
      for (const [name, f] of entries) out[name] = f.codec.read(buf, offset + f.offset);
      return out as T;
    },
  };
}
