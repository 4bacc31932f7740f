import { fileURLToPath } from 'node:url';

// This module sits in src/ (tests, source condition) or dist/ (built); both are one level under the
// package root, beside proto/, which ships with the package.

/** Absolute path of the full API (the seed's service and messages plus wire-compatible extensions). */
export const networkProtoPath: string = fileURLToPath(new URL('../proto/network.proto', import.meta.url));

/** Absolute path of the seed's API alone (for seed-only clients and compatibility tests). */
export const seedProtoPath: string = fileURLToPath(new URL('../proto/seed.proto', import.meta.url));
