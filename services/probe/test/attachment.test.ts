// The pin directory of an interface is a direct child of the pin root: detach
// removes it recursively, so a name that reached outside would remove other
// tools' pins (PW_IFDEV=.. once made detach delete the whole bpffs).
import { describe, expect, it } from 'vitest';
import { pinDirFor } from '../src/attachment.js';

describe('pinDirFor', () => {
  it('is the interface name under the pin root', () => {
    expect(pinDirFor('/sys/fs/bpf/packetwatch', 'eth0')).toBe('/sys/fs/bpf/packetwatch/eth0');
    expect(pinDirFor('/sys/fs/bpf/packetwatch/', 'eth0.100')).toBe('/sys/fs/bpf/packetwatch/eth0.100');
  });

  it.each(['..', '.', '', 'a/b', '../x', '/etc'])('refuses %j, which is not a directory of its own under the root', (name) => {
    expect(() => pinDirFor('/sys/fs/bpf/packetwatch', name)).toThrow(RangeError);
  });
});
