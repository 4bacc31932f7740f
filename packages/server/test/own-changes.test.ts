// The monitor lines below are real `nft -j monitor destroy` output (nft 1.0.6), captured in a test namespace.
import { describe, expect, it } from 'vitest';
import { classifyNftMonitorLine } from '../src/change-events.js';
import { OwnChanges, subjectsOfChange, subjectsOfNftLine } from '../src/own-changes.js';

const ALLOWED =
  '{"delete": {"element": {"family": "bridge", "table": "nodenet", "name": "allowed_sources", "elem": {"set": [{"concat": ["nnh-0a1b2c3d", "198.19.16.5"]}]}}}}';
const PUBLISHED =
  '{"delete": {"element": {"family": "ip", "table": "nodenet", "name": "published_ports", "elem": {"set": [[{"concat": ["tcp", 8080]}, {"concat": ["198.19.16.5", 80]}]]}}}}';
const SUBNET =
  '{"delete": {"element": {"family": "ip", "table": "nodenet", "name": "cluster_subnets", "elem": {"set": [{"prefix": {"addr": "198.19.32.0", "len": 20}}]}}}}';
const INSTANCE = ['nnh-0a1b2c3d', 'nni-0a1b2c3d', '198.19.16.5'];

/** A registry on a clock the test moves. */
function registry(graceMs = 1000) {
  const clock = { t: 0 };
  return { own: new OwnChanges(graceMs, () => clock.t), clock };
}

describe('subjectsOfNftLine', () => {
  it('names the strings of a deleted element of nodenet: key and map value', () => {
    expect(subjectsOfNftLine(ALLOWED)).toEqual(['nnh-0a1b2c3d', '198.19.16.5']);
    expect(subjectsOfNftLine(PUBLISHED)).toEqual(['tcp', '198.19.16.5']);
  });

  it('names nothing for what no release deletes: a table, a chain, another table, not JSON', () => {
    expect(subjectsOfNftLine('{"delete": {"table": {"family": "ip", "name": "nodenet", "handle": 3}}}')).toEqual([]);
    expect(subjectsOfNftLine('{"delete": {"chain": {"family": "ip", "table": "nodenet", "name": "prerouting"}}}')).toEqual([]);
    expect(
      subjectsOfNftLine(
        '{"delete": {"element": {"family": "ip", "table": "other", "name": "s", "elem": {"set": [{"concat": ["198.19.16.5", 80]}]}}}}',
      ),
    ).toEqual([]);
    expect(subjectsOfNftLine('not json')).toEqual([]);
  });
});

describe('subjectsOfChange', () => {
  it.each([
    ['link nnh-0a1b2c3d deleted', ['nnh-0a1b2c3d']],
    ['address 198.19.16.5/20 deleted from nni-0a1b2c3d', ['nni-0a1b2c3d']],
    ['Interface nnh-0a1b2c3d deleted from OVSDB', ['nnh-0a1b2c3d']],
    ['Port nni-0a1b2c3d deleted from OVSDB', ['nni-0a1b2c3d']],
  ])('%s names the instance link', (change, subjects) => {
    expect(subjectsOfChange(change)).toEqual(subjects);
  });

  it.each([
    'link nodenet0 deleted',
    'link nodenet0 down',
    'link nnh-0a1b2c3d down',
    'address 198.19.16.1/20 deleted from nodenet0',
    'Interface nodenet-tun deleted from OVSDB',
    'overlay route 198.19.32.0/20 deleted',
    'table ip nodenet deleted',
    '3 instance flows on nodenet0 deleted',
  ])('%s names nothing a release removes', (change) => {
    expect(subjectsOfChange(change)).toEqual([]);
  });
});

describe('OwnChanges', () => {
  it("explains a release's changes while it runs and for the grace after it", () => {
    const { own, clock } = registry(1000);
    expect(own.explains(subjectsOfNftLine(ALLOWED))).toBe(false);
    own.note({ phase: 'begin', subjects: INSTANCE });
    expect(own.explains(subjectsOfNftLine(ALLOWED))).toBe(true);
    expect(own.explains(subjectsOfNftLine(PUBLISHED))).toBe(true);
    expect(own.explains(subjectsOfChange('link nnh-0a1b2c3d deleted'))).toBe(true);
    clock.t = 5000; // a release may take long: it counts until its end, whatever the clock
    expect(own.explains(['198.19.16.5'])).toBe(true);
    own.note({ phase: 'end', subjects: INSTANCE });
    clock.t = 5999;
    expect(own.explains(subjectsOfChange('link nnh-0a1b2c3d deleted'))).toBe(true);
    clock.t = 6000;
    expect(own.explains(subjectsOfChange('link nnh-0a1b2c3d deleted'))).toBe(false);
    expect(own.explains(subjectsOfNftLine(ALLOWED))).toBe(false);
    expect(own.size).toBe(0);
    expect(own.explained).toBe(5);
  });

  it("never explains another instance's deletions, nor what names no subject", () => {
    const { own } = registry();
    own.note({ phase: 'begin', subjects: ['nnh-99999999', 'nni-99999999', '198.19.16.9'] });
    expect(own.explains(subjectsOfNftLine(ALLOWED))).toBe(false);
    expect(own.explains(subjectsOfChange('link nnh-0a1b2c3d deleted'))).toBe(false);
    expect(own.explains(subjectsOfNftLine(SUBNET))).toBe(false);
    expect(own.explains(subjectsOfChange('link nodenet0 down'))).toBe(false);
    expect(own.explains([])).toBe(false);
    expect(classifyNftMonitorLine(SUBNET)).not.toBeNull(); // a change the watcher still acts on
  });

  it('a create that reuses a subject ends its grace: the new instance is watched again', () => {
    const { own, clock } = registry(1000);
    own.note({ phase: 'begin', subjects: INSTANCE });
    own.note({ phase: 'end', subjects: INSTANCE });
    clock.t = 10;
    // The address goes to a new instance with other link names.
    own.note({ phase: 'create', subjects: ['nnh-11111111', 'nni-11111111', '198.19.16.5'] });
    expect(own.explains(['198.19.16.5'])).toBe(false);
    expect(own.explains(['nnh-0a1b2c3d'])).toBe(true); // the old link's late notice is still own
  });

  it('overlapping releases of one subject: own until the last ends, then for the grace', () => {
    const { own, clock } = registry(1000);
    own.note({ phase: 'begin', subjects: ['198.19.16.5'] });
    own.note({ phase: 'begin', subjects: ['198.19.16.5'] });
    own.note({ phase: 'end', subjects: ['198.19.16.5'] });
    clock.t = 2000;
    expect(own.explains(['198.19.16.5'])).toBe(true);
    own.note({ phase: 'end', subjects: ['198.19.16.5'] });
    clock.t = 2999;
    expect(own.explains(['198.19.16.5'])).toBe(true);
    clock.t = 3000;
    expect(own.explains(['198.19.16.5'])).toBe(false);
  });

  it('forgets finished releases once their grace is over (bounded memory)', () => {
    const { own, clock } = registry(100);
    for (let i = 0; i < 1000; i++) {
      const subjects = [`nnh-${i.toString(16).padStart(8, '0')}`];
      own.note({ phase: 'begin', subjects });
      own.note({ phase: 'end', subjects });
      clock.t += 1;
    }
    expect(own.size).toBeLessThanOrEqual(101);
    clock.t += 100;
    own.explains(['x']);
    expect(own.size).toBe(0);
  });
});
