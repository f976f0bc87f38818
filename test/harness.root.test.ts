// The test and bench harness's own promise about namespaces: destroy() leaves
// nothing running. A scan or a flood that a failed test or an interrupted
// bench started in a namespace is killed with it, not left sending for the
// rest of its timeout in a namespace whose name is gone.
import { execFileSync } from 'node:child_process';
import { createNamespacePair, createTestNet, namespacePids, sleep, waitFor } from '@packetwatch/test-support';
import { describe, expect, test } from 'vitest';

const SLOT = 90;
/** Longer than the test: only destroy() can end these. */
const LEFT_RUNNING_S = 600;

const namespaces = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

/** Bounds the wait for a command's end, so that a survivor fails the test by name rather than by its timeout. */
const GRACE_MS = 30_000;

/** A command left running in a namespace (its end is awaited by ending()). */
function leave(run: (cmd: string, args: string[], timeoutMs?: number) => Promise<unknown>): Promise<unknown> {
  const p = run('sleep', [String(LEFT_RUNNING_S)], (LEFT_RUNNING_S + 60) * 1000);
  p.catch(() => {});
  return p;
}

/** How a left-behind command ended, once destroy() has run: killed by SIGKILL is the only right answer. */
const ending = (run: Promise<unknown>) =>
  Promise.race([
    run.then(
      () => 'ran to its end',
      (e: { signal?: string }) => e.signal ?? String(e),
    ),
    sleep(GRACE_MS).then(() => `still running ${GRACE_MS / 1000} s after destroy()`),
  ]);

describe('network namespaces of the harness', () => {
  test("a pair's destroy() kills what still runs on both sides, then deletes the namespaces", async () => {
    const net = createNamespacePair(SLOT);
    try {
      const left = [leave(net.inAttacker), leave(net.inVictim)];
      await waitFor('the commands to start', () => (namespacePids(net.attackerNs).length && namespacePids(net.victimNs).length ? true : undefined));
      net.destroy();
      expect(await Promise.all(left.map(ending))).toEqual(['SIGKILL', 'SIGKILL']);
      const listed = namespaces();
      expect(listed).not.toContain(net.attackerNs);
      expect(listed).not.toContain(net.victimNs);
    } finally {
      net.destroy();
    }
  });

  test("a test net's destroy() kills what still runs in the peer namespace, then deletes it and the veth pair", async () => {
    const net = createTestNet(SLOT);
    try {
      const left = leave(net.inPeer);
      await waitFor('the command to start', () => (namespacePids(net.peerNs).length ? true : undefined));
      net.destroy();
      expect(await ending(left)).toBe('SIGKILL');
      expect(namespaces()).not.toContain(net.peerNs);
      expect(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })).not.toContain(`"${net.hostIf}"`);
    } finally {
      net.destroy();
    }
  });
});
