// Renders the server's openapi.json as a page: paths, parameters, bodies, answers.
"use strict";

const element = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

function describeSchema(schema) {
  if (!schema) return "";
  if (schema.enum) return schema.enum.join(" | ");
  if (schema.format === "binary") return "file";
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
  return schema.default !== undefined ? `${type} (default ${schema.default})` : type;
}

function table(headings, rows) {
  const result = element("table");
  const head = element("tr");
  headings.forEach((text) => head.append(element("th", text)));
  result.append(head);
  rows.forEach((cells) => {
    const line = element("tr");
    cells.forEach((text, i) => line.append(element("td", text, i === 0 ? "name" : undefined)));
    result.append(line);
  });
  return result;
}

function operation(path, method, spec) {
  const section = element("section");
  const title = element("h2");
  title.append(element("span", method.toUpperCase(), "method"), ` ${path}`);
  section.append(title, element("p", spec.summary));
  if (spec.description) section.append(element("p", spec.description));
  if (spec.parameters && spec.parameters.length) {
    section.append(element("h3", "query"));
    section.append(table(["name", "type", "meaning"], spec.parameters.map((p) =>
      [p.name, describeSchema(p.schema), p.description || ""])));
  }
  if (spec.requestBody) {
    section.append(element("h3", "body"));
    const rows = [];
    for (const [kind, body] of Object.entries(spec.requestBody.content)) {
      for (const [name, field] of Object.entries(body.schema.properties || {})) {
        rows.push([name, describeSchema(field), kind]);
      }
    }
    section.append(table(["field", "type", "sent as"], rows));
  }
  section.append(element("h3", "answers"));
  section.append(table(["status", "meaning", "content"], Object.entries(spec.responses).map(
    ([status, answer]) => [status, answer.description, Object.keys(answer.content || {}).join(", ")])));
  return section;
}

async function render() {
  const paths = document.getElementById("paths");
  try {
    const schema = await (await fetch("openapi.json")).json();
    document.getElementById("title").textContent = `${schema.info.title} ${schema.info.version}: the HTTP API`;
    for (const pre of document.querySelectorAll("pre")) {
      pre.textContent = pre.textContent.replaceAll("HOST", location.host);
    }
    for (const [path, methods] of Object.entries(schema.paths)) {
      for (const [method, spec] of Object.entries(methods)) paths.append(operation(path, method, spec));
    }
  } catch (error) {
    paths.append(element("p", `cannot read openapi.json: ${error.message}`));
  }
}

render();
