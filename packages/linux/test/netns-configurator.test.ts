import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NETNS_HELPER_PATH, netnsHelperFraming } from '../src/netns-configurator.js';

describe('the namespace configurator session', () => {
  it("a request's answer is what the helper printed before its `done N` line (whole lines only)", () => {
    expect(netnsHelperFraming.marker(7)).toBe('mark 7\n');
    expect(netnsHelperFraming.find('done 7\n', 7)).toEqual({ output: '', consumed: 7 });
    const text = 'fail default-route RTNETLINK answers: File exists\ndone 8\ndone 9\n';
    expect(netnsHelperFraming.find(text, 8)).toEqual({
      output: 'fail default-route RTNETLINK answers: File exists',
      consumed: text.indexOf('done 9'),
    });
    expect(netnsHelperFraming.find('done 1', 1)).toBeNull(); // not a whole line yet
    expect(netnsHelperFraming.find('xdone 1\n', 1)).toBeNull();
    expect(netnsHelperFraming.find('done 12\n', 1)).toBeNull();
  });

  it('the helper ships where the code looks for it (beside src/ and dist/)', () => {
    expect(existsSync(NETNS_HELPER_PATH)).toBe(true);
  });
});
