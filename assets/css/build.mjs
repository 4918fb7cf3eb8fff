// Builds static/css/patient.min.css, the one stylesheet of the patient pages:
// Bootstrap's compiled CSS (static/vendor/bootstrap/) and ours
// (static/css/site.css), with only the rules the pages can use.
//
//   node assets/css/build.mjs --crispy-templates DIR [--out FILE]
//
// `make css` runs it (after `npm ci`) with crispy-bootstrap5's template
// folder from .venv; tests/test_css_build.py runs it into a temporary file
// and compares. Everything it reads is named in assets/css/patient.json.
//
// 1. The sources, concatenated in order (as the two <link>s were).
// 2. The rules of the components named in "left_out" are dropped: a selector
//    that names one of their classes (or a pseudo-element named in
//    "left_out_pseudo_elements") goes, and a rule left with none goes.
// 3. PurgeCSS keeps each remaining selector whose classes, ids, tags and
//    attributes all appear as words in the content: every template under
//    templates/, crispy-bootstrap5's templates (they render the form
//    fields), static/js/, the class strings in requests_app/'s Python
//    (css_class="…", "class": "…", class="…"), and the "safelist". Every
//    attribute but data-… counts as present, and so do Django's field ids
//    (#id_…): Python makes both. Custom properties that no kept declaration
//    reads, and unused @keyframes, go.
// 4. clean-css at level 1 (as Bootstrap's own dist build) minifies it.
//
// Same input, same bytes: no dates, no paths, files read in sorted order.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import CleanCSS from "clean-css";
import fg from "fast-glob";
import postcss from "postcss";
import selectorParser from "postcss-selector-parser";
import { PurgeCSS } from "purgecss";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const CONFIG_PATH = path.join(ROOT, "assets", "css", "patient.json");

const HEADER = "/*! Built by `make css` (assets/css/build.mjs) from static/vendor/bootstrap/ and static/css/site.css: do not edit. */";

