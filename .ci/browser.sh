#!/usr/bin/env bash
# CI: the browser test (web/test/browser.test.mjs). Installs Debian's chromium when no Chromium is present (no
# browser is downloaded by npm: the test drives it with puppeteer-core), builds the packages and the page, and runs
# a 40-step DDS edit in headless Chromium on wasm (and on WebGPU when the browser offers an adapter).
# Expects `npm ci` to have run (as .ci/run does first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi
npm run test:browser
