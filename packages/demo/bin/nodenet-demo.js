#!/usr/bin/env node
// The nodenet-demo command: the compiled demo entry point.
import '../dist/main.js';
