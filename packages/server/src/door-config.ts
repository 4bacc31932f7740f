/**
 * The config keys of the API's door that need more than a type: `socketMode` (an octal string, never
 * world-accessible), `socketGroup` (a group name or gid) and `limits`. Pure parsing: config.ts turns a
 * thrown Error into a ConfigError naming the key.
 */

export interface Limits {
  /** Calls of Network and NetworkAdmin served at once; one more is refused at once with RESOURCE_EXHAUSTED. */
  readonly maxInFlight: number;
  /** The largest request message accepted, in bytes; a larger one is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
}

/**
 * 256 calls at once is 8 times the benchmark's 32 concurrent clients; 64 KiB holds a CreateInterface with
 * thousands of port mappings (each is ~10 bytes on the wire).
 */
export const DEFAULT_LIMITS: Limits = { maxInFlight: 256, maxMessageBytes: 64 * 1024 };

/** `socketMode: "0660"` -> 0o660. Refuses numbers (YAML reads 0660 as decimal 660) and world bits. */
export function parseSocketMode(input: unknown): number {
  if (typeof input === 'number') {
    throw new Error(
      `write the mode as a quoted octal string, e.g. "0660" (YAML reads an unquoted 0660 as the decimal number 660; got ${input})`,
    );
  }
  if (typeof input !== 'string' || !/^0?[0-7]{3}$/.test(input)) {
    throw new Error(`must be an octal mode string such as "0600" or "0660" (got ${JSON.stringify(input)})`);
  }
  const mode = parseInt(input, 8);
  if ((mode & 0o007) !== 0) {
    throw new Error(
      `${input} lets every user on the node reach the socket (the last digit must be 0): anyone who can connect can change the node's network; use "0660" with socketGroup`,
    );
  }
  if ((mode & 0o600) !== 0o600) throw new Error(`${input} must give the owner read and write (0600 at least)`);
  return mode;
}

/** A POSIX group name (as useradd accepts it) or a numeric gid. */
const GROUP_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

/** `socketGroup: nodenet` or `socketGroup: 998` (or "998"). */
export function parseSocketGroup(input: unknown): string | number {
  if (typeof input === 'number' || (typeof input === 'string' && /^\d+$/.test(input))) {
    const gid = Number(input);
    if (!Number.isInteger(gid) || gid < 0 || gid > 0xfffffffe)
      throw new Error(`a gid must be an integer 0..4294967294 (got ${JSON.stringify(input)})`);
    return gid;
  }
  if (typeof input !== 'string' || !GROUP_NAME_RE.test(input)) {
    throw new Error(`must be a group name (letters, digits, '_', '-', '.', up to 32) or a numeric gid (got ${JSON.stringify(input)})`);
  }
  return input;
}
