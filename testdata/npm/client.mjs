#!/usr/bin/env node
// client.mjs: a TypeScript-SDK MCP client that runs a scenario against a
// server (directly or through the mcptrail gateway) and prints ONE JSON
// object with what happened on stdout. Diagnostics go to stderr.
//
//   node client.mjs --url URL [--transport http|sse] --scenario NAME
//                   [--prefix everything.] [--token T] [--timeout-ms N]
//   node client.mjs --transport stdio --cmd "mcptrail stdio --url URL" --scenario NAME
//
// With --transport stdio the client spawns --cmd (split on spaces) and
// speaks newline-delimited JSON-RPC to it, e.g. through `mcptrail stdio`.
//
// Scenarios:
//   everything   against @modelcontextprotocol/server-everything: tools
//                (echo, get-sum, structured content, image, long-running
//                with progress, tool error, invalid arguments, unknown tool),
//                resources (list, read, templates, unknown), prompts (list,
//                get, unknown), sampling and elicitation with canned answers.
//   testbackend  against mcptrail's Go test backend (proxy/testbackend):
//                echo, add, fail, slow with progress, write_note, big,
//                elicit, resources and the greet prompt.
//   smoke        listTools + one echo call.
//
// --prefix is prepended to tool and prompt names so the same scenario runs
// directly (prefix "") and through a gateway that namespaces backends.
// Each step records ok plus what it observed; the top-level "ok" is true
// when every step passed. The exit code is 0 when ok, 1 otherwise, 2 on
// usage errors.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";

