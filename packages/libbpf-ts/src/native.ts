// The compiled addon (src/native/binding.cc) and the shape of what it exports.
// Only this package's own modules import this file; users get the typed API.
import { createRequire } from 'node:module';

export interface NativeMapDesc {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  internal: boolean;
  fd: number;
}

export interface NativeProgramDesc {
  name: string;
  section: string;
  type: number;
  fd: number;
}

export interface NativeGlobalDesc {
  name: string;
  section: string;
  offset: number;
  size: number;
}

export interface NativeBpfObject {
  maps(): NativeMapDesc[];
  programs(): NativeProgramDesc[];
  globals(): NativeGlobalDesc[];
  setGlobal(name: string, value: Buffer): void;
  setMaxEntries(map: string, n: number): number;
  setValueSize(map: string, size: number): number;
  setPinPath(map: string, path: string): void;
  load(): void;
  mapFd(name: string): number;
  programFd(name: string): number;
  close(): void;
}

/** With a sink: (null, null, written, dropped). */
export type NativeBatchCallback = (err: Error | null, buffer: Buffer | null, count: number, dropped?: number) => void;

export interface NativeRingBuffer {
  /** coalesceMs > 0: after a wake-up that delivered records, drain again that much later while records keep coming. */
  start(coalesceMs?: number): void;
  stop(): void;
  consume(): { buffer: Buffer; count: number };
  ref(): void;
  unref(): void;
  stats(): { records: number; batches: number; wrongSize: number };
  close(): void;
  setSink(buffer: Buffer | null, capacity?: number, cursor?: Uint32Array): void;
}

export interface NativeMapInfo {
  id: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface NativeProgInfo {
  id: number;
  name: string;
  type: number;
  tag: Buffer;
}

export interface NativeLinkInfo {
  id: number;
  type: number;
  progId: number;
  ifindex?: number;
}

export interface NativeXdpQuery {
  attachMode: number;
  progId: number;
  driverProgId: number;
  genericProgId: number;
  offloadProgId: number;
}

export interface NativeBinding {
  BpfObject: new (path: string) => NativeBpfObject;
  RingBuffer: new (mapFd: number, recordSize: number, onBatch: NativeBatchCallback) => NativeRingBuffer;
  mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | undefined;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapNextKey(fd: number, key: Buffer | null, keySize: number): Buffer | undefined;
  mapLookupBatch(
    fd: number,
    token: Buffer | null,
    keySize: number,
    valueSize: number,
    max: number,
  ): { keys: Buffer; values: Buffer; count: number; token: Buffer; done: boolean };
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): number;
  mapDeleteBatch(fd: number, keys: Buffer, count: number): number;
  mapInfo(fd: number): NativeMapInfo;
  progInfo(fd: number): NativeProgInfo;
  linkInfo(fd: number): NativeLinkInfo;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  closeFd(fd: number): void;
  dupFd(fd: number): number;
  progTestRun(
    fd: number,
    data: Buffer,
    repeat: number,
    ctx: Buffer | null,
    dataOutSize: number,
  ): { retval: number; durationNs: number; dataOut: Buffer; ctxOut?: Buffer };
  ifNameToIndex(name: string): number;
  ifIndexToName(index: number): string | undefined;
  linkCreateXdp(progFd: number, ifindex: number, flags: number): number;
  linkUpdate(linkFd: number, progFd: number): void;
  linkDetach(linkFd: number): void;
  xdpQuery(ifindex: number): NativeXdpQuery;
  clockNs(clockId: number): bigint;
  clockResolutionNs(clockId: number): bigint;
  possibleCpus(): number;
}

const require = createRequire(import.meta.url);
// src/native.ts and dist/native.js both sit one level below the package root.
export const native = require('../build/Release/bpf_ts.node') as NativeBinding;
