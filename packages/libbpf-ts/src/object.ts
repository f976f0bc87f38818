// Objects: open an ELF object into an editable spec (constants, map sizes,
// pin paths), then load it into the kernel as a Collection of typed handles.
import { BpfError, native as call } from './errors.js';
import { BpfMap } from './map.js';
import { type NativeBpfObject, type NativeGlobalDesc, native } from './native.js';
import { Program } from './program.js';

export interface MapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** Maps libbpf made for global data (.rodata, .data, .bss). */
  internal: boolean;
}

export interface ProgramSpec {
  name: string;
  section: string;
  type: number;
}

export type GlobalSpec = NativeGlobalDesc;

export type ConstantValue = number | bigint | boolean | Buffer;

function encodeConstant(g: GlobalSpec, value: ConstantValue): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const n = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
  const buf = Buffer.alloc(g.size);
  switch (g.size) {
    case 1:
      buf.writeUInt8(Number(BigInt.asUintN(8, n)));
      break;
    case 2:
      buf.writeUInt16LE(Number(BigInt.asUintN(16, n)));
      break;
    case 4:
      buf.writeUInt32LE(Number(BigInt.asUintN(32, n)));
      break;
    case 8:
      buf.writeBigUInt64LE(BigInt.asUintN(64, n));
      break;
    default:
      throw new TypeError(`global ${g.name} is ${g.size} bytes: pass a Buffer`);
  }
  return buf;
}

export class ObjectSpec {
  readonly #obj: NativeBpfObject;
  #loaded = false;

  private constructor(obj: NativeBpfObject) {
    this.#obj = obj;
  }

  /** Opens an ELF object file (clang -target bpf output). Nothing is loaded yet. */
  static open(path: string): ObjectSpec {
    return new ObjectSpec(call(() => new native.BpfObject(path)));
  }

  get maps(): MapSpec[] {
    return this.#obj.maps().map(({ name, type, keySize, valueSize, maxEntries, internal }) => ({
      name,
      type,
      keySize,
      valueSize,
      maxEntries,
      internal,
    }));
  }

  get programs(): ProgramSpec[] {
    return this.#obj.programs().map(({ name, section, type }) => ({ name, section, type }));
  }

  /** Global variables by section, e.g. the `const volatile` load-time constants in .rodata. */
  get globals(): GlobalSpec[] {
    return this.#obj.globals();
  }

  /** Sets a global (typically a `const volatile` in .rodata) before load. */
  setConstant(name: string, value: ConstantValue): this {
    const g = this.globals.find((v) => v.name === name);
    if (!g) throw new BpfError(`set constant: no global variable named '${name}'`, { errno: 2, code: 'ENOENT', op: 'set global' });
    const buf = encodeConstant(g, value);
    call(() => this.#obj.setGlobal(name, buf));
    return this;
  }

  /** Sets a map's size before load (ring buffers are rounded up to a power-of-two page multiple). */
  setMaxEntries(map: string, n: number): this {
    if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new RangeError(`max entries of ${map} must be a positive 32-bit integer, got ${n}`);
    call(() => this.#obj.setMaxEntries(map, n));
    return this;
  }

  /**
   * Sets a map's value size before load, for a value whose layout the
   * program derives from a load-time constant. Declare such a map by sizes
   * (`__uint(value_size, ...)`), not BTF types: the kernel refuses a BTF
   * value type of another size.
   */
  setValueSize(map: string, size: number): this {
    if (!Number.isInteger(size) || size < 1 || size > 0xffffffff) throw new RangeError(`value size of ${map} must be a positive 32-bit integer, got ${size}`);
    call(() => this.#obj.setValueSize(map, size));
    return this;
  }

  /** At load, reuse the map pinned at path if compatible, else create it and pin it there. */
  pinMap(map: string, path: string): this {
    call(() => this.#obj.setPinPath(map, path));
    return this;
  }

  /** Loads maps and programs into the kernel; the spec cannot be edited afterwards. */
  load(): Collection {
    if (this.#loaded) throw new BpfError('object is already loaded', { errno: 16, code: 'EBUSY', op: 'bpf_object__load' });
    call(() => this.#obj.load());
    this.#loaded = true;
    return new Collection(this.#obj);
  }

  /** Releases an object that will not be loaded. */
  close(): void {
    if (!this.#loaded) this.#obj.close();
  }
}

/** A loaded object. Its maps and programs are valid until close(). */
export class Collection {
  readonly #obj: NativeBpfObject;
  readonly #maps = new Map<string, BpfMap>();
  readonly #programs = new Map<string, Program>();

  /** @internal */
  constructor(obj: NativeBpfObject) {
    this.#obj = obj;
  }

  get mapNames(): string[] {
    return this.#obj.maps().map((m) => m.name);
  }

  get programNames(): string[] {
    return this.#obj.programs().map((p) => p.name);
  }

  map(name: string): BpfMap {
    let m = this.#maps.get(name);
    if (!m) {
      const fd = call(() => this.#obj.mapFd(name));
      m = BpfMap.fromFd(fd, false);
      this.#maps.set(name, m);
    }
    return m;
  }

  program(name: string): Program {
    let p = this.#programs.get(name);
    if (!p) {
      p = new Program(call(() => this.#obj.programFd(name)), name, false);
      this.#programs.set(name, p);
    }
    return p;
  }

  /** Closes every map and program descriptor of the object; pinned objects and links stay. */
  close(): void {
    for (const m of this.#maps.values()) m.close();
    for (const p of this.#programs.values()) p.close();
    this.#obj.close();
  }
}
