// prom-client ships no types for its per-family modules (lib/metrics/*.js): each exports one function that
// registers its family on a registry. Imported one by one so that a bundler sees every module.
declare module 'prom-client/lib/metrics/*.js' {
  import type { Registry } from 'prom-client';
  const register: (registry: Registry, config: object) => void;
  export default register;
}
