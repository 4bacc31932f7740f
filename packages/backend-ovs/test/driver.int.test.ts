/** The Dataplane driver suite (@nodenet/conformance) against the ovs backend: a private Open vSwitch (userspace datapath) in the test's node namespace. */
import { PrivateOvs, TestScope } from '@nodenet/testkit';
import { testDataplane } from '@nodenet/conformance/dataplane-suite';
import { OvsDataplane } from '../src/index.js';

testDataplane(
  'ovs',
  async () => {
    const scope = await TestScope.create();
    const nodeNs = await scope.createNamespace();
    const ovs = await PrivateOvs.start(scope, nodeNs);
    const dataplane = new OvsDataplane({ ...ovs.config, netns: nodeNs });
    scope.defer('close the dataplane', () => dataplane.close());
    return { dataplane, nodeNs, newNamespace: () => scope.createNamespace(), cleanup: () => scope.cleanup() };
  },
  { idBase: 0x0d200000 },
);
