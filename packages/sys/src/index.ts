export * from './run.js';
export * from './group-commit.js';
