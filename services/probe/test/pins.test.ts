// Whether the pins outlive the probe, from what decides it: who mounted the
// bpffs, whether PID 1 stands for the host, whether PID 1 holds that bpffs.
import { describe, expect, it } from 'vitest';
import { pinLife } from '../src/pins.js';

describe('pinLife', () => {
  it("outlives the probe on a bpffs someone else mounted, the host's or a container's bound one, whatever PID 1 holds", () => {
    for (const initPidNs of [true, false]) {
      for (const heldByInit of [true, false, undefined]) {
        expect(pinLife({ mountedHere: false, initPidNs, heldByInit }), `${initPidNs} ${heldByInit}`).toBe('outlive');
      }
    }
  });

  it("outlives the probe on a bpffs it mounted in the host's mount namespace (a fresh host)", () => {
    expect(pinLife({ mountedHere: true, initPidNs: true, heldByInit: true })).toBe('outlive');
  });

  it('is private on a bpffs it mounted in a mount namespace of its own (ip netns exec)', () => {
    expect(pinLife({ mountedHere: true, initPidNs: true, heldByInit: false })).toBe('private');
  });

  it("is private on a bpffs it mounted in another PID namespace, where PID 1 is the container's init", () => {
    expect(pinLife({ mountedHere: true, initPidNs: false, heldByInit: true })).toBe('private');
    expect(pinLife({ mountedHere: true, initPidNs: false, heldByInit: undefined })).toBe('private');
  });

  it("is unknown on a bpffs it mounted when PID 1's mounts cannot be read", () => {
    expect(pinLife({ mountedHere: true, initPidNs: true, heldByInit: undefined })).toBe('unknown');
  });
});
