// @nodenet/bench: nodenet side by side with the CNI reference plugins and netavark (`npm run bench`).
export * from './options.js';
export * from './run.js';
export * from './results.js';
export * from './stats.js';
export { renderMarkdown } from './report/markdown.js';
export { renderSvg, logTicks, linearTicks } from './report/svg.js';
export type { SystemName } from './systems/types.js';
export { rssMB } from './rss.js';
