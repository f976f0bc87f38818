// Which bpffs a mount namespace holds, read from /proc/<pid>/mountinfo: a
// bpffs is known by its device, so the same one bound elsewhere counts and
// another one mounted at the same place does not.
import { describe, expect, it } from 'vitest';
import { mountedDevices } from '../src/bpffs.js';

// Lines of a real mountinfo (a host with a bpffs bound into a second place,
// optional fields, a mount point with a space), and one that is not a mount.
const MOUNTINFO = [
  '22 27 0:21 / /proc rw,relatime - proc proc rw',
  '23 27 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw',
  '43 23 0:39 / /sys/fs/bpf rw,relatime shared:12 master:3 - bpf bpf rw',
  '44 27 0:40 / /run/packetwatch-test-bpffs rw,relatime - bpf bpf rw',
  '45 27 0:39 /packetwatch /run/bound\\040pins rw,relatime - bpf bpf rw,mode=700',
  '46 27 0:41 / /run/user/0 rw,nosuid - tmpfs tmpfs rw,size=100k',
  '',
].join('\n');

describe('mountedDevices', () => {
  it('lists the device of every mount of the type, once each, whatever its optional fields', () => {
    expect([...mountedDevices(MOUNTINFO, 'bpf')]).toEqual(['0:39', '0:40']);
    expect([...mountedDevices(MOUNTINFO, 'tmpfs')]).toEqual(['0:41']);
  });

  it('lists nothing for a type no line has, or for a text without the separator', () => {
    expect(mountedDevices(MOUNTINFO, 'ext4').size).toBe(0);
    expect(mountedDevices('43 23 0:39 / /sys/fs/bpf rw bpf bpf rw', 'bpf').size).toBe(0);
  });
});
