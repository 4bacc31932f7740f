/**
 * OVSDB's framing: JSON-RPC messages written back to back with no delimiter (RFC 7047 section 4, as
 * ovsdb-server and ovs-vsctl do). The splitter finds where each top-level object ends by counting
 * brace and bracket depth outside strings (a string's `\"` and `\\` escapes understood), whatever way the
 * socket cuts the stream into chunks. Decoding is done on the bytes of a whole message, so a multi-byte
 * UTF-8 character cut between two chunks is not a problem.
 */

export class JsonStreamError extends Error {}

export class JsonObjectSplitter {
  private chunks: Buffer[] = [];
  /** Bytes buffered before `scanFrom` in the current (unfinished) message. */
  private pending = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;

  constructor(private readonly maxMessageBytes = 64 * 1024 * 1024) {}

  /** Feeds a chunk; returns the complete messages it finished, parsed, in order. */
  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) this.inString = false;
        continue;
      }
      if (!this.started) {
        // Whitespace between messages is allowed; anything else but an object or array is not.
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
          start = i + 1;
          continue;
        }
        if (c !== 0x7b /* { */ && c !== 0x5b /* [ */)
          throw new JsonStreamError(`unexpected byte 0x${c.toString(16)} between JSON messages`);
        this.started = true;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        this.depth--;
        if (this.depth === 0) {
          this.chunks.push(chunk.subarray(start, i + 1));
          const text = Buffer.concat(this.chunks).toString('utf8');
          this.chunks = [];
          this.pending = 0;
          this.started = false;
          start = i + 1;
          try {
            out.push(JSON.parse(text));
          } catch (e) {
            throw new JsonStreamError(`invalid JSON message: ${(e as Error).message}`);
          }
        }
      }
    }
    if (this.started && start < chunk.length) {
      this.chunks.push(chunk.subarray(start));
      this.pending += chunk.length - start;
      if (this.pending > this.maxMessageBytes) throw new JsonStreamError(`a JSON message exceeds ${this.maxMessageBytes} bytes`);
    }
    return out;
  }

  /** Forgets a partial message (after the connection it came from closed). */
  reset(): void {
    this.chunks = [];
    this.pending = 0;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.started = false;
  }
}
