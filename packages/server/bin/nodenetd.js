#!/usr/bin/env node
// The nodenetd command: the compiled daemon entry point.
import '../dist/main.js';
