#!/usr/bin/env node
// Compiles contracts/src/*.sol with the pinned npm `solc` (standard JSON) and writes one
// <Contract>.json per contract: abi, bytecode, deployedBytecode and the compiler settings.
// Deterministic: fixed settings, sorted keys, source names relative to contracts/ (no absolute
// paths, no timestamps), so `make contracts` on any machine gives the committed bytes.
// Usage: node contracts/build.js [output directory, default contracts/build]
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const solc = require("solc");

const CONTRACTS_DIR = __dirname;
const SRC_DIR = path.join(CONTRACTS_DIR, "src");
const NODE_MODULES = path.join(CONTRACTS_DIR, "..", "node_modules");

// The contracts deployed from this build. Shanghai (PUSH0, no Cancun opcodes) runs on every EVM
// chain of the registry and on anvil.
const SETTINGS = {
  evmVersion: "shanghai",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

// Resolves imports: "@openzeppelin/..." from node_modules, anything else under contracts/.
function findImports(importPath) {
  const base = importPath.startsWith("@openzeppelin/") ? NODE_MODULES : CONTRACTS_DIR;
  const full = path.resolve(base, importPath);
  if (!full.startsWith(base + path.sep)) return { error: `import outside ${base}: ${importPath}` };
  try {
    return { contents: fs.readFileSync(full, "utf8") };
  } catch (err) {
    return { error: `${importPath}: ${err.message}` };
  }
}

function main() {
  const outDir = path.resolve(process.argv[2] || path.join(CONTRACTS_DIR, "build"));
  const sources = {};
  for (const file of fs.readdirSync(SRC_DIR).filter((name) => name.endsWith(".sol")).sort()) {
    sources[`src/${file}`] = { content: fs.readFileSync(path.join(SRC_DIR, file), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const diagnostic of output.errors || []) process.stderr.write(diagnostic.formattedMessage + "\n");
  if (errors.length) process.exit(1);

  fs.mkdirSync(outDir, { recursive: true });
  const version = solc.version();
  for (const sourceName of Object.keys(sources)) {
    for (const [name, contract] of Object.entries(output.contracts[sourceName] || {})) {
      const artifact = {
        contractName: name,
        sourceName,
        abi: contract.abi,
        bytecode: "0x" + contract.evm.bytecode.object,
        deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
        compiler: { version, evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer },
      };
      fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(sortKeys(artifact), null, 2) + "\n");
      process.stdout.write(`${path.relative(process.cwd(), path.join(outDir, name + ".json"))}\n`);
    }
  }
}

main();