function parseArgs(argv) {
  const opts = { transport: "http", prefix: "", token: "", timeoutMs: 30000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case "--url": opts.url = next(); break;
      case "--transport": opts.transport = next(); break;
      case "--scenario": opts.scenario = next(); break;
      case "--prefix": opts.prefix = next(); break;
      case "--token": opts.token = next(); break;
      case "--timeout-ms": opts.timeoutMs = Number(next()); break;
      case "--cmd": opts.cmd = next(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!["http", "sse", "stdio"].includes(opts.transport)) usage(`--transport must be http, sse or stdio, got ${opts.transport}`);
  if (opts.transport === "stdio" ? !opts.cmd : !opts.url) usage(opts.transport === "stdio" ? "--cmd is required with --transport stdio" : "--url is required");
  if (!opts.scenario) usage("--scenario is required");
  if (!(opts.scenario in scenarios)) usage(`unknown scenario ${opts.scenario}; known: ${Object.keys(scenarios).join(", ")}`);
  return opts;
}

function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\nusage: node client.mjs (--url URL [--transport http|sse] | --transport stdio --cmd CMD) --scenario ${Object.keys(scenarios).join("|")} [--prefix P] [--token T]\n`);
  process.exit(2);
}

// errorInfo turns a thrown error into a JSON-friendly object, keeping the
// JSON-RPC code when there is one.
function errorInfo(e) {
  if (e instanceof McpError || (e && typeof e.code === "number")) {
    return { code: e.code, message: e.message, data: e.data };
  }
  return { message: String(e?.message ?? e) };
}

function texts(result) {
  return (result?.content ?? []).filter((c) => c.type === "text").map((c) => c.text);
}

// Canned answers for server-initiated requests; the script reports what the
// server did with them.
const seen = { sampling: [], elicitation: [] };
const CANNED_SAMPLING = {
  role: "assistant",
  content: { type: "text", text: "canned sampling answer" },
  model: "mcptrail-canned-model",
  stopReason: "endTurn",
};
const CANNED_ELICITATION = { action: "accept", content: { name: "Ada Lovelace", check: true } };

// wire records, in arrival order, every progress notification and the
// sequence number at which each response id arrived, by wrapping the
// transport's onmessage after connect.
const wire = { seq: 0, progress: [], responses: new Map() };
function tap(transport) {
  const orig = transport.onmessage;
  transport.onmessage = (m, extra) => {
    wire.seq++;
    if (m.method === "notifications/progress") {
      wire.progress.push({ seq: wire.seq, token: m.params?.progressToken, progress: m.params?.progress, total: m.params?.total });
    } else if (m.id !== undefined && m.method === undefined) {
      wire.responses.set(JSON.stringify(m.id), wire.seq);
    }
    orig?.(m, extra);
  };
}

class Run {
  constructor(client, opts) {
    this.client = client;
    this.opts = opts;
    this.steps = {};
  }

  // step runs fn, recording {ok, ...observed} or {ok:false, error}. check
  // returns true/false (or a string explaining the failure).
  async step(name, fn, check) {
    try {
      const observed = await fn();
      const verdict = check ? check(observed) : true;
      const ok = verdict === true;
      this.steps[name] = { ok, ...observed };
      if (!ok && typeof verdict === "string") this.steps[name].why = verdict;
    } catch (e) {
      this.steps[name] = { ok: false, error: errorInfo(e) };
    }
  }

  // expectError runs fn, which must fail with a JSON-RPC error (or an
  // isError result, which is recorded as such).
  async expectError(name, fn, wantCodes) {
    try {
      const r = await fn();
      const isError = r?.isError === true;
      this.steps[name] = { ok: isError && wantCodes.includes("isError"), isError, text: texts(r).join("\n").slice(0, 300) };
    } catch (e) {
      const info = errorInfo(e);
      this.steps[name] = { ok: wantCodes.includes(info.code), error: info };
    }
  }

  tool(name) {
    return this.opts.prefix + name;
  }

  call(name, args, extra) {
    return this.client.callTool({ name: this.tool(name), arguments: args }, undefined, {
      timeout: this.opts.timeoutMs,
      ...extra,
    });
  }

  // progressCall calls a tool with a progress handler and reports the
  // progress notifications as they arrived on the wire (see wire below) and
  // how many came before the result, plus how many the SDK's onprogress
  // callback saw (over legacy SSE, SDK 1.32 was seen to call it for fewer
  // notifications than arrived).
  async progressCall(name, args, wantSteps) {
    const start = wire.seq;
    let sdkCalls = 0;
    const r = await this.call(name, args, {
      onprogress: () => { sdkCalls++; },
      resetTimeoutOnProgress: true,
    });
    // The SDK uses the request id as the progress token.
    const mine = wire.progress.filter((p) => p.seq > start && wire.responses.has(JSON.stringify(p.token)));
    const token = mine.length ? JSON.stringify(mine[0].token) : null;
    const resultSeq = token ? wire.responses.get(token) : Infinity;
    const progress = mine.filter((p) => JSON.stringify(p.token) === token)
      .map((p) => ({ progress: p.progress, total: p.total, beforeResult: p.seq < resultSeq }));
    const values = progress.map((p) => p.progress);
    const inOrder = values.every((v, i) => i === 0 || v > values[i - 1]);
    return {
      text: texts(r).join("\n"),
      progress,
      progressCount: progress.length,
      sdkOnprogressCalls: sdkCalls,
      inOrder,
      allBeforeResult: progress.length === wantSteps && progress.every((p) => p.beforeResult),
    };
  }
}

const scenarios = {
  async smoke(run) {
    await run.step("listTools", async () => {
      const { tools } = await run.client.listTools();
      return { names: tools.map((t) => t.name) };
    }, (o) => o.names.includes(run.tool("echo")) || `no ${run.tool("echo")} tool`);
    await run.step("echo", async () => ({ text: texts(await run.call("echo", { message: "smoke" })).join("") }),
      (o) => o.text.includes("smoke"));
  },

  async everything(run) {
    const P = run.opts.prefix;
    let toolNames = [];
    await run.step("listTools", async () => {
      const { tools } = await run.client.listTools();
      toolNames = tools.map((t) => t.name);
      const annotations = Object.fromEntries(tools.map((t) => [t.name, t.annotations ?? null]));
      return { names: toolNames, count: toolNames.length, echoAnnotations: annotations[P + "echo"] };
    }, (o) => o.names.includes(P + "echo") || `no ${P}echo`);
    const has = (n) => toolNames.includes(P + n);

    await run.step("echo", async () => ({ text: texts(await run.call("echo", { message: "hello from client.mjs" })).join("") }),
      (o) => o.text === "Echo: hello from client.mjs" || `unexpected echo ${o.text}`);

    const addTool = ["get-sum", "add"].find(has) ?? "get-sum";
    await run.step("add", async () => ({ tool: P + addTool, text: texts(await run.call(addTool, { a: 2, b: 3 })).join("") }),
      (o) => o.text.includes("5"));

    await run.step("structuredContent", async () => {
      const r = await run.call("get-structured-content", { location: "Chicago" });
      return { structuredContent: r.structuredContent, text: texts(r).join("") };
    }, (o) => o.structuredContent?.temperature === 36);

    await run.step("image", async () => {
      const r = await run.call("get-tiny-image", {});
      const images = r.content.filter((c) => c.type === "image");
      return {
        contentTypes: r.content.map((c) => c.type),
        mimeType: images[0]?.mimeType,
        dataLength: images[0]?.data?.length ?? 0,
      };
    }, (o) => o.mimeType === "image/png" && o.dataLength > 0);

    await run.step("longRunningProgress",
      () => run.progressCall("trigger-long-running-operation", { duration: 1, steps: 4 }, 4),
      (o) => (o.progressCount === 4 && o.inOrder && o.allBeforeResult) || "progress incomplete, out of order or late");

    // Arguments that fail the tool's schema.
    await run.expectError("invalidArguments", () => run.call("get-sum", { a: "two", b: 3 }), [-32602, "isError"]);
    await run.expectError("unknownTool", () => run.call("no-such-tool", {}), [-32602, -32601, "isError"]);

    await run.step("listResources", async () => {
      const { resources } = await run.client.listResources();
      return { count: resources.length, first: resources.slice(0, 3).map((r) => r.uri) };
    }, (o) => o.count > 0);
    await run.step("readResource", async () => {
      const { resources } = await run.client.listResources();
      const uri = resources[0].uri;
      const r = await run.client.readResource({ uri });
      const c = r.contents[0];
      return { uri, mimeType: c.mimeType, kind: c.text !== undefined ? "text" : "blob", length: (c.text ?? c.blob ?? "").length };
    }, (o) => o.length > 0);
    await run.step("listResourceTemplates", async () => {
      const { resourceTemplates } = await run.client.listResourceTemplates();
      return { uriTemplates: resourceTemplates.map((t) => t.uriTemplate) };
    }, (o) => o.uriTemplates.length > 0);
    await run.expectError("unknownResource", () => run.client.readResource({ uri: "demo://resource/does-not-exist" }), [-32002, -32602]);

    await run.step("listPrompts", async () => {
      const { prompts } = await run.client.listPrompts();
      return { names: prompts.map((p) => p.name) };
    }, (o) => o.names.includes(P + "simple-prompt"));
    await run.step("getPrompt", async () => {
      const r = await run.client.getPrompt({ name: P + "args-prompt", arguments: { city: "Paris" } });
      return { text: r.messages.map((m) => m.content.text).join("\n") };
    }, (o) => o.text.includes("Paris"));
    await run.expectError("unknownPrompt", () => run.client.getPrompt({ name: P + "no-such-prompt" }), [-32602]);

    await run.step("sampling", async () => {
      const r = await run.call("trigger-sampling-request", { prompt: "say hi", maxTokens: 20 });
      return { text: texts(r).join("\n"), handlerCalls: seen.sampling.length, request: seen.sampling[0] };
    }, (o) => (o.handlerCalls === 1 && o.text.includes("canned sampling answer")) || "sampling answer not relayed");
    await run.step("elicitation", async () => {
      const r = await run.call("trigger-elicitation-request", {});
      return { text: texts(r).join("\n"), handlerCalls: seen.elicitation.length, message: seen.elicitation[0]?.message };
    }, (o) => (o.handlerCalls === 1 && o.text.includes("Ada Lovelace")) || "elicitation answer not relayed");
  },

  async testbackend(run) {
    const P = run.opts.prefix;
    await run.step("listTools", async () => {
      const { tools } = await run.client.listTools();
      return {
        names: tools.map((t) => t.name),
        readOnly: Object.fromEntries(tools.map((t) => [t.name, t.annotations?.readOnlyHint ?? null])),
      };
    }, (o) => ["echo", "add", "now", "fail", "slow", "write_note", "big", "elicit"].every((n) => o.names.includes(P + n)));
    await run.step("echo", async () => ({ text: texts(await run.call("echo", { message: "hello ✓" })).join("") }),
      (o) => o.text === "hello ✓");
    await run.step("add", async () => {
      const r = await run.call("add", { a: 2, b: 3 });
      return { text: texts(r).join(""), structuredContent: r.structuredContent };
    }, (o) => o.text === "5" || `add(2,3) = ${o.text} (v2 answers 6)`);
    await run.step("fail", async () => {
      const r = await run.call("fail", {});
      return { isError: r.isError === true, text: texts(r).join("") };
    }, (o) => o.isError);
    await run.step("slowProgress", () => run.progressCall("slow", { steps: 3, delay_ms: 20 }, 3),
      (o) => (o.progressCount === 3 && o.inOrder && o.allBeforeResult) || "progress incomplete, out of order or late");
    await run.step("writeNote", async () => ({ text: texts(await run.call("write_note", { text: "from client.mjs" })).join("") }),
      (o) => o.text.startsWith("stored note"));
    await run.step("big", async () => ({ length: texts(await run.call("big", { bytes: 100000 })).join("").length }),
      (o) => o.length === 100000);
    await run.step("elicitation", async () => {
      const r = await run.call("elicit", { message: "name?" });
      return { text: texts(r).join(""), handlerCalls: seen.elicitation.length };
    }, (o) => o.text.includes("Ada Lovelace"));
    await run.step("readResource", async () => {
      const r = await run.client.readResource({ uri: "test://static/1" });
      return { text: r.contents[0].text };
    }, (o) => o.text === "static resource one");
    await run.expectError("unknownResource", () => run.client.readResource({ uri: "test://static/404" }), [-32002, -32602]);
    await run.step("getPrompt", async () => {
      const r = await run.client.getPrompt({ name: P + "greet", arguments: { name: "Ada" } });
      return { text: r.messages[0].content.text };
    }, (o) => o.text === "Hello, Ada!");
    await run.expectError("invalidArguments", () => run.call("add", { a: "x" }), [-32602, "isError"]);
  },
};

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
  let transport;
  if (opts.transport === "stdio") {
    const [command, ...args] = opts.cmd.split(/\s+/).filter(Boolean);
    transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  } else if (opts.transport === "sse") {
    transport = new SSEClientTransport(new URL(opts.url), {
      requestInit: { headers },
      eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, ...headers } }) },
    });
  } else {
    transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers } });
  }

  const client = new Client(
    { name: "mcptrail-client.mjs", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {} } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    seen.sampling.push({ messages: req.params.messages, maxTokens: req.params.maxTokens });
    return CANNED_SAMPLING;
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    seen.elicitation.push({ message: req.params.message });
    return CANNED_ELICITATION;
  });

  const out = { scenario: opts.scenario, url: opts.url ?? null, cmd: opts.cmd ?? null, transport: opts.transport, prefix: opts.prefix };
  try {
    await client.connect(transport);
  } catch (e) {
    out.ok = false;
    out.connectError = errorInfo(e);
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(1);
  }
  tap(transport);
  out.serverInfo = client.getServerVersion();
  out.protocolVersion = transport.protocolVersion ?? null;
  out.sessionId = transport.sessionId ?? null;
  out.serverCapabilities = Object.keys(client.getServerCapabilities() ?? {});

  const run = new Run(client, opts);
  await scenarios[opts.scenario](run);
  out.steps = run.steps;
  out.failed = Object.entries(run.steps).filter(([, s]) => !s.ok).map(([n]) => n);
  out.ok = out.failed.length === 0;

  try {
    if (opts.transport === "http") await transport.terminateSession();
  } catch (e) {
    process.stderr.write(`terminating session: ${e.message}\n`);
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(out.ok ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`client.mjs: ${e.stack ?? e}\n`);
  process.stdout.write(JSON.stringify({ ok: false, fatal: errorInfo(e) }) + "\n");
  process.exit(1);
});
