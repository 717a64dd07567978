#!/usr/bin/env node
// Fills the npm packages from Cargo.toml's version and built binaries, ready for `npm pack`
// or `npm publish` (the release workflow and .ci/packaging run it; nothing here downloads).
//
//   node npm/stage.js --out DIR --launcher
//       copies the launcher package `acp-relay` to DIR/acp-relay (its version and its
//       optionalDependencies must be Cargo.toml's version: bump them together).
//   node npm/stage.js --out DIR --target RUST_TARGET --binary PATH
//       writes the platform package acp-relay-<os>-<cpu> for that Rust target to
//       DIR/acp-relay-<os>-<cpu>, with the binary under bin/ and `os`/`cpu` fields so that
//       npm installs it only where it runs. No install scripts.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

// Rust target → the npm platform package (process.platform, process.arch).
const PLATFORMS = {
  'x86_64-unknown-linux-musl': { os: 'linux', cpu: 'x64' },
  'aarch64-unknown-linux-musl': { os: 'linux', cpu: 'arm64' },
  'x86_64-apple-darwin': { os: 'darwin', cpu: 'x64' },
  'aarch64-apple-darwin': { os: 'darwin', cpu: 'arm64' },
  'x86_64-pc-windows-msvc': { os: 'win32', cpu: 'x64' },
};

function fail(msg) {
  console.error(`npm/stage.js: ${msg}`);
  process.exit(1);
}

function cargoVersion() {
  const toml = fs.readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8');
  const pkg = toml.split(/^\[/m).find((s) => s.startsWith('package]'));
  const m = pkg && pkg.match(/^version\s*=\s*"([^"]+)"/m);
  if (!m) fail('no [package] version in Cargo.toml');
  return m[1];
}

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--launcher') out.launcher = true;
    else if (['--out', '--target', '--binary'].includes(a) && i + 1 < argv.length) out[a.slice(2)] = argv[++i];
    else fail(`unknown argument ${a}`);
  }
  if (!out.out) fail('--out DIR is required');
  if (!out.launcher && !(out.target && out.binary)) fail('give --launcher, or --target and --binary');
  return out;
}

function writeJson(file, value) {
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

function stageLauncher(outDir, version) {
  const src = path.join(__dirname, 'acp-relay');
  const pkg = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8'));
  if (pkg.version !== version) fail(`npm/acp-relay/package.json has version ${pkg.version}, Cargo.toml ${version}`);
  const want = Object.values(PLATFORMS).map((p) => `acp-relay-${p.os}-${p.cpu}`).sort();
  const have = Object.keys(pkg.optionalDependencies || {}).sort();
  if (JSON.stringify(want) !== JSON.stringify(have)) fail(`optionalDependencies ${have} should be ${want}`);
  for (const [name, v] of Object.entries(pkg.optionalDependencies)) {
    if (v !== version) fail(`optionalDependencies.${name} is ${v}, Cargo.toml ${version}`);
  }
  const dest = path.join(outDir, 'acp-relay');
  fs.rmSync(dest, { recursive: true, force: true });
  fs.cpSync(src, dest, { recursive: true });
  fs.chmodSync(path.join(dest, 'bin', 'acp-relay.js'), 0o755);
  return dest;
}

function stagePlatform(outDir, version, target, binary) {
  const p = PLATFORMS[target];
  if (!p) fail(`no npm package for target ${target}; known: ${Object.keys(PLATFORMS).join(', ')}`);
  if (!fs.existsSync(binary)) fail(`no binary at ${binary}`);
  const name = `acp-relay-${p.os}-${p.cpu}`;
  const dest = path.join(outDir, name);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(path.join(dest, 'bin'), { recursive: true });
  const exe = p.os === 'win32' ? 'acp-relay.exe' : 'acp-relay';
  fs.copyFileSync(binary, path.join(dest, 'bin', exe));
  fs.chmodSync(path.join(dest, 'bin', exe), 0o755);
  const launcher = JSON.parse(fs.readFileSync(path.join(__dirname, 'acp-relay', 'package.json'), 'utf8'));
  writeJson(path.join(dest, 'package.json'), {
    name,
    version,
    description: `The acp-relay binary for ${p.os} ${p.cpu} (${target}); install the package acp-relay, which uses it.`,
    license: launcher.license,
    repository: launcher.repository,
    homepage: launcher.homepage,
    os: [p.os],
    cpu: [p.cpu],
    files: ['bin'],
    preferUnplugged: true,
  });
  fs.writeFileSync(
    path.join(dest, 'README.md'),
    `# ${name}\n\nThe \`acp-relay\` binary for ${p.os} ${p.cpu} (\`${target}\`). Do not install this ` +
      'package directly: install `acp-relay` (`npx -y acp-relay`), which depends on it for this ' +
      'platform and runs it.\n',
  );
  return dest;
}

const a = args();
const version = cargoVersion();
fs.mkdirSync(a.out, { recursive: true });
const dest = a.launcher ? stageLauncher(a.out, version) : stagePlatform(a.out, version, a.target, a.binary);
console.log(dest);
