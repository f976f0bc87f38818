// The compose suite needs root (XDP, network namespaces), a Docker engine,
// a compose command and the images `make images` builds. It starts dockerd
// when none runs, and fails here, loudly, when any of it is missing: a green
// run must mean the stack really ran.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BPF_FS_MAGIC = 0xcafe4a11;
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TAG = process.env.PW_IMAGE_TAG || 'latest';
export const IMAGES = ['probe', 'policy', 'prometheus'].map((s) => `packetwatch/${s}:${TAG}`);

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

function fail(what: string, e?: unknown): never {
  const detail = (e as { stderr?: string; message?: string } | undefined)?.stderr || (e as Error | undefined)?.message || '';
  throw new Error(`compose suite: ${what}${detail ? `\n${detail.trim()}` : ''}`);
}

export default function setup(): void {
  if (process.getuid?.() !== 0) {
    fail('needs root (XDP on a veth pair, network namespaces, the Docker engine); run it as root: sudo make test-compose');
  }
  try {
    sh('deploy/docker-engine.sh', ['start']);
  } catch (e) {
    fail('no Docker engine answers and none could be started (sudo make docker-deps installs and starts one)', e);
  }
  try {
    sh('deploy/docker-engine.sh', ['compose']);
  } catch (e) {
    fail('neither `docker compose` nor `docker-compose` is installed (sudo make docker-deps)', e);
  }
  const missing = IMAGES.filter((image) => {
    try {
      sh('docker', ['image', 'inspect', image]);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) fail(`images missing: ${missing.join(', ')}; run make images (make test-compose does)`);
  mkdirSync('/sys/fs/bpf', { recursive: true });
  if (statfsSync('/sys/fs/bpf').type !== BPF_FS_MAGIC) execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
}
