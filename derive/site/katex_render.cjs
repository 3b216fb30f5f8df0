// Renders a batch of TeX strings to HTML with KaTeX, in one process.
//
// stdin:  {"items": [{"tex": "...", "display": true}, ...]}
// stdout: {"version": "0.16.x", "results": [{"html": "..."} | {"error": "..."}, ...],
//          "warnings": [[index, "message"], ...]}
// One result per item, in order; a TeX error is reported for its item
// (throwOnError) so that the caller can name the page it came from.
"use strict";

const katex = require("katex");

function main(input) {
  const request = JSON.parse(input);
  const warnings = [];
  let current = -1;
  const results = request.items.map((item, index) => {
    current = index;
    try {
      const html = katex.renderToString(item.tex, {
        displayMode: Boolean(item.display),
        throwOnError: true,
        output: "htmlAndMathml",
        // KaTeX's "strict" warnings (e.g. unicode text in math mode) are
        // passed back so that mkdocs --strict turns them into failures.
        strict: (code, message) => {
          warnings.push([current, `${code}: ${message}`]);
          return "ignore";
        },
        trust: false,
      });
      return { html };
    } catch (err) {
      return { error: String(err && err.message ? err.message : err) };
    }
  });
  process.stdout.write(JSON.stringify({ version: katex.version, results, warnings }));
}

let data = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { data += chunk; });
process.stdin.on("end", () => {
  try {
    main(data);
  } catch (err) {
    process.stderr.write(`katex_render: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  }
});
