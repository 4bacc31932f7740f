#!/usr/bin/env node
// The nodenetctl command: the compiled client entry point.
import '../dist/main.js';
