#!/usr/bin/env node
// The `dds-toy` command (compiled from src/bin.ts; this file exists before the build so that npm can link the bin).
require("../dist/bin.js");
