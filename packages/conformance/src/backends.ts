/**
 * The backends the conformance suite runs against. Every describe in the suite is repeated for each;
 * `NODENET_BACKENDS=iproute2,ovs` selects a subset (or adds one that has a profile here).
 */
import type { DaemonConfig, NodeHost, TestScope } from '@nodenet/testkit';

export interface BackendProfile {
  /** The daemon's `backend` config value. */
  readonly name: string;
  /** Prepares a node for this backend (e.g. starts a private OVS) and returns config keys the daemon needs. */
  prepareNode(scope: TestScope, node: NodeHost): Promise<DaemonConfig>;
}

const PROFILES: Record<string, BackendProfile> = {
  iproute2: { name: 'iproute2', prepareNode: async () => ({}) },
};

/** The backends every conformance describe runs for. */
export const BACKENDS: readonly string[] = (process.env.NODENET_BACKENDS ?? 'iproute2')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');

export function backendProfile(name: string): BackendProfile {
  const profile = PROFILES[name];
  if (!profile) throw new Error(`no conformance profile for backend '${name}': known are ${Object.keys(PROFILES).join(', ')}`);
  return profile;
}

/** Registers a profile (for backends whose node preparation lives elsewhere). */
export function registerBackendProfile(profile: BackendProfile): void {
  PROFILES[profile.name] = profile;
}
