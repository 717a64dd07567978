#!/usr/bin/env node
// The `acp-relay` command of the npm package: finds the native binary that npm installed from
// the matching platform package (acp-relay-<platform>-<arch>, an optional dependency that
// npm picks by its `os` and `cpu` fields; no install script) and runs it. stdin, stdout and
// stderr are the binary's own (MCP over stdio passes straight through), its exit code is
// this process's, and SIGINT/SIGTERM/SIGHUP are passed on so the node shuts down cleanly
// (also when npx's shell in between swallows the SIGTERM: see the parent watch below).
// ACP_RELAY_BINARY=/path/to/acp-relay runs another binary instead.
'use strict';

const { spawn } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const platform = `${process.platform}-${process.arch}`;
const pkg = `acp-relay-${platform}`;
const exe = process.platform === 'win32' ? 'acp-relay.exe' : 'acp-relay';

function binaryPath() {
  if (process.env.ACP_RELAY_BINARY) return process.env.ACP_RELAY_BINARY;
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), 'bin', exe);
  } catch {
    return null;
  }
}

const bin = binaryPath();
if (!bin) {
  console.error(
    `acp-relay: the package ${pkg} with the binary for this platform is not installed ` +
      '(npm skips it with --omit=optional, and there is none for other platforms): ' +
      'reinstall without --omit=optional, use `uvx acp-relay`, or set ACP_RELAY_BINARY to an acp-relay binary.',
  );
  process.exit(1);
}

const child = spawn(bin, process.argv.slice(2), { stdio: 'inherit', windowsHide: true });

function forward(signal) {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => forward(signal));
}

// `npx` (npm exec) runs this script under `sh -c` and passes a SIGTERM on only to that
// shell, which dies of it without passing it further: this process is then re-parented.
// A new parent pid means whoever started us is gone, so stop the binary as if signalled.
if (process.platform !== 'win32') {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watch);
      forward('SIGTERM');
    }
  }, 200);
  watch.unref();
}

child.on('error', (err) => {
  console.error(`acp-relay: cannot run ${bin}: ${err.message}`);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  if (signal) {
    // Die of the same signal, so whoever started us sees what happened to the binary.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    process.exit(128 + (os.constants.signals[signal] || 0));
  }
  process.exit(code === null ? 1 : code);
});
