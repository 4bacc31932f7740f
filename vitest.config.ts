import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Tests import workspace packages from source (the "source" export condition), so `vitest` needs no
// build for unit tests. Integration tests start the real daemon from dist: `npm test` builds first.
// Vite adds 'import'/'require' and 'default' itself where they apply.
const conditions = ['source', ...defaultServerConditions];

export default defineConfig({
  resolve: { conditions },
  // Only for what vite resolves itself: external dependencies are loaded by Node with its own conditions
  // (passing 'import' there made protobufjs load long's ESM build and lose 64-bit precision).
  ssr: { resolve: { conditions } },
  test: {
    pool: 'forks',
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts'],
          exclude: ['packages/*/test/**/*.int.test.ts', '**/node_modules/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['packages/*/test/**/*.int.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
