/**
 * A consumer of @nodenet/api installed from its tarball (consumption.int.test.ts): the typed client
 * against a running daemon, public names only.
 *
 *   node client.js TARGET cni GATEWAY SUBNET | create ADDRESS | delete HANDLE
 *
 * Prints the response as one JSON line; a gRPC error exits 1 with its code and message.
 */
import { createNetworkClient, isServiceError, type CreateInterfaceResponse, type NetworkApiClient } from '@nodenet/api';

async function main(client: NetworkApiClient, command: string | undefined, args: string[]): Promise<unknown> {
  switch (command) {
    case 'cni':
      return client.createContainerNetworkInterface({ ipAddress: args[0], subNetwork: args[1] });
    case 'create': {
      const response: CreateInterfaceResponse = await client.createInterface({ ipAddress: args[0] });
      return response;
    }
    case 'delete':
      return client.deleteInterface({ interfaceName: args[0] });
    default:
      throw new Error(`unknown command ${command ?? '(none)'}: give cni, create or delete`);
  }
}

const [target, command, ...args] = process.argv.slice(2);
if (!target) throw new Error('give the daemon target (unix:///path or host:port)');
const client = createNetworkClient(target);
try {
  console.log(JSON.stringify(await main(client, command, args)));
} catch (e) {
  if (!isServiceError(e)) throw e;
  console.error(JSON.stringify({ code: e.code, details: e.details }));
  process.exitCode = 1;
} finally {
  client.close();
}