// Class names inside Python strings: crispy's css_class=…, a widget's
// attrs={"class": …}, and HTML built in Python (format_html).
const PYTHON_CLASS_STRINGS = [
  /\b(?:css_class|wrapper_class|field_class|label_class)\s*=\s*(["'])(.*?)\1/g,
  /["']class["']\s*:\s*(["'])(.*?)\1/g,
  /\bclass=\\?(["'])(.*?)\\?\1/g,
];

function fail(message) {
  process.stderr.write(`build.mjs: ${message}\n`);
  process.exit(1);
}

function sortedFiles(patterns, cwd) {
  const files = fg.sync(patterns, { cwd, onlyFiles: true, dot: false, absolute: true });
  return [...new Set(files)].sort();
}

function pythonClassStrings(patterns) {
  const found = new Set();
  for (const file of sortedFiles(patterns, ROOT)) {
    const text = fs.readFileSync(file, "utf8");
    for (const pattern of PYTHON_CLASS_STRINGS) {
      for (const match of text.matchAll(pattern)) {
        for (const word of match[2].split(/\s+/)) {
          if (word) found.add(word);
        }
      }
    }
  }
  return [...found].sort();
}

// Attributes come from Python as often as from templates (Django's widgets
// render type="tel", name="…", readonly…), so a selector's attributes count
// as present, but for data-… ones (Bootstrap's JavaScript and colour modes).
function attributesOf(css) {
  const names = new Set();
  postcss.parse(css).walkRules((rule) => {
    selectorParser((selectors) => {
      selectors.walkAttributes((node) => {
        if (!node.attribute.startsWith("data-")) names.add(node.attribute);
      });
    }).processSync(rule.selector);
  });
  return [...names].sort();
}

// The ids Django gives form fields (id_<name>) are made in Python too.
const DJANGO_FIELD_ID = /^id_/;

function isLeftOut(className, leftOut) {
  return leftOut.some((name) => className === name || className.startsWith(`${name}-`));
}

// Drops every selector that names a class of a left-out component, or a
// left-out pseudo-element.
function dropLeftOut(css, leftOut, pseudoElements) {
  const root = postcss.parse(css);
  const namesLeftOut = (selector) => {
    let found = false;
    selectorParser((selectors) => {
      selectors.walkClasses((node) => {
        if (isLeftOut(node.value, leftOut)) found = true;
      });
      selectors.walkPseudos((node) => {
        if (pseudoElements.includes(node.value)) found = true;
      });
    }).processSync(selector);
    return found;
  };
  root.walkRules((rule) => {
    if (rule.parent && rule.parent.type === "atrule" && /keyframes$/i.test(rule.parent.name)) return;
    const kept = rule.selectors.filter((selector) => !namesLeftOut(selector));
    if (kept.length === 0) {
      rule.remove();
    } else if (kept.length !== rule.selectors.length) {
      rule.selectors = kept;
    }
  });
  // An @media or @supports left with no rules inside goes too.
  root.walkAtRules((atRule) => {
    if (atRule.nodes && atRule.nodes.length === 0) atRule.remove();
  });
  return root.toString();
}

// PurgeCSS's `variables` option drops the custom properties (--bs-…) that
// no kept declaration reads. Checked against the same purge without it:
// every custom property it dropped must be read nowhere in what is left.
function customProperties(css) {
  const declared = new Set();
  const read = new Set();
  postcss.parse(css).walkDecls((decl) => {
    if (decl.prop.startsWith("--")) declared.add(decl.prop);
    for (const match of decl.value.matchAll(/var\(\s*(--[\w-]+)/g)) read.add(match[1]);
  });
  return { declared, read };
}

function checkVariables(withAll, withUsed) {
  const all = customProperties(withAll);
  const used = customProperties(withUsed);
  const wrongly = [...all.declared].filter((name) => !used.declared.has(name) && used.read.has(name));
  if (wrongly.length) fail(`PurgeCSS dropped custom properties that are still read: ${wrongly.sort().join(", ")}`);
}

async function build(crispyTemplates) {
  const config = JSON.parse(fs.readFileSync(CONFIG_PATH, "utf8"));
  const leftOut = [...config.left_out.needs_bootstrap_js, ...config.left_out.unused_crispy_layouts];
  const pseudoElements = [...config.left_out_pseudo_elements.file_inputs];

  const sources = config.sources.map((source) => fs.readFileSync(path.join(ROOT, source), "utf8"));
  const css = dropLeftOut(sources.join("\n"), leftOut, pseudoElements);

  const dynamicAttributes = attributesOf(css);
  const contentFiles = sortedFiles(config.content, ROOT);
  const crispyFiles = sortedFiles(["**/*.html"], crispyTemplates);
  if (crispyFiles.length === 0) fail(`no templates under ${crispyTemplates}`);
  const content = [...contentFiles, ...crispyFiles].map((file) => ({
    raw: fs.readFileSync(file, "utf8"),
    extension: "html",
  }));
  content.push({ raw: pythonClassStrings(config.python).join(" "), extension: "html" });

  const purge = async (variables) => {
    const [result] = await new PurgeCSS().purge({
      content,
      css: [{ raw: css }],
      safelist: { standard: [...config.safelist, DJANGO_FIELD_ID] },
      dynamicAttributes,
      variables,
      keyframes: true,
      fontFace: true,
    });
    return result.css;
  };
  const purged = await purge(true);
  checkVariables(await purge(false), purged);

  const minified = new CleanCSS({ level: 1, inline: false, rebase: false }).minify(purged);
  if (minified.errors.length || minified.warnings.length) {
    fail(`clean-css: ${[...minified.errors, ...minified.warnings].join("; ")}`);
  }
  // @charset must stay the first thing in the file, before any comment.
  const charset = '@charset "UTF-8";';
  let body = minified.styles;
  let head = HEADER;
  if (body.startsWith(charset)) {
    body = body.slice(charset.length);
    head = charset + HEADER;
  }
  return `${head}\n${body}\n`;
}

const { values } = parseArgs({
  options: {
    "crispy-templates": { type: "string" },
    out: { type: "string" },
  },
});
if (!values["crispy-templates"]) fail("--crispy-templates DIR is required (crispy_bootstrap5's templates folder)");
const config = JSON.parse(fs.readFileSync(CONFIG_PATH, "utf8"));
const out = path.resolve(values.out ?? path.join(ROOT, config.output));
const result = await build(path.resolve(values["crispy-templates"]));

// Written whole or not at all.
const partial = `${out}.partial`;
fs.writeFileSync(partial, result);
fs.renameSync(partial, out);
const size = Buffer.byteLength(result);
process.stdout.write(`${path.relative(process.cwd(), out) || out}: ${size} bytes\n`);
if (size > config.budget_bytes) {
  // tests/test_css_build.py fails on it; the file is written all the same.
  process.stderr.write(`build.mjs: warning: ${size} bytes is over the budget of ${config.budget_bytes} (assets/css/patient.json)\n`);
}
