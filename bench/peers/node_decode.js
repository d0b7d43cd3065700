// Times the npm asterisk-manager AMI parser (its socket 'data' handler, ManagerReader) on an
// AMI byte file. ManagerReader is not exported, so the module source is compiled with one
// extra export line; the parser itself runs unmodified. Its emitter is replaced by a counter,
// so only parsing is measured. Prints one JSON line like the Rust driver.
// Usage: node node_decode.js <file> [runs]
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');
const { StringDecoder } = require('string_decoder');

const CHUNK = 64 * 1024; // same socket-sized reads as the Rust driver

function loadManagerReader() {
  const file = require.resolve('asterisk-manager/lib/ami.js', { paths: [__dirname] });
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  mod._compile(fs.readFileSync(file, 'utf8') + '\nmodule.exports.ManagerReader = ManagerReader;\n', file);
  return mod.exports.ManagerReader;
}

function parse(reader, data) {
  let messages = 0;
  const counter = { emit() { messages += 1; } };
  const context = {};
  // The library's socket uses setEncoding('utf-8'): a StringDecoder turns reads into strings.
  const decoder = new StringDecoder('utf8');
  for (let start = 0; start < data.length; start += CHUNK) {
    reader.call(counter, context, decoder.write(data.subarray(start, start + CHUNK)));
  }
  return messages;
}

function main() {
  const [file, runsArg] = process.argv.slice(2);
  const runs = Number(runsArg || 1);
  const reader = loadManagerReader();
  const data = fs.readFileSync(file);
  let best = Infinity;
  let messages = 0;
  for (let i = 0; i < runs; i += 1) {
    const start = process.hrtime.bigint();
    messages = parse(reader, data);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  console.log(JSON.stringify({ impl: 'npm asterisk-manager', messages, bytes: data.length, seconds: best }));
}

main();
