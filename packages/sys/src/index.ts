export * from './run.js';
export * from './group-commit.js';
export * from './session.js';
export * from './line-monitor.js';
