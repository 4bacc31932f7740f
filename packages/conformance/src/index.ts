// @nodenet/conformance: the contract's behaviour as one suite, run for every backend (see test/). The
// source here is the suite's shared fixture: a node with the real daemon, and how instances are made.
export * from './backends.js';
export * from './fixture.js';
export * from './scenarios.js';
export * from './cluster-fixture.js';
export * from './outage.js';
