// The host side of MCP Apps (SEP-1865, 2026-01-26) for tests: it renders a tool's ui:// resource
// in a sandboxed iframe and speaks JSON-RPC with it over postMessage. MCP requests go to
// POST /rpc, where the test's Python side forwards them to a real mcp-images server.
"use strict";
const hostState = { log: [], theme: "light", tools: [], frame: null, initialized: false };
window.hostState = hostState;

async function rpc(method, params) {
  const response = await fetch("/rpc", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, params }),
  });
  const answer = await response.json();
  if (answer.error) throw answer.error;
  return answer.result;
}

// The CSP the spec tells hosts to build from the resource's _meta.ui.csp.
function cspFor(csp) {
  const res = ((csp && csp.resourceDomains) || []).join(" ");
  const con = ((csp && csp.connectDomains) || []).join(" ");
  const frames = ((csp && csp.frameDomains) || []).join(" ") || "'none'";
  const base = ((csp && csp.baseUriDomains) || []).join(" ") || "'self'";
  return [
    "default-src 'none'", `script-src 'self' 'unsafe-inline' ${res}`, `style-src 'self' 'unsafe-inline' ${res}`,
    `connect-src 'self' ${con}`, `img-src 'self' data: ${res}`, `font-src 'self' ${res}`,
    `media-src 'self' data: ${res}`, `frame-src ${frames}`, "object-src 'none'", `base-uri ${base}`,
  ].join("; ");
}

function visibleToApp(name) {
  const tool = hostState.tools.find((t) => t.name === name);
  if (!tool) return false;
  const vis = tool._meta && tool._meta.ui && tool._meta.ui.visibility;
  return !vis || vis.includes("app");
}

function post(msg) { hostState.frame.contentWindow.postMessage({ jsonrpc: "2.0", ...msg }, "*"); }

async function answer(msg, ctx) {
  const reply = (result) => post({ id: msg.id, result });
  const fail = (code, message) => post({ id: msg.id, error: { code, message } });
  try {
    if (msg.method === "ui/initialize") return reply(ctx.initializeResult);
    if (msg.method === "ping") return reply({});
    if (msg.method === "tools/call") {
      if (!visibleToApp(msg.params.name)) return fail(-32602, `tool ${msg.params.name} is not callable by apps`);
      return reply(await rpc("tools/call", msg.params));
    }
    if (msg.method === "resources/read") return reply(await rpc("resources/read", msg.params));
    return fail(-32601, "Method not found");
  } catch (err) {
    return fail(err.code || -32603, err.message || String(err));
  }
}

function onNotification(msg, ctx) {
  if (msg.method === "ui/notifications/initialized") {
    hostState.initialized = true;
    post({ method: "ui/notifications/tool-input", params: { arguments: ctx.args } });
    ctx.result.then((result) => post({ method: "ui/notifications/tool-result", params: result }));
  } else if (msg.method === "ui/notifications/size-changed" && msg.params && msg.params.height) {
    hostState.frame.style.height = `${Math.ceil(msg.params.height) + 2}px`;
  }
}

async function runTool(name, args) {
  hostState.tools = (await rpc("tools/list", {})).tools;
  const tool = hostState.tools.find((t) => t.name === name);
  const uri = tool && tool._meta && tool._meta.ui && tool._meta.ui.resourceUri;
  if (!uri) throw new Error(`${name} has no UI`);
  const result = rpc("tools/call", { name, arguments: args });
  const content = (await rpc("resources/read", { uri })).contents[0];
  if (content.mimeType !== "text/html;profile=mcp-app") throw new Error(`not an MCP App: ${content.mimeType}`);
  const ui = (content._meta && content._meta.ui) || {};
  const html = content.text.replace("<head>", `<head><meta http-equiv="Content-Security-Policy" content="${cspFor(ui.csp)}">`);
  const ctx = {
    args, result,
    initializeResult: {
      protocolVersion: "2026-01-26",
      hostInfo: { name: "mcp-images test host", version: "1" },
      hostCapabilities: { serverTools: {}, serverResources: {}, logging: {} },
      hostContext: {
        toolInfo: { tool }, theme: hostState.theme, displayMode: "inline", availableDisplayModes: ["inline"],
        containerDimensions: { maxHeight: 6000 }, platform: "web", locale: "en-US",
        styles: { variables: { "--font-sans": "system-ui, sans-serif" } },
      },
    },
  };
  const frame = document.createElement("iframe");
  frame.id = "app";
  frame.title = "Image studio";
  frame.setAttribute("sandbox", "allow-scripts");  // no same-origin, forms, popups or top navigation
  hostState.frame = frame;
  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow) return;
    const msg = event.data;
    if (!msg || msg.jsonrpc !== "2.0") return;
    hostState.log.push(msg.method || `response ${msg.id}`);
    if (msg.method && msg.id !== undefined) answer(msg, ctx);
    else if (msg.method) onNotification(msg, ctx);
  });
  frame.srcdoc = html;
  document.getElementById("frame-box").replaceChildren(frame);
  return uri;
}

function setTheme(theme) {
  hostState.theme = theme;
  document.body.classList.toggle("dark", theme === "dark");
  if (hostState.initialized) post({ method: "ui/notifications/host-context-changed", params: { theme } });
}
window.runTool = runTool;
window.setTheme = setTheme;
