// ESLint (flat config): typescript-eslint's type-aware rules over every package, sources and tests alike.
// Formatting is Prettier's job (.prettierrc.json), so no stylistic rules here.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'packages/api/src/gen/**', 'release/**', 'results/**', '**/*.js', '**/*.mjs', '**/*.cjs'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // Sources and tests: each package's tsconfig.test.json covers both (demo has no tests).
        project: ['./packages/*/tsconfig.test.json', './packages/demo/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unsafe-assignment': 'error',
      '@typescript-eslint/no-unsafe-member-access': 'error',
      '@typescript-eslint/no-unsafe-call': 'error',
      '@typescript-eslint/no-unsafe-return': 'error',
      '@typescript-eslint/no-unsafe-argument': 'error',
      // An async method of an interface turns a throw into a rejection, which is what its callers expect.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        {
          allowNumber: true,
          allowBoolean: true,
          allowNullish: true,
          // core's Subnet prints as its CIDR text (toString), which is what every message wants.
          allow: [
            { from: 'package', name: 'Subnet', package: '@nodenet/core' },
            { from: 'file', name: 'Subnet', path: 'packages/core/src/net.ts' },
            { from: 'package', name: 'Ipv6Subnet', package: '@nodenet/core' },
            { from: 'file', name: 'Ipv6Subnet', path: 'packages/core/src/cluster-addresses.ts' },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
);
