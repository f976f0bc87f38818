// Privileged suites need root (BPF, XDP, network namespaces). They fail here,
// loudly, rather than skip: a green run must mean they ran.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import { TEST_BPFFS } from '@packetwatch/test-support';

const BPF_FS_MAGIC = 0xcafe4a11;

export default function setup(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the privileged test suites need root (BPF programs, XDP and network namespaces); run them as root, e.g. sudo make test',
    );
  }
  if (!existsSync(new URL('../bpf/build/packetwatch.bpf.o', import.meta.url))) {
    throw new Error('bpf/build/packetwatch.bpf.o is missing: run make build first');
  }
  for (const dir of ['/sys/fs/bpf', TEST_BPFFS]) {
    mkdirSync(dir, { recursive: true });
    if (statfsSync(dir).type !== BPF_FS_MAGIC) execFileSync('mount', ['-t', 'bpf', 'bpf', dir]);
  }
}
