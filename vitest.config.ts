import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests import the workspace packages from their sources, so a change is
// tested without a rebuild of dist/ (the native addon and the BPF object
// still come from `make build`).
const alias = {
  'libbpf-ts': src('./packages/libbpf-ts/src/index.ts'),
  '@packetwatch/bpf': src('./bpf/src/index.ts'),
};

export default defineConfig({
  resolve: { alias },
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['**/test/**/*.test.ts'],
          exclude: ['**/*.root.test.ts', '**/node_modules/**'],
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'privileged',
          include: ['**/test/**/*.root.test.ts'],
          exclude: ['**/node_modules/**'],
          globalSetup: ['./test/privileged-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
