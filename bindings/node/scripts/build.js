#!/usr/bin/env node
// Builds the native addon: `npm install` runs this (the "install" script).
//
// KVCLIENT_PROFILE=debug builds a debug addon (CI: much faster to compile);
// anything else, or unset, builds release. CARGO_TARGET_DIR is honoured by
// cargo as usual. With the napi-rs CLI (a devDependency, so present when
// installing inside bindings/node) this also regenerates index.js and
// index.d.ts; without it (installed as a dependency of another project)
// it runs cargo directly and copies the library to the same file name.
'use strict'
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const debug = process.env.KVCLIENT_PROFILE === 'debug'

function run(cmd, args) {
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' })
}

function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function withCli(cli) {
  const args = [cli, 'build', '--platform', '--js', 'index.js', '--dts', 'index.d.ts', '--output-dir', '.']
  if (!debug) args.push('--release')
  run(process.execPath, args)
}

function withCargo() {
  const args = ['build', '--lib', '--manifest-path', path.join(root, 'Cargo.toml'), '--message-format', 'json-render-diagnostics']
  if (!debug) args.push('--release')
  const out = execFileSync('cargo', args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 28 })
  let lib
  for (const line of out.toString().split('\n')) {
    if (!line.includes('"compiler-artifact"') || !line.includes('kvclient-node')) continue
    const msg = JSON.parse(line)
    lib = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) ?? lib
  }
  if (!lib) throw new Error('cargo did not report the kvclient-node library')
  fs.copyFileSync(lib, path.join(root, `kvclient.${platformSuffix()}.node`))
}

// Only the CLI installed for this package (its devDependency) is used.
const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
if (fs.existsSync(cli)) withCli(cli)
else withCargo()
