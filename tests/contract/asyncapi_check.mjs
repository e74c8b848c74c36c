// Parse docs/asyncapi.yaml with the official AsyncAPI parser; print every diagnostic as JSON.
import { Parser, fromFile } from '@asyncapi/parser';

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
const out = diagnostics.map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
console.log(JSON.stringify({ parsed: Boolean(document), version: document ? document.version() : null, diagnostics: out }));
