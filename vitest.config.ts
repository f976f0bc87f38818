import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests import the workspace packages from their sources, so a change is
// tested without a rebuild of dist/ (the native addon, the BPF object and the
// generated protocol code still come from `make build`).
const alias = [
  { find: /^libbpf-ts$/, replacement: src('./packages/libbpf-ts/src/index.ts') },
  { find: /^libbpf-ts\/codec$/, replacement: src('./packages/libbpf-ts/src/codec.ts') },
  { find: /^@packetwatch\/common$/, replacement: src('./packages/common/src/index.ts') },
  { find: /^@packetwatch\/common\/address$/, replacement: src('./packages/common/src/address.ts') },
  { find: /^@packetwatch\/bpf$/, replacement: src('./bpf/src/index.ts') },
  { find: /^@packetwatch\/bpf\/records$/, replacement: src('./bpf/src/records.ts') },
  { find: /^@packetwatch\/bpf\/classify$/, replacement: src('./bpf/src/classify.ts') },
  { find: /^@packetwatch\/policy\/replay$/, replacement: src('./services/policy/src/replay.ts') },
  { find: /^@packetwatch\/proto$/, replacement: src('./proto/src/index.ts') },
  { find: /^@packetwatch\/test-support$/, replacement: src('./test/support/src/index.ts') },
  { find: /^@packetwatch\/test-support\/services$/, replacement: src('./test/support/src/services.ts') },
  { find: /^@packetwatch\/test-support\/policy-stub$/, replacement: src('./test/support/src/policy-stub.ts') },
  { find: /^@packetwatch\/test-support\/stack$/, replacement: src('./test/support/src/stack.ts') },
];

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
          // The scale cases (a million detector sources) need more than the
          // default 5 s on a loaded 2-core machine.
          testTimeout: 60_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'privileged',
          include: ['**/test/**/*.root.test.ts'],
          exclude: ['**/node_modules/**', 'test/compose/**'],
          globalSetup: ['./test/privileged-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
      {
        // The images and deploy/compose.yml under testcontainers: Docker, root
        // (XDP on a veth pair, network namespaces). `make test-compose`.
        resolve: { alias },
        test: {
          name: 'compose',
          include: ['test/compose/**/*.root.test.ts'],
          exclude: ['**/node_modules/**'],
          globalSetup: ['./test/compose/setup.ts'],
          // No reaper container (its image cannot be pulled everywhere): the
          // suite tears its stack down itself.
          env: { TESTCONTAINERS_RYUK_DISABLED: 'true' },
          testTimeout: 120_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
