// Run inside `unshare -m --propagation unchanged`: bind-mounts directories over others, visible to this mount
// namespace only, then runs a command. Argument arrays only. Usage: node bind-and-run.mjs JSON, where JSON is
// {"binds": [[source, target], ...], "command": [file, arg, ...]}. Exits with the command's exit code.
//
// Why not `--propagation private`: a runtime mounts the namespaces it creates under /run/netns, and nodenetd,
// in the host's mount namespace, must see them: /run/netns keeps its shared propagation. Only the mounts
// holding the bind targets are made private first, so the binds never show outside.
import { execFileSync, spawnSync } from 'node:child_process';

const { binds, command } = JSON.parse(process.argv[2]);
for (const [source, target] of binds) {
  const holder = execFileSync('findmnt', ['-n', '-o', 'TARGET', '-T', target], { encoding: 'utf8' }).trim();
  execFileSync('mount', ['--make-private', holder]);
  execFileSync('mount', ['--bind', source, target]);
}
const r = spawnSync(command[0], command.slice(1), { stdio: 'inherit' });
process.exit(r.status ?? 1);
