// @nodenet/soak: a long churn against a real nodenetd that fails when anything grows with the number of
// operations rather than with the number of live instances (`npm run soak -- --hours H`).
export * from './growth.js';
export * from './metrics.js';
export * from './options.js';
export * from './run.js';
export * from './report.js';
export { renderSoakSvg } from './chart.js';
