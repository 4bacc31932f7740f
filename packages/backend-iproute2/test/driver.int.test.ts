/** The Dataplane driver suite (@nodenet/conformance) against the iproute2 backend, in namespaces the test makes. */
import { TestScope } from '@nodenet/testkit';
import { testDataplane } from '@nodenet/conformance/dataplane-suite';
import { Iproute2Dataplane } from '../src/index.js';

testDataplane(
  'iproute2',
  async () => {
    const scope = await TestScope.create();
    const nodeNs = await scope.createNamespace();
    const dataplane = new Iproute2Dataplane({ netns: nodeNs });
    scope.defer('close the dataplane', () => dataplane.close());
    return { dataplane, nodeNs, newNamespace: () => scope.createNamespace(), cleanup: () => scope.cleanup() };
  },
  { idBase: 0x0d100000 },
);
