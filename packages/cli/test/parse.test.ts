import { describe, expect, it } from 'vitest';
import { Protocol } from '@nodenet/api';
import { normalizeTarget, parsePort, parsePortMapping, parseTimeout } from '../src/parse.js';

describe('parsePortMapping', () => {
  it('reads HOST:INSTANCE/PROTOCOL into a PortMapping', () => {
    expect(parsePortMapping('8081:80/tcp')).toEqual({ hostPort: 8081, instancePort: 80, protocol: Protocol.TCP });
    expect(parsePortMapping('5353:53/udp')).toEqual({ hostPort: 5353, instancePort: 53, protocol: Protocol.UDP });
    expect(parsePortMapping('443:8443/TCP')).toEqual({ hostPort: 443, instancePort: 8443, protocol: Protocol.TCP });
  });

  it('without an instance port maps to the same port; without a protocol means TCP and UDP', () => {
    expect(parsePortMapping('8081/udp')).toEqual({ hostPort: 8081, instancePort: 8081, protocol: Protocol.UDP });
    expect(parsePortMapping('8081:80')).toEqual({ hostPort: 8081, instancePort: 80, protocol: Protocol.TCP_AND_UDP });
    expect(parsePortMapping('65535')).toEqual({ hostPort: 65535, instancePort: 65535, protocol: Protocol.TCP_AND_UDP });
  });

  it('@HOST_ADDRESS publishes on that address only (the daemon judges the address)', () => {
    expect(parsePortMapping('8081:80/tcp@127.0.0.1')).toEqual({
      hostPort: 8081,
      instancePort: 80,
      protocol: Protocol.TCP,
      hostAddress: '127.0.0.1',
    });
    expect(parsePortMapping('53@198.18.0.5')).toEqual({
      hostPort: 53,
      instancePort: 53,
      protocol: Protocol.TCP_AND_UDP,
      hostAddress: '198.18.0.5',
    });
    // An IPv6 address after '@' keeps its colons (the ports come before it).
    expect(parsePortMapping('8443:443/tcp@2001:db8:18::5')).toEqual({
      hostPort: 8443,
      instancePort: 443,
      protocol: Protocol.TCP,
      hostAddress: '2001:db8:18::5',
    });
  });

  it.each([
    ['', /host port '' is not a port number/],
    [':80', /host port '' is not a port number/],
    ['80:', /instance port '' is not a port number/],
    ['0:80', /host port '0' is not a port number: use 1..65535/],
    ['80:65536', /instance port '65536'/],
    ['080', /host port '080'/],
    ['0x50', /host port '0x50'/],
    ['+80', /host port '\+80'/],
    ['80:90:100', /'80:90:100' is not a port mapping: use HOST_PORT\[:INSTANCE_PORT\]\[\/tcp\|\/udp\]\[@HOST_ADDRESS\]/],
    ['80@', /the host address after '@' is empty/],
    ['80@1.2.3.4@5', /is not a port mapping/],
    ['80/sctp', /protocol 'sctp' is not tcp or udp/],
    ['80/tcp/udp', /protocol 'tcp\/udp' is not tcp or udp/],
    ['80/', /protocol '' is not tcp or udp/],
  ])('refuses %j', (value, message) => {
    expect(() => parsePortMapping(value)).toThrow(message);
  });
});

describe('parsePort', () => {
  it('accepts decimal 1..65535', () => {
    expect(parsePort('1')).toBe(1);
    expect(parsePort('8080')).toBe(8080);
    expect(parsePort('65535')).toBe(65535);
  });

  it.each(['0', '65536', '99999', '-1', '1.5', '1e3', ' 80', '80 ', 'http', '0080'])('refuses %j', (value) => {
    expect(() => parsePort(value)).toThrow(`port '${value}' is not a port number: use 1..65535`);
  });
});

describe('parseTimeout and normalizeTarget', () => {
  it('a timeout is a positive integer of milliseconds', () => {
    expect(parseTimeout('1500')).toBe(1500);
    for (const bad of ['0', '-5', '1.5', 'soon', '', '10s']) expect(() => parseTimeout(bad)).toThrow(/is not a timeout/);
  });

  it('a bare absolute path is a unix socket; other targets pass unchanged', () => {
    expect(normalizeTarget('/run/nodenet/nodenet.sock')).toBe('unix:///run/nodenet/nodenet.sock');
    expect(normalizeTarget('unix:///tmp/x.sock')).toBe('unix:///tmp/x.sock');
    expect(normalizeTarget('10.0.0.5:7443')).toBe('10.0.0.5:7443');
    expect(() => normalizeTarget('  ')).toThrow(/target is empty/);
  });
});
